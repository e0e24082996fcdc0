using Llama3.Kernels.Simd;

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

/// <summary>
/// Converts an activation row to the type a weight type's dot product takes (ggml-cpu's <c>from_float</c> of the
/// <c>vec_dot_type</c>): <paramref name="x"/> must be a whole number of that type's blocks, which are written to the
/// start of <paramref name="destination"/> (<see cref="QuantType.ActivationRowBytes"/> bytes; it may be longer).
/// </summary>
public delegate void QuantizeActivationRow(ReadOnlySpan<float> x, Span<byte> destination);

/// <summary>
/// The dot product of one weight row with one activation row already converted to the weight type's
/// <see cref="QuantType.VecDotType"/> (ggml-cpu's <c>vec_dot</c>): <paramref name="n"/> values, a whole number of
/// blocks; either row may be longer than its <paramref name="n"/> values' bytes. Throws <see cref="ArgumentException"/>
/// when <paramref name="n"/> is not a whole number of blocks or a row is too short.
/// </summary>
public delegate float DotRow(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n);

/// <summary>
/// One weight row dotted with <paramref name="count"/> activation rows (1 to 8) that lie
/// <paramref name="activationRowBytes"/> apart in <paramref name="activationRows"/>: <c>results[i]</c> gets exactly
/// the bits of <c>Dot(weightRow, activationRows.Slice(i * activationRowBytes, activationRowBytes), n)</c>. A multi-row
/// kernel decodes each weight block once for all the rows.
/// </summary>
public delegate void DotRows(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes,
    int count, int n, Span<float> results);

/// <summary>
/// A tile of a matrix product: <paramref name="rows"/> weight rows, <paramref name="weightRowBytes"/> apart in
/// <paramref name="weightRows"/>, each dotted with <paramref name="count"/> activation rows (1 to 8):
/// <c>results[t * resultStride + r]</c> gets exactly the bits of <c>DotMany</c>'s result t for weight row r. A tile
/// kernel does what depends only on the activations once for all the weight rows.
/// </summary>
public delegate void DotTileRows(ReadOnlySpan<byte> weightRows, int weightRowBytes, int rows, ReadOnlySpan<byte> activationRows,
    int activationRowBytes, int count, int n, Span<float> results, int resultStride);

/// <summary>
/// A prompt's matrix product over <paramref name="rows"/> weight rows and any number of activation rows
/// (<paramref name="count"/>, at least 1): <c>results[t * resultStride + r]</c> gets exactly the bits of the type's
/// scalar twin (<see cref="QuantType.DotScalar"/>) for weight row r and token t. A prompt kernel arranges each group of
/// weight rows once for all the tokens.
/// </summary>
public delegate void DotPromptRows(ReadOnlySpan<byte> weightRows, int weightRowBytes, int rows, ReadOnlySpan<byte> activationRows,
    int activationRowBytes, int count, int n, Span<float> results, int resultStride);

/// <summary>
/// Packs <paramref name="rows"/> weight rows of <paramref name="n"/> values, <paramref name="weightRowBytes"/> bytes
/// apart, into <paramref name="packed"/> (<see cref="PackedLayout.Bytes"/> bytes) for <see cref="PackedLayout.Dot"/>.
/// </summary>
public delegate void PackRows(ReadOnlySpan<byte> weightRows, int weightRowBytes, int rows, int n, Span<byte> packed);

/// <summary>
/// The matrix product of a packed matrix's <paramref name="rows"/> rows (<see cref="PackRows"/>) with
/// <paramref name="count"/> activation rows: <c>results[t * resultStride + r]</c> gets exactly the bits of the type's
/// scalar twin (<see cref="QuantType.DotScalar"/>) for weight row r and token t, whatever the count.
/// </summary>
public delegate void DotPackedRows(ReadOnlySpan<byte> packed, int rows, ReadOnlySpan<byte> activationRows, int activationRowBytes,
    int count, int n, Span<float> results, int resultStride);

