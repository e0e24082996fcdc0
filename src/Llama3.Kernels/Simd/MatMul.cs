using System.Numerics.Tensors;
using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Simd;

/// <summary>
/// <c>y = x · Wᵀ</c> for a weight matrix in any type of the quantization table: each weight row is converted to floats
/// once (through the table's dequantizer) and dotted with every activation row, so a prefill batch reuses it.
/// Activations and accumulation are float32. (The performance work replaces this with quantized dot products.)
/// </summary>
public static unsafe class MatMul
{
    /// <summary>
    /// Weight rows per block of a prompt's matrix product: a block meets every group of tokens before the next block, so
    /// its rows are read from L2 and one group's activations at a time are in use (F16 prompt processing measured
    /// 46 -> 62 tokens/s against going through all the tokens row by row; 32 and 64 measured the same, 4 and 256 worse).
    /// </summary>
    public const int RowBlock = 32;

    /// <summary>
    /// Matrix products of at least this many tokens take the lanes kernels, which arrange 16 (F16: up to 32) weight rows
    /// once for all the tokens: F16 here (FloatDot.Lanes.cs; pp128 about 85 -> 165 tokens/s), Q4_0 and Q8_0 through
    /// QuantType.DotPrompt. Fewer tokens would not pay the arrangement.
    /// </summary>
    public const int LanesFrom = 8;

    /// <summary>Scratch floats per worker that let <see cref="Rows"/> take every path for rows of <paramref name="cols"/>.</summary>
    public static int ScratchFloats(int cols) => 2 * FloatDot.LaneRows * cols;

    /// <summary>The longest rows whose two lane blocks (2 x 16 x cols floats) the F16 lanes path takes together.</summary>
    private const int PairedLanesCols = 4096;

    /// <summary>
    /// Rows <paramref name="rowStart"/>..<paramref name="rowEnd"/> of <c>y[t, r] = dot(W[r], x[t])</c> for
    /// <paramref name="n"/> activation rows.
    /// </summary>
    /// <param name="type">The weights' row in the quantization table.</param>
    /// <param name="weights">The first byte of row 0.</param>
    /// <param name="rowBytes">Bytes per weight row.</param>
    /// <param name="rowStart">First output row.</param>
    /// <param name="rowEnd">End of the output rows (exclusive).</param>
    /// <param name="x">Activations, <paramref name="n"/> rows of <c>cols</c> floats.</param>
    /// <param name="n">Number of activation rows.</param>
    /// <param name="y">Outputs, <paramref name="n"/> rows of <paramref name="yStride"/> floats.</param>
    /// <param name="yStride">Floats per output row (the weight matrix's row count).</param>
    /// <param name="scratch">
    /// Room for one dequantized weight row (<c>cols</c> floats); F16 prompts of 8 tokens or more on AVX-512 take the
    /// lanes kernel where it holds <see cref="FloatDot.LaneRows"/> rows (<see cref="ScratchFloats"/>).
    /// </param>
    public static void Rows(QuantType type, byte* weights, long rowBytes, int rowStart, int rowEnd,
        ReadOnlySpan<float> x, int n, Span<float> y, int yStride, Span<float> scratch)
    {
        int cols = Columns(x, n, scratch);
        if (type.Type is GgmlType.F16 or GgmlType.BF16)
        {
            // Widened in registers, each weight vector shared by up to 8 tokens (FloatDot).
            // Blocked (see RowBlock); each token's result has the same bits whatever the blocking.
            bool f16 = type.Type == GgmlType.F16;
            Span<float> results = stackalloc float[FloatDot.MaxRows];
            const int group = FloatDot.MaxRows;
            if (f16 && n >= LanesFrom && KernelPaths.Best == KernelPath.Avx512 && scratch.Length >= FloatDot.LaneRows * cols)
            {
                F16Lanes(weights, rowBytes, rowStart, rowEnd, x, n, y, yStride, cols, scratch);
                return;
            }
            if (f16 && n == 1)
            {
                // Decode: the activations scaled once so that each weight vector widens in 3 operations (FloatDot.F16Scaled.cs).
                int count = rowEnd - rowStart;
                if (count > 0)
                    FloatDot.DotRowsF16(new ReadOnlySpan<byte>(weights + rowStart * rowBytes, checked((int)((count - 1) * rowBytes + 2L * cols))),
                        rowBytes, count, x[..cols], scratch[..cols], y.Slice(rowStart, count));
                return;
            }
            if (f16 && n >= FloatDot.PairRows && KernelPaths.Best == KernelPath.Avx512)
            {
                F16Pairs(weights, rowBytes, rowStart, rowEnd, x, n, y, yStride, cols);
                return;
            }
            for (int r0 = rowStart; r0 < rowEnd; r0 += RowBlock)
            {
                int r1 = Math.Min(r0 + RowBlock, rowEnd);
                for (int t0 = 0; t0 < n; t0 += group)
                {
                    int count = Math.Min(group, n - t0);
                    var xs = x.Slice(t0 * cols, count * cols);
                    for (int r = r0; r < r1; r++)
                    {
                        var row = new ReadOnlySpan<byte>(weights + r * rowBytes, checked((int)rowBytes));
                        if (f16) FloatDot.DotManyF16(row, xs, cols, count, results);
                        else FloatDot.DotManyBF16(row, xs, cols, count, results);
                        for (int i = 0; i < count; i++) y[(t0 + i) * yStride + r] = results[i];
                    }
                }
            }
            return;
        }
        bool f32 = type.Type == GgmlType.F32;
        for (int r = rowStart; r < rowEnd; r++)
        {
            var row = new ReadOnlySpan<byte>(weights + r * rowBytes, checked((int)rowBytes));
            // F32 rows are dotted in place in the mapping; other types are dequantized once per row for all tokens.
            ReadOnlySpan<float> w = f32 ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(row) : scratch[..cols];
            if (!f32) type.Dequantize(row, scratch[..cols]);
            for (int t = 0; t < n; t++)
                y[t * yStride + r] = TensorPrimitives.Dot(w, x.Slice(t * cols, cols));
        }
    }

