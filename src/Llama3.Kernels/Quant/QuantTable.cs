namespace Llama3.Kernels.Quant;

/// <summary>
/// Weight types as numbered by ggml (<c>enum ggml_type</c> in ggml.h); GGUF stores these numbers.
/// </summary>
public enum GgmlType : uint
{
    /// <summary>32-bit float.</summary>
    F32 = 0,
    /// <summary>IEEE half.</summary>
    F16 = 1,
    /// <summary>4-bit blocks of 32, one f16 scale.</summary>
    Q4_0 = 2,
    /// <summary>4-bit blocks of 32, f16 scale and min.</summary>
    Q4_1 = 3,
    /// <summary>5-bit blocks of 32, one f16 scale.</summary>
    Q5_0 = 6,
    /// <summary>5-bit blocks of 32, f16 scale and min.</summary>
    Q5_1 = 7,
    /// <summary>8-bit blocks of 32, one f16 scale.</summary>
    Q8_0 = 8,
    /// <summary>8-bit blocks of 32, f16 scale and sum (activations only).</summary>
    Q8_1 = 9,
    /// <summary>2-bit super-blocks of 256.</summary>
    Q2_K = 10,
    /// <summary>3-bit super-blocks of 256.</summary>
    Q3_K = 11,
    /// <summary>4-bit super-blocks of 256.</summary>
    Q4_K = 12,
    /// <summary>5-bit super-blocks of 256.</summary>
    Q5_K = 13,
    /// <summary>6-bit super-blocks of 256.</summary>
    Q6_K = 14,
    /// <summary>8-bit super-blocks of 256 (activations only).</summary>
    Q8_K = 15,
    /// <summary>bfloat16.</summary>
    BF16 = 30,
}

/// <summary>One row of the quantization table: how a weight type is laid out.</summary>
/// <param name="Type">The ggml type number.</param>
/// <param name="Name">The name ggml gives the type (as in GGUF tools' output).</param>
/// <param name="BlockSize">Weights per block.</param>
/// <param name="BytesPerBlock">Bytes one block occupies.</param>
public sealed record QuantType(GgmlType Type, string Name, int BlockSize, int BytesPerBlock)
{
    /// <summary>Bytes taken by a row of <paramref name="elements"/> weights; the count must be a whole number of blocks.</summary>
    public long RowBytes(long elements) => elements / BlockSize * BytesPerBlock;
}

/// <summary>
/// The one table of weight types (after ggml's <c>type_traits</c>): code asks the table, it never
/// switches on the type in many places. Block layouts follow ggml-common.h.
/// </summary>
public static class QuantTable
{
    private static readonly QuantType[] Rows =
    [
        new(GgmlType.F32, "F32", 1, 4),
        new(GgmlType.F16, "F16", 1, 2),
        new(GgmlType.BF16, "BF16", 1, 2),
        new(GgmlType.Q4_0, "Q4_0", 32, 2 + 16),
        new(GgmlType.Q4_1, "Q4_1", 32, 2 + 2 + 16),
        new(GgmlType.Q5_0, "Q5_0", 32, 2 + 4 + 16),
        new(GgmlType.Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16),
        new(GgmlType.Q8_0, "Q8_0", 32, 2 + 32),
        new(GgmlType.Q8_1, "Q8_1", 32, 4 + 32),
        new(GgmlType.Q2_K, "Q2_K", 256, 16 + 64 + 2 + 2),
        new(GgmlType.Q3_K, "Q3_K", 256, 32 + 64 + 12 + 2),
        new(GgmlType.Q4_K, "Q4_K", 256, 2 + 2 + 12 + 128),
        new(GgmlType.Q5_K, "Q5_K", 256, 2 + 2 + 12 + 32 + 128),
        new(GgmlType.Q6_K, "Q6_K", 256, 128 + 64 + 16 + 2),
        new(GgmlType.Q8_K, "Q8_K", 256, 4 + 256 + 32),
    ];

    private static readonly Dictionary<GgmlType, QuantType> ByType = Rows.ToDictionary(r => r.Type);

    /// <summary>Every known type.</summary>
    public static IReadOnlyList<QuantType> All => Rows;

    /// <summary>The row for a type, or null when the type is not known.</summary>
    public static QuantType? Find(GgmlType type) => ByType.GetValueOrDefault(type);

    /// <summary>The row for a type; throws when the type is not known.</summary>
    public static QuantType Get(GgmlType type) =>
        Find(type) ?? throw new NotSupportedException($"weight type {(uint)type} is not supported");
}