/// <summary>
/// A weight type's packed layout on this machine's best path: rows regrouped once, at load, so that every matrix
/// product (a single token's included) takes the lanes kernels without arranging the rows on each call.
/// </summary>
/// <param name="GroupRows">Rows per group; a matrix may be packed and multiplied in slices that start at multiples of it.</param>
/// <param name="Bytes">Bytes a packed matrix of (rows, values per row) takes.</param>
/// <param name="Pack">The packing.</param>
/// <param name="Dot">The matrix product over packed rows.</param>
public sealed record PackedLayout(int GroupRows, Func<long, int, long> Bytes, PackRows Pack, DotPackedRows Dot);

/// <summary>One row of the quantization table: how a weight type is laid out and how it is read.</summary>
/// <param name="Type">The ggml type number.</param>
/// <param name="Name">The name ggml gives the type (as in GGUF tools' output).</param>
/// <param name="BlockSize">Weights per block.</param>
/// <param name="BytesPerBlock">Bytes one block occupies.</param>
/// <param name="Dequantize">The scalar reference conversion of whole blocks to floats (as ggml's <c>dequantize_row_*</c>).</param>
/// <remarks>
/// The dot-product columns follow ggml-cpu's <c>type_traits_cpu</c>: a matrix product first converts each activation
/// row with <see cref="QuantizeActivations"/> (once per row, for all weight rows), then calls <see cref="Dot"/> per
/// weight row; that reproduces llama.cpp's CPU arithmetic, including its rounding of the activations to 8 bits or
/// 16-bit floats.
/// </remarks>
public sealed record QuantType(GgmlType Type, string Name, int BlockSize, int BytesPerBlock, DequantizeRow Dequantize)
{
    /// <summary>Bytes taken by a row of <paramref name="elements"/> weights; the count must be a whole number of blocks.</summary>
    public long RowBytes(long elements) => elements / BlockSize * BytesPerBlock;

    /// <summary>
    /// The type activations are converted to before a dot product with this type (ggml-cpu's <c>vec_dot_type</c>):
    /// F32, F16, BF16 take themselves; Q8_0, Q4_0, Q5_0 take Q8_0; Q4_1, Q5_1 take Q8_1; the K-quants take Q8_K.
    /// </summary>
    public GgmlType VecDotType { get; init; }

    /// <summary>Converts an activation row to <see cref="VecDotType"/> (vectorized; the same bytes as <see cref="QuantizeActivationsScalar"/>).</summary>
    public QuantizeActivationRow QuantizeActivations { get; init; } = NoQuantizer;

    /// <summary>The scalar twin of <see cref="QuantizeActivations"/>.</summary>
    public QuantizeActivationRow QuantizeActivationsScalar { get; init; } = NoQuantizer;

    /// <summary>A weight row of this type dotted with an activation row of <see cref="VecDotType"/> (vectorized).</summary>
    public DotRow Dot { get; init; } = NoDot;

    /// <summary>
    /// The scalar twin of <see cref="Dot"/>, after ggml's <c>ggml_vec_dot_*_generic</c>: the same integer parts, float
    /// terms added in block order (K-quants: the same bits as <see cref="Dot"/>).
    /// </summary>
    public DotRow DotScalar { get; init; } = NoDot;

    /// <summary>
    /// <see cref="Dot"/> of one weight row with several activation rows (see <see cref="DotRows"/>), the same bits as
    /// calling <see cref="Dot"/> once per row; the default (also what an init with null gives) does just that, the
    /// types with a multi-row kernel decode each weight block once. The default is a new delegate on every read: read
    /// it once per matrix product, not once per weight row.
    /// </summary>
    public DotRows DotMany
    {
        get => _dotMany ?? LoopDot;
        init => _dotMany = value;
    }

    private readonly DotRows? _dotMany;

    /// <summary>
    /// <see cref="DotMany"/> over several weight rows (see <see cref="DotTileRows"/>); the default calls
    /// <see cref="DotMany"/> once per row. Read it once per matrix product.
    /// </summary>
    public DotTileRows DotTile
    {
        get => _dotTile ?? LoopTile;
        init => _dotTile = value;
    }

    private readonly DotTileRows? _dotTile;

    /// <summary>
    /// The prompt kernel (see <see cref="DotPromptRows"/>) where the type has one on this machine's best path (Q4_0 and
    /// Q8_0 on AVX-512: weight rows in the vector lanes), else null; matrix products of 8 tokens or more over matrices
    /// that are not packed (<see cref="Packed"/>) take it.
    /// </summary>
    public DotPromptRows? DotPrompt { get; init; }

