using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// F16 prompts on AVX-512 with the weight rows in the lanes: a block of 16 F16 rows is widened and transposed once
// (WidenTransposeF16: for each column, the 16 rows' weights in one vector), then each column's vector meets 8 tokens at
// a time, each token's activation broadcast from memory into the FMA. Every (row, token) is one lane accumulating its
// products column after column with FMA, so the widening and the horizontal sums of the row-by-row kernels are gone
// and one weight load serves 8 FMAs; with two blocks of 16 rows (rows up to 4,096 columns, where both blocks stay in
// L2) each broadcast activation also serves two FMAs (pp128 125-146 -> 158-174 tokens/s). The results differ from
// DotF16 in the order of the additions (and FMA's single rounding), as DotF16 differs from the scalar twin; prompts of
// 8 tokens or more take this path for all their tokens.
public static unsafe partial class FloatDot
{
    /// <summary>Weight rows per block of <see cref="WidenTransposeF16"/> and <see cref="DotLanes"/> (one vector).</summary>
    public const int LaneRows = 16;

    /// <summary>Tokens one pass of <see cref="DotLanes"/> takes (accumulators in registers).</summary>
    private const int LaneTokens = 8;

    /// <summary>
    /// Widens <paramref name="rows"/> (1 to <see cref="LaneRows"/>) F16 rows of <paramref name="cols"/> weights,
    /// <paramref name="rowBytes"/> apart, into <paramref name="lanes"/>: <c>lanes[k * 16 + i] = w[i][k]</c> (rows past
    /// the last repeat it), exactly as <see cref="Quant.Float16.HalfToSingle"/>. AVX-512 only.
    /// </summary>
    public static void WidenTransposeF16(byte* weights, long rowBytes, int rows, int cols, Span<float> lanes)
    {
        if (KernelPaths.Best != KernelPath.Avx512) throw new PlatformNotSupportedException("the lanes kernels are the AVX-512 path's");
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, LaneRows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (rowBytes < 2L * cols) throw new ArgumentException($"rows {rowBytes} bytes apart cannot hold {cols} halves", nameof(rowBytes));
        if (lanes.Length < (long)LaneRows * cols) throw new ArgumentException($"{cols} columns of {LaneRows} lanes need {(long)LaneRows * cols} floats, not {lanes.Length}", nameof(lanes));
        short** p = stackalloc short*[LaneRows];
        for (int i = 0; i < LaneRows; i++) p[i] = (short*)(weights + Math.Min(i, rows - 1) * rowBytes);
        fixed (float* t = lanes)
        {
            int k = 0;
            for (; k + 16 <= cols; k += 16)
                Transpose16(p, k, t + (long)k * LaneRows);
            for (; k < cols; k++)
                for (int i = 0; i < LaneRows; i++) t[(long)k * LaneRows + i] = Half((byte*)(p[i] + k));
        }
    }