    // F16 prompts on AVX-512: pairs of weight rows with 4 tokens at a time, so each activation vector serves two rows
    // and 4 tokens' activations stay in L1 (FloatDot.DotManyF16Pair; the same bits as DotManyF16 row by row).
    private static void F16Pairs(byte* weights, long rowBytes, int rowStart, int rowEnd, ReadOnlySpan<float> x, int n, Span<float> y,
        int yStride, int cols)
    {
        Span<float> results = stackalloc float[2 * FloatDot.PairRows];
        int rb = checked((int)rowBytes);
        for (int r0 = rowStart; r0 < rowEnd; r0 += RowBlock)
        {
            int r1 = Math.Min(r0 + RowBlock, rowEnd);
            for (int t0 = 0; t0 < n; t0 += FloatDot.PairRows)
            {
                int count = Math.Min(FloatDot.PairRows, n - t0);
                var xs = x.Slice(t0 * cols, count * cols);
                int r = r0;
                for (; r + 1 < r1; r += 2)
                {
                    FloatDot.DotManyF16Pair(new ReadOnlySpan<byte>(weights + r * rowBytes, rb), new ReadOnlySpan<byte>(weights + (r + 1) * rowBytes, rb),
                        xs, cols, count, results);
                    for (int i = 0; i < count; i++)
                    {
                        y[(t0 + i) * yStride + r] = results[i];
                        y[(t0 + i) * yStride + r + 1] = results[FloatDot.PairRows + i];
                    }
                }
                if (r < r1)
                {
                    FloatDot.DotManyF16(new ReadOnlySpan<byte>(weights + r * rowBytes, rb), xs, cols, count, results);
                    for (int i = 0; i < count; i++) y[(t0 + i) * yStride + r] = results[i];
                }
            }
        }
    }

    // F16 prompts on AVX-512: 16 rows at a time widened and transposed (a column's 16 weights in one vector), then all
    // the tokens, 8 at a time, one FMA per column and token with the activation broadcast (FloatDot.DotLanes).
    private static void F16Lanes(byte* weights, long rowBytes, int rowStart, int rowEnd, ReadOnlySpan<float> x, int n, Span<float> y,
        int yStride, int cols, Span<float> scratch)
    {
        // Two blocks of 16 rows at a time where they fit in L2 beside the activations (each broadcast activation then
        // serves two FMAs), else one.
        int step = scratch.Length >= 2 * FloatDot.LaneRows * cols && cols <= PairedLanesCols ? 2 * FloatDot.LaneRows : FloatDot.LaneRows;
        for (int r0 = rowStart; r0 < rowEnd; r0 += step)
        {
            int rows = Math.Min(step, rowEnd - r0);
            FloatDot.WidenTransposeF16(weights + r0 * rowBytes, rowBytes, Math.Min(rows, FloatDot.LaneRows), cols, scratch);
            if (rows > FloatDot.LaneRows)
                FloatDot.WidenTransposeF16(weights + (r0 + FloatDot.LaneRows) * rowBytes, rowBytes, rows - FloatDot.LaneRows, cols, scratch[(FloatDot.LaneRows * cols)..]);
            FloatDot.DotLanes(scratch, rows, x, cols, n, y[r0..], yStride);
        }
    }

    /// <summary>Columns of the activations (<paramref name="n"/> rows of them), checked against the scratch.</summary>
    private static int Columns(ReadOnlySpan<float> x, int n, Span<float> scratch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        int cols = x.Length / n;
        if (cols * n != x.Length) throw new ArgumentException($"{x.Length} activations are not {n} whole rows", nameof(x));
        if (scratch.Length < cols) throw new ArgumentException($"the scratch holds {scratch.Length} floats, a row needs {cols}", nameof(scratch));
        return cols;
    }

    /// <summary>The scalar twin of <see cref="Rows"/>: the same function with a plain loop for the dot product.</summary>
    public static void RowsScalar(QuantType type, byte* weights, long rowBytes, int rowStart, int rowEnd,
        ReadOnlySpan<float> x, int n, Span<float> y, int yStride, Span<float> scratch)
    {
        int cols = Columns(x, n, scratch);
        scratch = scratch[..cols];
        for (int r = rowStart; r < rowEnd; r++)
        {
            type.Dequantize(new ReadOnlySpan<byte>(weights + r * rowBytes, checked((int)rowBytes)), scratch);
            for (int t = 0; t < n; t++)
            {
                float sum = 0;
                var xr = x.Slice(t * cols, cols);
                for (int i = 0; i < cols; i++) sum += scratch[i] * xr[i];
                y[t * yStride + r] = sum;
            }
        }
    }
}