    /// <summary>
    /// The packed layout where the type has one on this machine's best path (Q4_0, Q8_0, Q4_K and Q6_K on AVX-512: 16
    /// rows in the vector lanes, the same size as the rows they replace), else null.
    /// </summary>
    public PackedLayout? Packed { get; init; }

    private void LoopTile(ReadOnlySpan<byte> weightRows, int weightRowBytes, int rows, ReadOnlySpan<byte> activationRows,
        int activationRowBytes, int count, int n, Span<float> results, int resultStride) =>
        QuantDotTileChecks.Loop(DotMany, weightRows, weightRowBytes, rows, activationRows, activationRowBytes, count, n, results, resultStride);

    private void LoopDot(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes,
        int count, int n, Span<float> results) =>
        QuantDotMultiChecks.Loop(Dot, weightRow, activationRows, activationRowBytes, count, n, results);

    /// <summary>
    /// Bytes an activation row of <paramref name="elements"/> values takes once converted to <see cref="VecDotType"/>;
    /// the count must be a whole number of that type's blocks.
    /// </summary>
    public long ActivationRowBytes(long elements) => QuantTable.Get(VecDotType).RowBytes(elements);

    private static void NoQuantizer(ReadOnlySpan<float> x, Span<byte> destination) =>
        throw new NotSupportedException("this table row has no activation quantizer");

    private static float NoDot(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        throw new NotSupportedException("this table row has no dot product");
}

/// <summary>
/// The one table of weight types (after ggml's <c>type_traits</c>): code asks the table, it never
/// switches on the type in many places. Block layouts follow ggml-common.h.
/// </summary>
public static class QuantTable
{
    private static readonly QuantType[] Rows =
    [
        Row(GgmlType.F32, "F32", 1, 4, FloatRows.DequantizeF32, ToF32, QuantDot.DotF32, QuantDotScalar.DotF32),
        Row(GgmlType.F16, "F16", 1, 2, FloatRows.DequantizeF16, ToF16, QuantDot.DotF16, QuantDotScalar.DotF16),
        Row(GgmlType.BF16, "BF16", 1, 2, FloatRows.DequantizeBF16, ToBF16, QuantDot.DotBF16, QuantDotScalar.DotBF16),
        Row(GgmlType.Q4_0, "Q4_0", 32, 2 + 16, Blocks32.DequantizeQ4_0, ToQ8_0, QuantDot.DotQ4_0, QuantDotScalar.DotQ4_0, QuantDot.DotManyQ4_0, QuantDot.DotTileQ4_0,
            QuantDot.HasPromptKernels ? QuantDot.DotPromptQ4_0 : null,
            QuantDot.HasPromptKernels ? new(QuantDot.PackedRows, QuantDot.PackedQ4_0Bytes, QuantDot.PackQ4_0, QuantDot.DotPackedQ4_0) : null),
        Row(GgmlType.Q4_1, "Q4_1", 32, 2 + 2 + 16, Blocks32.DequantizeQ4_1, ToQ8_1, QuantDot.DotQ4_1, QuantDotScalar.DotQ4_1),
        Row(GgmlType.Q5_0, "Q5_0", 32, 2 + 4 + 16, Blocks32.DequantizeQ5_0, ToQ8_0, QuantDot.DotQ5_0, QuantDotScalar.DotQ5_0),
        Row(GgmlType.Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16, Blocks32.DequantizeQ5_1, ToQ8_1, QuantDot.DotQ5_1, QuantDotScalar.DotQ5_1),
        Row(GgmlType.Q8_0, "Q8_0", 32, 2 + 32, Blocks32.DequantizeQ8_0, ToQ8_0, QuantDot.DotQ8_0, QuantDotScalar.DotQ8_0, QuantDot.DotManyQ8_0, QuantDot.DotTileQ8_0,
            QuantDot.HasPromptKernels ? QuantDot.DotPromptQ8_0 : null,
            QuantDot.HasPromptKernels ? new(QuantDot.PackedRows, QuantDot.PackedQ8_0Bytes, QuantDot.PackQ8_0, QuantDot.DotPackedQ8_0) : null),
        // Q8_1 and Q8_K are activation types (ggml never dots them as weights); their dot products are scalar only.
        Row(GgmlType.Q8_1, "Q8_1", 32, 4 + 32, Blocks32.DequantizeQ8_1, ToQ8_1, QuantDotScalar.DotQ8_1, QuantDotScalar.DotQ8_1),
        Row(GgmlType.Q2_K, "Q2_K", 256, 16 + 64 + 2 + 2, BlocksK.DequantizeQ2_K, ToQ8_K, QuantDot.DotQ2_K, QuantDotScalar.DotQ2_K),
        Row(GgmlType.Q3_K, "Q3_K", 256, 32 + 64 + 12 + 2, BlocksK.DequantizeQ3_K, ToQ8_K, QuantDot.DotQ3_K, QuantDotScalar.DotQ3_K),
        Row(GgmlType.Q4_K, "Q4_K", 256, 2 + 2 + 12 + 128, BlocksK.DequantizeQ4_K, ToQ8_K, QuantDot.DotQ4_K, QuantDotScalar.DotQ4_K, QuantDot.DotManyQ4_K,
            packed: QuantDot.HasPromptKernels ? new(QuantDot.PackedRows, QuantDot.PackedQ4_KBytes, QuantDot.PackQ4_K, QuantDot.DotPackedQ4_K) : null),
        Row(GgmlType.Q5_K, "Q5_K", 256, 2 + 2 + 12 + 32 + 128, BlocksK.DequantizeQ5_K, ToQ8_K, QuantDot.DotQ5_K, QuantDotScalar.DotQ5_K),
        Row(GgmlType.Q6_K, "Q6_K", 256, 128 + 64 + 16 + 2, BlocksK.DequantizeQ6_K, ToQ8_K, QuantDot.DotQ6_K, QuantDotScalar.DotQ6_K, QuantDot.DotManyQ6_K,
            packed: QuantDot.HasPromptKernels ? new(QuantDot.PackedRows, QuantDot.PackedQ6_KBytes, QuantDot.PackQ6_K, QuantDot.DotPackedQ6_K) : null),
        Row(GgmlType.Q8_K, "Q8_K", 256, 4 + 256 + 32, BlocksK.DequantizeQ8_K, ToQ8_K, QuantDotScalar.DotQ8_K, QuantDotScalar.DotQ8_K),
    ];