    // 16 rows' 16 widened weights from column k, transposed into 16 column vectors (four unpack/shuffle stages).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Transpose16(short** p, int k, float* t)
    {
        Vector512<float> r0 = Load16(p[0] + k, false), r1 = Load16(p[1] + k, false), r2 = Load16(p[2] + k, false), r3 = Load16(p[3] + k, false);
        Vector512<float> r4 = Load16(p[4] + k, false), r5 = Load16(p[5] + k, false), r6 = Load16(p[6] + k, false), r7 = Load16(p[7] + k, false);
        Vector512<float> r8 = Load16(p[8] + k, false), r9 = Load16(p[9] + k, false), r10 = Load16(p[10] + k, false), r11 = Load16(p[11] + k, false);
        Vector512<float> r12 = Load16(p[12] + k, false), r13 = Load16(p[13] + k, false), r14 = Load16(p[14] + k, false), r15 = Load16(p[15] + k, false);
        // Pairs of rows interleaved, then quads: u_j holds column 4L + j of 4 rows in each 128-bit lane L.
        FloatDotTranspose.Quad(r0, r1, r2, r3, out var a0, out var a1, out var a2, out var a3);
        FloatDotTranspose.Quad(r4, r5, r6, r7, out var b0, out var b1, out var b2, out var b3);
        FloatDotTranspose.Quad(r8, r9, r10, r11, out var c0, out var c1, out var c2, out var c3);
        FloatDotTranspose.Quad(r12, r13, r14, r15, out var d0, out var d1, out var d2, out var d3);
        Store(a0, b0, c0, d0, t, 0);
        Store(a1, b1, c1, d1, t, 1);
        Store(a2, b2, c2, d2, t, 2);
        Store(a3, b3, c3, d3, t, 3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d, float* t, int j)
    {
        FloatDotTranspose.Columns(a, b, c, d, out var cj, out var c4j, out var c8j, out var c12j);
        Vector512.Store(cj, t + (0 + j) * LaneRows);
        Vector512.Store(c4j, t + (4 + j) * LaneRows);
        Vector512.Store(c8j, t + (8 + j) * LaneRows);
        Vector512.Store(c12j, t + (12 + j) * LaneRows);
    }

    /// <summary>
    /// <c>y[t * yStride + i] = Σ_k lanes[k * 16 + i] · x[t * cols + k]</c> for the first <paramref name="rows"/> lanes
    /// and <paramref name="count"/> activation rows, the products added column after column with FMA. AVX-512 only.
    /// </summary>
    public static void DotLanes(ReadOnlySpan<float> lanes, int rows, ReadOnlySpan<float> xRows, int cols, int count, Span<float> y, int yStride)
    {
        if (KernelPaths.Best != KernelPath.Avx512) throw new PlatformNotSupportedException("the lanes kernels are the AVX-512 path's");
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, 2 * LaneRows);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        ArgumentOutOfRangeException.ThrowIfLessThan(yStride, rows);
        int blocks = rows > LaneRows ? 2 : 1;
        if (lanes.Length < (long)blocks * LaneRows * cols) throw new ArgumentException($"{cols} columns of lanes need {(long)blocks * LaneRows * cols} floats, not {lanes.Length}", nameof(lanes));
        if (xRows.Length < (long)count * cols) throw new ArgumentException($"{count} rows of {cols} activations need {(long)count * cols} floats, not {xRows.Length}", nameof(xRows));
        if (count > 0 && y.Length < (long)(count - 1) * yStride + rows) throw new ArgumentException($"{count} rows of results {yStride} apart do not fit in {y.Length}", nameof(y));
        fixed (float* w = lanes, x = xRows, r = y)
        {
            for (int t = 0; t < count; t += LaneTokens)
            {
                float* xt = x + (long)t * cols, rt = r + (long)t * yStride;
                if (blocks == 2)
                {
                    float* wb = w + (long)LaneRows * cols;
                    PairCores[Math.Min(LaneTokens, count - t) - 1](w, wb, xt, cols, rt, yStride, rows);
                    continue;
                }
                Cores[Math.Min(LaneTokens, count - t) - 1](w, xt, cols, rt, yStride, rows);
            }
        }
    }

    // The kernels for each token count, 1 to 8: one block of 16 rows, two.
    private static readonly delegate*<float*, float*, int, float*, int, int, void>[] Cores =
    [
        &LanesCore<Lane1>, &LanesCore<Lane2>, &LanesCore<Lane3>, &LanesCore<Lane4>,
        &LanesCore<Lane5>, &LanesCore<Lane6>, &LanesCore<Lane7>, &LanesCore<Lane8>,
    ];

    private static readonly delegate*<float*, float*, float*, int, float*, int, int, void>[] PairCores =
    [
        &LanesCore2<Lane1>, &LanesCore2<Lane2>, &LanesCore2<Lane3>, &LanesCore2<Lane4>,
        &LanesCore2<Lane5>, &LanesCore2<Lane6>, &LanesCore2<Lane7>, &LanesCore2<Lane8>,
    ];

