using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama3.Kernels.Simd;

// The F16 cores of FloatDot. Widening halves costs several vector operations per weight vector (QuantDotHelpers.
// HalfToSingle), so F16 rows keep 2 accumulators (the widening, not the FMA latency, bounds one row) and share each
// widened vector among more activation rows: 8 on AVX-512, 4 on AVX2, where 4 accumulators a row would leave room for
// only 4 and 2. BF16 widens in one shift and keeps the 4-accumulator cores of FloatDot.Cores.cs.
// (Written out row by row as those are; rows is a constant where these are inlined.)
public static unsafe partial class FloatDot
{
    /// <summary>
    /// Halves ahead that a single-row F16 dot product prefetches (4 KiB): decode streams each weight once, and the
    /// hardware prefetcher alone left it at 11-12 tokens/s on the 1B-shaped F16 file, 14-15 with this (1, 2, 4 and 8 KiB
    /// measured; 2-4 best).
    /// </summary>
    private const int PrefetchHalves = 2048;
    /// <summary>F16 on AVX-512: 32 weights a step in 2 accumulators, then 16; up to 8 rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void F16Avx512Core(short* w, float* x, int stride, int n, int rows, float* y)
    {
        float* x0 = x;
        float* x1 = x0 + stride;
        float* x2 = x1 + stride;
        float* x3 = x2 + stride;
        float* x4 = x3 + stride;
        float* x5 = x4 + stride;
        float* x6 = x5 + stride;
        float* x7 = x6 + stride;
        Vector512<float> a00 = default, a01 = default;
        Vector512<float> a10 = default, a11 = default;
        Vector512<float> a20 = default, a21 = default;
        Vector512<float> a30 = default, a31 = default;
        Vector512<float> a40 = default, a41 = default;
        Vector512<float> a50 = default, a51 = default;
        Vector512<float> a60 = default, a61 = default;
        Vector512<float> a70 = default, a71 = default;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            if (rows == 1) Sse.Prefetch0(w + i + PrefetchHalves);
            Vector512<float> w0 = Load16(w + i, bfloat: false), w1 = Load16(w + i + 16, bfloat: false);
            a00 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x0 + i), a00);
            a01 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x0 + i + 16), a01);
            if (rows > 1)
            {
                a10 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x1 + i), a10);
                a11 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x1 + i + 16), a11);
            }
            if (rows > 2)
            {
                a20 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x2 + i), a20);
                a21 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x2 + i + 16), a21);
            }
            if (rows > 3)
            {
                a30 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x3 + i), a30);
                a31 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x3 + i + 16), a31);
            }
            if (rows > 4)
            {
                a40 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x4 + i), a40);
                a41 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x4 + i + 16), a41);
            }
            if (rows > 5)
            {
                a50 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x5 + i), a50);
                a51 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x5 + i + 16), a51);
            }
            if (rows > 6)
            {
                a60 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x6 + i), a60);
                a61 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x6 + i + 16), a61);
            }
            if (rows > 7)
            {
                a70 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x7 + i), a70);
                a71 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x7 + i + 16), a71);
            }
        }
        for (; i + 16 <= n; i += 16)
        {
            Vector512<float> w0 = Load16(w + i, bfloat: false);
            a00 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x0 + i), a00);
            if (rows > 1) a10 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x1 + i), a10);
            if (rows > 2) a20 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x2 + i), a20);
            if (rows > 3) a30 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x3 + i), a30);
            if (rows > 4) a40 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x4 + i), a40);
            if (rows > 5) a50 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x5 + i), a50);
            if (rows > 6) a60 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x6 + i), a60);
            if (rows > 7) a70 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x7 + i), a70);
        }
        y[0] = Tail(w, x0, i, n, bfloat: false, Vector512.Sum(a00 + a01));
        if (rows > 1) y[1] = Tail(w, x1, i, n, bfloat: false, Vector512.Sum(a10 + a11));
        if (rows > 2) y[2] = Tail(w, x2, i, n, bfloat: false, Vector512.Sum(a20 + a21));
        if (rows > 3) y[3] = Tail(w, x3, i, n, bfloat: false, Vector512.Sum(a30 + a31));
        if (rows > 4) y[4] = Tail(w, x4, i, n, bfloat: false, Vector512.Sum(a40 + a41));
        if (rows > 5) y[5] = Tail(w, x5, i, n, bfloat: false, Vector512.Sum(a50 + a51));
        if (rows > 6) y[6] = Tail(w, x6, i, n, bfloat: false, Vector512.Sum(a60 + a61));
        if (rows > 7) y[7] = Tail(w, x7, i, n, bfloat: false, Vector512.Sum(a70 + a71));
    }

    /// <summary>F16 on AVX2: 16 weights a step in 2 accumulators, then 8; up to 4 rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void F16Avx2Core(short* w, float* x, int stride, int n, int rows, float* y)
    {
        float* x0 = x;
        float* x1 = x0 + stride;
        float* x2 = x1 + stride;
        float* x3 = x2 + stride;
        Vector256<float> a00 = default, a01 = default;
        Vector256<float> a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default;
        Vector256<float> a30 = default, a31 = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            Vector256<float> w0 = Load8(w + i, bfloat: false), w1 = Load8(w + i + 8, bfloat: false);
            a00 = Fma.MultiplyAdd(w0, Vector256.Load(x0 + i), a00);
            a01 = Fma.MultiplyAdd(w1, Vector256.Load(x0 + i + 8), a01);
            if (rows > 1)
            {
                a10 = Fma.MultiplyAdd(w0, Vector256.Load(x1 + i), a10);
                a11 = Fma.MultiplyAdd(w1, Vector256.Load(x1 + i + 8), a11);
            }
            if (rows > 2)
            {
                a20 = Fma.MultiplyAdd(w0, Vector256.Load(x2 + i), a20);
                a21 = Fma.MultiplyAdd(w1, Vector256.Load(x2 + i + 8), a21);
            }
            if (rows > 3)
            {
                a30 = Fma.MultiplyAdd(w0, Vector256.Load(x3 + i), a30);
                a31 = Fma.MultiplyAdd(w1, Vector256.Load(x3 + i + 8), a31);
            }
        }
        for (; i + 8 <= n; i += 8)
        {
            Vector256<float> w0 = Load8(w + i, bfloat: false);
            a00 = Fma.MultiplyAdd(w0, Vector256.Load(x0 + i), a00);
            if (rows > 1) a10 = Fma.MultiplyAdd(w0, Vector256.Load(x1 + i), a10);
            if (rows > 2) a20 = Fma.MultiplyAdd(w0, Vector256.Load(x2 + i), a20);
            if (rows > 3) a30 = Fma.MultiplyAdd(w0, Vector256.Load(x3 + i), a30);
        }
        y[0] = Tail(w, x0, i, n, bfloat: false, Vector256.Sum(a00 + a01));
        if (rows > 1) y[1] = Tail(w, x1, i, n, bfloat: false, Vector256.Sum(a10 + a11));
        if (rows > 2) y[2] = Tail(w, x2, i, n, bfloat: false, Vector256.Sum(a20 + a21));
        if (rows > 3) y[3] = Tail(w, x3, i, n, bfloat: false, Vector256.Sum(a30 + a31));
    }
}
