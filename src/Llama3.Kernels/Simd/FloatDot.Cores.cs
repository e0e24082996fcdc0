using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// The 4-accumulator cores of FloatDot (BF16 on AVX-512 and AVX2; Vector128 for both types), inlined into one method per path, type and row count (rows and bfloat are constants there,
// so the unused rows' code folds away). Row r's additions are the same whatever `rows` is: its own accumulators, the
// same steps, the same final sum and tail. The activations are FMA memory operands; only the weights take registers.
public static unsafe partial class FloatDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx512Core(short* w, float* x, int stride, int n, int rows, float* y, bool bfloat)
    {
        float* x0 = x, x1 = x + stride, x2 = x1 + stride, x3 = x2 + stride;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        int i = 0;
        for (; i + 64 <= n; i += 64)
        {
            Vector512<float> w0 = Load16(w + i, bfloat), w1 = Load16(w + i + 16, bfloat);
            Vector512<float> w2 = Load16(w + i + 32, bfloat), w3 = Load16(w + i + 48, bfloat);
            a00 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x0 + i), a00);
            a01 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x0 + i + 16), a01);
            a02 = Avx512F.FusedMultiplyAdd(w2, Vector512.Load(x0 + i + 32), a02);
            a03 = Avx512F.FusedMultiplyAdd(w3, Vector512.Load(x0 + i + 48), a03);
            if (rows > 1)
            {
                a10 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x1 + i), a10);
                a11 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x1 + i + 16), a11);
                a12 = Avx512F.FusedMultiplyAdd(w2, Vector512.Load(x1 + i + 32), a12);
                a13 = Avx512F.FusedMultiplyAdd(w3, Vector512.Load(x1 + i + 48), a13);
            }
            if (rows > 2)
            {
                a20 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x2 + i), a20);
                a21 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x2 + i + 16), a21);
                a22 = Avx512F.FusedMultiplyAdd(w2, Vector512.Load(x2 + i + 32), a22);
                a23 = Avx512F.FusedMultiplyAdd(w3, Vector512.Load(x2 + i + 48), a23);
            }
            if (rows > 3)
            {
                a30 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x3 + i), a30);
                a31 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x3 + i + 16), a31);
                a32 = Avx512F.FusedMultiplyAdd(w2, Vector512.Load(x3 + i + 32), a32);
                a33 = Avx512F.FusedMultiplyAdd(w3, Vector512.Load(x3 + i + 48), a33);
            }
        }
        for (; i + 16 <= n; i += 16)
        {
            Vector512<float> w0 = Load16(w + i, bfloat);
            a00 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x0 + i), a00);
            if (rows > 1) a10 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x1 + i), a10);
            if (rows > 2) a20 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x2 + i), a20);
            if (rows > 3) a30 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x3 + i), a30);
        }
        y[0] = Tail(w, x0, i, n, bfloat, Vector512.Sum((a00 + a01) + (a02 + a03)));
        if (rows > 1) y[1] = Tail(w, x1, i, n, bfloat, Vector512.Sum((a10 + a11) + (a12 + a13)));
        if (rows > 2) y[2] = Tail(w, x2, i, n, bfloat, Vector512.Sum((a20 + a21) + (a22 + a23)));
        if (rows > 3) y[3] = Tail(w, x3, i, n, bfloat, Vector512.Sum((a30 + a31) + (a32 + a33)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Core(short* w, float* x, int stride, int n, int rows, float* y, bool bfloat)
    {
        float* x0 = x, x1 = x + stride;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Vector256<float> w0 = Load8(w + i, bfloat), w1 = Load8(w + i + 8, bfloat);
            Vector256<float> w2 = Load8(w + i + 16, bfloat), w3 = Load8(w + i + 24, bfloat);
            a00 = Fma.MultiplyAdd(w0, Vector256.Load(x0 + i), a00);
            a01 = Fma.MultiplyAdd(w1, Vector256.Load(x0 + i + 8), a01);
            a02 = Fma.MultiplyAdd(w2, Vector256.Load(x0 + i + 16), a02);
            a03 = Fma.MultiplyAdd(w3, Vector256.Load(x0 + i + 24), a03);
            if (rows > 1)
            {
                a10 = Fma.MultiplyAdd(w0, Vector256.Load(x1 + i), a10);
                a11 = Fma.MultiplyAdd(w1, Vector256.Load(x1 + i + 8), a11);
                a12 = Fma.MultiplyAdd(w2, Vector256.Load(x1 + i + 16), a12);
                a13 = Fma.MultiplyAdd(w3, Vector256.Load(x1 + i + 24), a13);
            }
        }
        for (; i + 8 <= n; i += 8)
        {
            Vector256<float> w0 = Load8(w + i, bfloat);
            a00 = Fma.MultiplyAdd(w0, Vector256.Load(x0 + i), a00);
            if (rows > 1) a10 = Fma.MultiplyAdd(w0, Vector256.Load(x1 + i), a10);
        }
        y[0] = Tail(w, x0, i, n, bfloat, Vector256.Sum((a00 + a01) + (a02 + a03)));
        if (rows > 1) y[1] = Tail(w, x1, i, n, bfloat, Vector256.Sum((a10 + a11) + (a12 + a13)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Vector128Core(short* w, float* x, int stride, int n, int rows, float* y, bool bfloat)
    {
        float* x0 = x, x1 = x + stride, x2 = x1 + stride, x3 = x2 + stride;
        Vector128<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector128<float> a20 = default, a21 = default, a30 = default, a31 = default;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            Vector128<short> bits = Vector128.Load(w + i);
            Vector128<float> w0 = Widen4(Vector128.WidenLower(bits), bfloat), w1 = Widen4(Vector128.WidenUpper(bits), bfloat);
            a00 = MultiplyAdd(w0, Vector128.Load(x0 + i), a00);
            a01 = MultiplyAdd(w1, Vector128.Load(x0 + i + 4), a01);
            if (rows > 1)
            {
                a10 = MultiplyAdd(w0, Vector128.Load(x1 + i), a10);
                a11 = MultiplyAdd(w1, Vector128.Load(x1 + i + 4), a11);
            }
            if (rows > 2)
            {
                a20 = MultiplyAdd(w0, Vector128.Load(x2 + i), a20);
                a21 = MultiplyAdd(w1, Vector128.Load(x2 + i + 4), a21);
            }
            if (rows > 3)
            {
                a30 = MultiplyAdd(w0, Vector128.Load(x3 + i), a30);
                a31 = MultiplyAdd(w1, Vector128.Load(x3 + i + 4), a31);
            }
        }
        y[0] = Tail(w, x0, i, n, bfloat, Vector128.Sum(a00 + a01));
        if (rows > 1) y[1] = Tail(w, x1, i, n, bfloat, Vector128.Sum(a10 + a11));
        if (rows > 2) y[2] = Tail(w, x2, i, n, bfloat, Vector128.Sum(a20 + a21));
        if (rows > 3) y[3] = Tail(w, x3, i, n, bfloat, Vector128.Sum(a30 + a31));
    }
}