    // The token count as a type: each count gets its own compiled kernel with the count a constant.
    private interface ILaneCount { static abstract int Value { get; } }
    private struct Lane1 : ILaneCount { public static int Value => 1; }
    private struct Lane2 : ILaneCount { public static int Value => 2; }
    private struct Lane3 : ILaneCount { public static int Value => 3; }
    private struct Lane4 : ILaneCount { public static int Value => 4; }
    private struct Lane5 : ILaneCount { public static int Value => 5; }
    private struct Lane6 : ILaneCount { public static int Value => 6; }
    private struct Lane7 : ILaneCount { public static int Value => 7; }
    private struct Lane8 : ILaneCount { public static int Value => 8; }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LanesCore<TCount>(float* w, float* x, int cols, float* y, int yStride, int rows) where TCount : struct, ILaneCount
    {
        int count = TCount.Value;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        float* x1 = x + cols, x2 = x1 + cols, x3 = x2 + cols, x4 = x3 + cols, x5 = x4 + cols, x6 = x5 + cols, x7 = x6 + cols;
        for (int k = 0; k < cols; k++)
        {
            Vector512<float> v = Vector512.Load(w + (long)k * LaneRows);
            a0 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(x[k]), a0);
            if (count > 1) a1 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(x1[k]), a1);
            if (count > 2) a2 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(x2[k]), a2);
            if (count > 3) a3 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(x3[k]), a3);
            if (count > 4) a4 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(x4[k]), a4);
            if (count > 5) a5 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(x5[k]), a5);
            if (count > 6) a6 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(x6[k]), a6);
            if (count > 7) a7 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(x7[k]), a7);
        }
        StoreRows(a0, y, rows);
        if (count > 1) StoreRows(a1, y + yStride, rows);
        if (count > 2) StoreRows(a2, y + 2 * yStride, rows);
        if (count > 3) StoreRows(a3, y + 3 * yStride, rows);
        if (count > 4) StoreRows(a4, y + 4 * yStride, rows);
        if (count > 5) StoreRows(a5, y + 5 * yStride, rows);
        if (count > 6) StoreRows(a6, y + 6 * yStride, rows);
        if (count > 7) StoreRows(a7, y + 7 * yStride, rows);
    }

    // Two blocks of 16 rows (b = w + 16 * cols) with the same tokens: each broadcast activation serves two FMAs.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LanesCore2<TCount>(float* w, float* b, float* x, int cols, float* y, int yStride, int rows) where TCount : struct, ILaneCount
    {
        int count = TCount.Value;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        float* x1 = x + cols, x2 = x1 + cols, x3 = x2 + cols, x4 = x3 + cols, x5 = x4 + cols, x6 = x5 + cols, x7 = x6 + cols;
        for (int k = 0; k < cols; k++)
        {
            Vector512<float> v = Vector512.Load(w + (long)k * LaneRows), u = Vector512.Load(b + (long)k * LaneRows), e;
            e = Vector512.Create(x[k]); a0 = Avx512F.FusedMultiplyAdd(v, e, a0); c0 = Avx512F.FusedMultiplyAdd(u, e, c0);
            if (count > 1) { e = Vector512.Create(x1[k]); a1 = Avx512F.FusedMultiplyAdd(v, e, a1); c1 = Avx512F.FusedMultiplyAdd(u, e, c1); }
            if (count > 2) { e = Vector512.Create(x2[k]); a2 = Avx512F.FusedMultiplyAdd(v, e, a2); c2 = Avx512F.FusedMultiplyAdd(u, e, c2); }
            if (count > 3) { e = Vector512.Create(x3[k]); a3 = Avx512F.FusedMultiplyAdd(v, e, a3); c3 = Avx512F.FusedMultiplyAdd(u, e, c3); }
            if (count > 4) { e = Vector512.Create(x4[k]); a4 = Avx512F.FusedMultiplyAdd(v, e, a4); c4 = Avx512F.FusedMultiplyAdd(u, e, c4); }
            if (count > 5) { e = Vector512.Create(x5[k]); a5 = Avx512F.FusedMultiplyAdd(v, e, a5); c5 = Avx512F.FusedMultiplyAdd(u, e, c5); }
            if (count > 6) { e = Vector512.Create(x6[k]); a6 = Avx512F.FusedMultiplyAdd(v, e, a6); c6 = Avx512F.FusedMultiplyAdd(u, e, c6); }
            if (count > 7) { e = Vector512.Create(x7[k]); a7 = Avx512F.FusedMultiplyAdd(v, e, a7); c7 = Avx512F.FusedMultiplyAdd(u, e, c7); }
        }
        int second = rows - LaneRows;
        StoreRows(a0, y, LaneRows); StoreRows(c0, y + LaneRows, second);
        if (count > 1) { StoreRows(a1, y + yStride, LaneRows); StoreRows(c1, y + yStride + LaneRows, second); }
        if (count > 2) { StoreRows(a2, y + 2 * yStride, LaneRows); StoreRows(c2, y + 2 * yStride + LaneRows, second); }
        if (count > 3) { StoreRows(a3, y + 3 * yStride, LaneRows); StoreRows(c3, y + 3 * yStride + LaneRows, second); }
        if (count > 4) { StoreRows(a4, y + 4 * yStride, LaneRows); StoreRows(c4, y + 4 * yStride + LaneRows, second); }
        if (count > 5) { StoreRows(a5, y + 5 * yStride, LaneRows); StoreRows(c5, y + 5 * yStride + LaneRows, second); }
        if (count > 6) { StoreRows(a6, y + 6 * yStride, LaneRows); StoreRows(c6, y + 6 * yStride + LaneRows, second); }
        if (count > 7) { StoreRows(a7, y + 7 * yStride, LaneRows); StoreRows(c7, y + 7 * yStride + LaneRows, second); }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(Vector512<float> v, float* y, int rows)
    {
        if (rows == LaneRows) Vector512.Store(v, y);
        else for (int i = 0; i < rows; i++) y[i] = v.GetElement(i);
    }
}

