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

/// <summary>
/// Converts whole blocks of one weight type to floats (ggml's <c>type_traits[..].to_float</c>): every block of
/// <paramref name="blocks"/> fills the next <c>BlockSize</c> floats of <paramref name="output"/>. The row code
/// trusts the lengths; <see cref="QuantTable.Dequantize"/> checks them.
/// </summary>
/// <param name="blocks">A whole number of blocks, as stored in GGUF (little-endian).</param>
/// <param name="output">Room for <c>BlockSize</c> floats per block.</param>
public delegate void DequantizeRow(ReadOnlySpan<byte> blocks, Span<float> output);

/// <summary>One row of the quantization table: how a weight type is laid out and how it is read.</summary>
/// <param name="Type">The ggml type number.</param>
/// <param name="Name">The name ggml gives the type (as in GGUF tools' output).</param>
/// <param name="BlockSize">Weights per block.</param>
/// <param name="BytesPerBlock">Bytes one block occupies.</param>
/// <param name="Dequantize">The scalar reference conversion of whole blocks to floats (as ggml's <c>dequantize_row_*</c>).</param>
public sealed record QuantType(GgmlType Type, string Name, int BlockSize, int BytesPerBlock, DequantizeRow Dequantize)
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
        new(GgmlType.F32, "F32", 1, 4, FloatRows.DequantizeF32),
        new(GgmlType.F16, "F16", 1, 2, FloatRows.DequantizeF16),
        new(GgmlType.BF16, "BF16", 1, 2, FloatRows.DequantizeBF16),
        new(GgmlType.Q4_0, "Q4_0", 32, 2 + 16, Blocks32.DequantizeQ4_0),
        new(GgmlType.Q4_1, "Q4_1", 32, 2 + 2 + 16, Blocks32.DequantizeQ4_1),
        new(GgmlType.Q5_0, "Q5_0", 32, 2 + 4 + 16, Blocks32.DequantizeQ5_0),
        new(GgmlType.Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16, Blocks32.DequantizeQ5_1),
        new(GgmlType.Q8_0, "Q8_0", 32, 2 + 32, Blocks32.DequantizeQ8_0),
        new(GgmlType.Q8_1, "Q8_1", 32, 4 + 32, Blocks32.DequantizeQ8_1),
        new(GgmlType.Q2_K, "Q2_K", 256, 16 + 64 + 2 + 2, BlocksK.DequantizeQ2_K),
        new(GgmlType.Q3_K, "Q3_K", 256, 32 + 64 + 12 + 2, BlocksK.DequantizeQ3_K),
        new(GgmlType.Q4_K, "Q4_K", 256, 2 + 2 + 12 + 128, BlocksK.DequantizeQ4_K),
        new(GgmlType.Q5_K, "Q5_K", 256, 2 + 2 + 12 + 32 + 128, BlocksK.DequantizeQ5_K),
        new(GgmlType.Q6_K, "Q6_K", 256, 128 + 64 + 16 + 2, BlocksK.DequantizeQ6_K),
        new(GgmlType.Q8_K, "Q8_K", 256, 4 + 256 + 32, BlocksK.DequantizeQ8_K),
    ];

    private static readonly Dictionary<GgmlType, QuantType> ByType = Rows.ToDictionary(r => r.Type);

    /// <summary>Every known type.</summary>
    public static IReadOnlyList<QuantType> All => Rows;

    /// <summary>The row for a type, or null when the type is not known.</summary>
    public static QuantType? Find(GgmlType type) => ByType.GetValueOrDefault(type);

    /// <summary>The row for a type; throws when the type is not known.</summary>
    public static QuantType Get(GgmlType type) =>
        Find(type) ?? throw new NotSupportedException($"weight type {(uint)type} is not supported");

    /// <summary>
    /// Dequantizes whole blocks of <paramref name="type"/> into <paramref name="output"/> with the row's scalar
    /// reference code. Throws <see cref="ArgumentException"/> when <paramref name="blocks"/> is not a whole number of
    /// blocks or <paramref name="output"/> does not hold exactly their weights.
    /// </summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> blocks, Span<float> output)
    {
        QuantType q = Get(type);
        if (blocks.Length % q.BytesPerBlock != 0)
            throw new ArgumentException(
                $"{blocks.Length} bytes are not a whole number of {q.Name} blocks ({q.BytesPerBlock} bytes each)", nameof(blocks));
        long blockCount = blocks.Length / q.BytesPerBlock;
        long weights = blockCount * q.BlockSize;
        if (output.Length != weights)
            throw new ArgumentException(
                $"{blockCount} {q.Name} blocks hold {weights} weights but the output has room for {output.Length}", nameof(output));
        q.Dequantize(blocks, output);
    }
}