    // The activation types (ggml-cpu's vec_dot_type) with their quantizers: vectorized and scalar twin.
    private static ActivationType ToF32 => new(GgmlType.F32, ActivationQuant.ToF32, ActivationQuantScalar.ToF32);
    private static ActivationType ToF16 => new(GgmlType.F16, ActivationQuant.ToF16, ActivationQuantScalar.ToF16);
    private static ActivationType ToBF16 => new(GgmlType.BF16, ActivationQuant.ToBF16, ActivationQuantScalar.ToBF16);
    private static ActivationType ToQ8_0 => new(GgmlType.Q8_0, ActivationQuant.QuantizeQ8_0, ActivationQuantScalar.QuantizeQ8_0);
    private static ActivationType ToQ8_1 => new(GgmlType.Q8_1, ActivationQuant.QuantizeQ8_1, ActivationQuantScalar.QuantizeQ8_1);
    private static ActivationType ToQ8_K => new(GgmlType.Q8_K, ActivationQuant.QuantizeQ8_K, ActivationQuantScalar.QuantizeQ8_K);

    private readonly record struct ActivationType(GgmlType Type, QuantizeActivationRow Quantize, QuantizeActivationRow QuantizeScalar);

    private static QuantType Row(GgmlType type, string name, int blockSize, int bytesPerBlock, DequantizeRow dequantize,
        ActivationType activations, DotRow dot, DotRow dotScalar, DotRows? dotMany = null, DotTileRows? dotTile = null,
        DotPromptRows? dotPrompt = null, PackedLayout? packed = null) =>
        new(type, name, blockSize, bytesPerBlock, dequantize)
        {
            Packed = packed,
            DotMany = dotMany!,
            DotTile = dotTile!,
            DotPrompt = dotPrompt,
            VecDotType = activations.Type,
            QuantizeActivations = activations.Quantize,
            QuantizeActivationsScalar = activations.QuantizeScalar,
            Dot = dot,
            DotScalar = dotScalar,
        };

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