/// <summary>
/// The 16 x 16 transpose of 32-bit lanes in four unpack and shuffle stages (used on floats and, by the Q8_0 lanes
/// kernel, on pairs of 16-bit quants): <see cref="Quad"/> on each group of 4 rows, then <see cref="Columns"/>.
/// </summary>
internal static class FloatDotTranspose
{
    /// <summary>4 rows interleaved: <c>u_j</c> holds column 4L + j of the 4 rows in each 128-bit lane L.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Quad(Vector512<float> r0, Vector512<float> r1, Vector512<float> r2, Vector512<float> r3,
        out Vector512<float> u0, out Vector512<float> u1, out Vector512<float> u2, out Vector512<float> u3)
    {
        Vector512<double> t0 = Avx512F.UnpackLow(r0, r1).AsDouble(), t1 = Avx512F.UnpackHigh(r0, r1).AsDouble();
        Vector512<double> t2 = Avx512F.UnpackLow(r2, r3).AsDouble(), t3 = Avx512F.UnpackHigh(r2, r3).AsDouble();
        u0 = Avx512F.UnpackLow(t0, t2).AsSingle();
        u1 = Avx512F.UnpackHigh(t0, t2).AsSingle();
        u2 = Avx512F.UnpackLow(t1, t3).AsSingle();
        u3 = Avx512F.UnpackHigh(t1, t3).AsSingle();
    }

    /// <summary>Columns j, 4 + j, 8 + j and 12 + j of the 16 rows, from the four quads' <c>u_j</c> (rows 0-3, 4-7, 8-11, 12-15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Columns(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d,
        out Vector512<float> cj, out Vector512<float> c4j, out Vector512<float> c8j, out Vector512<float> c12j)
    {
        Vector512<float> ab0 = Avx512F.Shuffle4x128(a, b, 0x88), ab1 = Avx512F.Shuffle4x128(a, b, 0xDD);
        Vector512<float> cd0 = Avx512F.Shuffle4x128(c, d, 0x88), cd1 = Avx512F.Shuffle4x128(c, d, 0xDD);
        cj = Avx512F.Shuffle4x128(ab0, cd0, 0x88);
        c8j = Avx512F.Shuffle4x128(ab0, cd0, 0xDD);
        c4j = Avx512F.Shuffle4x128(ab1, cd1, 0x88);
        c12j = Avx512F.Shuffle4x128(ab1, cd1, 0xDD);
    }
}
