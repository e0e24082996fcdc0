using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama3.Kernels.Simd;

// F16 rows against one activation row (decode), widened in 3 operations instead of HalfToSingle's 8.
//
// The activations are scaled by 2^112 once (exact while every |x| < 2^16). A half's sign, exponent and mantissa moved
// into a float's places (sign-extend, shift by 13, clear bits 28-30) are then the float w * 2^-112, exactly: normal
// halves become normal floats, subnormal halves subnormal floats, both without rounding. Each product w' * x' is the
// real number w * x, so every fused multiply-add rounds as the unscaled one does and the row's sum has DotF16's bits.
// Halves with exponent 31 (infinities, NaN) would come out finite: each row keeps the largest exponent field it saw
// and a row that held one is done again by DotF16. Activations of 2^16 or more (or NaN) take DotF16 for the call.
//
// The steps, accumulators and tail are those of F16Avx512Core and F16Avx2Core for one row (FloatDot.F16Cores.cs).
// On the 1B-shaped F16 file one core read rows from L2 at 27 GB/s with HalfToSingle and 55-60 with this; from
// memory 24 and 30-35.
public static unsafe partial class FloatDot
{
    /// <summary>2^112 = 2^(127 - 15), the ratio of the float and half exponent biases.</summary>
    private const float HalfScale = 5.192296858534828e33f;

    /// <summary>
    /// <c>y[r] = DotF16(weights[r * rowBytes ..], x)</c> for <paramref name="rows"/> F16 rows of <c>2 * x.Length</c>
    /// bytes, <paramref name="rowBytes"/> apart, bit for bit. <paramref name="scratch"/> holds <c>x.Length</c> floats.
    /// </summary>
    public static void DotRowsF16(ReadOnlySpan<byte> weights, long rowBytes, int rows, ReadOnlySpan<float> x, Span<float> scratch, Span<float> y) =>
        DotRowsF16(weights, rowBytes, rows, x, scratch, y, KernelPaths.Best);

    /// <summary><see cref="DotRowsF16(ReadOnlySpan{byte}, long, int, ReadOnlySpan{float}, Span{float}, Span{float})"/> on a given path.</summary>
    internal static void DotRowsF16(ReadOnlySpan<byte> weights, long rowBytes, int rows, ReadOnlySpan<float> x, Span<float> scratch,
        Span<float> y, KernelPath path)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (rowBytes < 2L * x.Length)
            throw new ArgumentOutOfRangeException(nameof(rowBytes), rowBytes, $"rows of {x.Length} halves take {2L * x.Length} bytes");
        if (rows > 0 && weights.Length < (rows - 1) * rowBytes + 2L * x.Length)
            throw new ArgumentException($"{rows} rows {rowBytes} bytes apart do not fit in {weights.Length} bytes", nameof(weights));
        if (y.Length < rows)
            throw new ArgumentException($"{rows} results do not fit in {y.Length}", nameof(y));
        if (scratch.Length < x.Length)
            throw new ArgumentException($"the scratch holds {scratch.Length} floats, not {x.Length}", nameof(scratch));
        int n = x.Length;
        if (path == KernelPath.Scalar)
        {
            for (int i = 0; i < rows; i++)
                y[i] = FloatDotScalar.DotF16(weights.Slice(checked((int)(i * rowBytes)), 2 * n), x);
            return;
        }
        bool scaled = path is KernelPath.Avx512 or KernelPath.Avx2 && n > 0 && MathF.Abs(TensorPrimitives.MaxMagnitude(x)) < 65536f;
        if (scaled)
            TensorPrimitives.Multiply(x, HalfScale, scratch);
        fixed (byte* w0 = weights)
        fixed (float* a = x)
        fixed (float* s = scratch)
        fixed (float* r = y)
            for (int i = 0; i < rows; i++)
            {
                short* w = (short*)(w0 + i * rowBytes);
                bool done = scaled && (path == KernelPath.Avx512 ? ScaledAvx512(w, s, a, n, r + i) : ScaledAvx2(w, s, a, n, r + i));
                if (!done)
                    Rows(w, a, 0, n, 1, r + i, bfloat: false, path);
            }
    }

    /// <summary>Sign, exponent and mantissa of 16 halves in a float's places: <c>w * 2^-112</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Placed16(short* p) =>
        (Avx512F.ConvertToVector512Int32(Vector256.Load(p)) << 13) & Vector512.Create(unchecked((int)0x8FFFE000));

    /// <summary>The 8-half twin of <see cref="Placed16"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Placed8(short* p) =>
        (Avx2.ConvertToVector256Int32(Vector128.Load(p)) << 13) & Vector256.Create(unchecked((int)0x8FFFE000));

    /// <summary>The exponent field of a placed half; 31 (all of it) only for infinities and NaN.</summary>
    private const uint PlacedExponent = 0x0F800000;

    /// <summary>One row on AVX-512 with the scaled activations <paramref name="xs"/>; false where the row holds an infinity or NaN.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool ScaledAvx512(short* w, float* xs, float* x, int n, float* y)
    {
        Vector512<float> a0 = default, a1 = default;
        Vector512<uint> top = default, exponent = Vector512.Create(PlacedExponent);
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Sse.Prefetch0(w + i + PrefetchHalves);
            Vector512<int> w0 = Placed16(w + i), w1 = Placed16(w + i + 16);
            top = Vector512.Max(top, Vector512.Max(w0.AsUInt32() & exponent, w1.AsUInt32() & exponent));
            a0 = Avx512F.FusedMultiplyAdd(w0.AsSingle(), Vector512.Load(xs + i), a0);
            a1 = Avx512F.FusedMultiplyAdd(w1.AsSingle(), Vector512.Load(xs + i + 16), a1);
        }
        for (; i + 16 <= n; i += 16)
        {
            Vector512<int> w0 = Placed16(w + i);
            top = Vector512.Max(top, w0.AsUInt32() & exponent);
            a0 = Avx512F.FusedMultiplyAdd(w0.AsSingle(), Vector512.Load(xs + i), a0);
        }
        if (Vector512.EqualsAny(top, exponent))
            return false;
        *y = Tail(w, x, i, n, bfloat: false, Vector512.Sum(a0 + a1));
        return true;
    }

    /// <summary>The AVX2 twin of <see cref="ScaledAvx512"/> (F16Avx2Core's steps: 16 a step in 2 accumulators, then 8).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool ScaledAvx2(short* w, float* xs, float* x, int n, float* y)
    {
        Vector256<float> a0 = default, a1 = default;
        Vector256<uint> top = default, exponent = Vector256.Create(PlacedExponent);
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            Vector256<int> w0 = Placed8(w + i), w1 = Placed8(w + i + 8);
            top = Vector256.Max(top, Vector256.Max(w0.AsUInt32() & exponent, w1.AsUInt32() & exponent));
            a0 = Fma.MultiplyAdd(w0.AsSingle(), Vector256.Load(xs + i), a0);
            a1 = Fma.MultiplyAdd(w1.AsSingle(), Vector256.Load(xs + i + 8), a1);
        }
        for (; i + 8 <= n; i += 8)
        {
            Vector256<int> w0 = Placed8(w + i);
            top = Vector256.Max(top, w0.AsUInt32() & exponent);
            a0 = Fma.MultiplyAdd(w0.AsSingle(), Vector256.Load(xs + i), a0);
        }
        if (Vector256.EqualsAny(top, exponent))
            return false;
        *y = Tail(w, x, i, n, bfloat: false, Vector256.Sum(a0 + a1));
        return true;
    }
}
