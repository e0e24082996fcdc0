using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// F16 and BF16: both rows widened to float in vectors (exactly: see HalfToSingle) and multiplied and added in float
// lanes with FMA, as ggml_vec_dot_f16 / ggml_vec_dot_bf16 do with F16C / AVX512-BF16; the scalar twins add in double.
// Each product of two halves or two bfloat16s is exact in float, so the only rounding is in the additions.
public static unsafe partial class QuantDot
{
    internal static float DotF16(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotF16(w, a, n);
        QuantDotChecks.Blocks(w, a, n, 1, 2, 2, "F16", "F16");
        fixed (byte* x = w, y = a)
            return Float16Dot((short*)x, (short*)y, n, bfloat: false, path);
    }

    internal static float DotBF16(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotBF16(w, a, n);
        QuantDotChecks.Blocks(w, a, n, 1, 2, 2, "BF16", "BF16");
        fixed (byte* x = w, y = a)
            return Float16Dot((short*)x, (short*)y, n, bfloat: true, path);
    }

    private static float Float16Dot(short* x, short* y, int n, bool bfloat, KernelPath path) => (path, bfloat) switch
    {
        (KernelPath.Avx512, false) => F16Avx512(x, y, n),
        (KernelPath.Avx512, true) => BF16Avx512(x, y, n),
        (KernelPath.Avx2, false) => F16Avx2(x, y, n),
        (KernelPath.Avx2, true) => BF16Avx2(x, y, n),
        (_, false) => F16Vector128(x, y, n),
        (_, true) => BF16Vector128(x, y, n),
    };

    // One method per instruction set and type (see QuantDot.K.cs), the shared cores inlined with constant flags.
    [MethodImpl(MethodImplOptions.NoInlining)] private static float F16Avx512(short* x, short* y, int n) => Float16Avx512(x, y, n, bfloat: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float BF16Avx512(short* x, short* y, int n) => Float16Avx512(x, y, n, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float F16Avx2(short* x, short* y, int n) => Float16Avx2(x, y, n, bfloat: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float BF16Avx2(short* x, short* y, int n) => Float16Avx2(x, y, n, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float F16Vector128(short* x, short* y, int n) => Float16Vector128(x, y, n, bfloat: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float BF16Vector128(short* x, short* y, int n) => Float16Vector128(x, y, n, bfloat: true);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Float16Avx512(short* x, short* y, int n, bool bfloat)
    {
        int i = 0;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        Vector512<float> acc2 = Vector512<float>.Zero, acc3 = Vector512<float>.Zero;
        for (; i + 64 <= n; i += 64)
        {
            Vector512<short> x0 = Vector512.Load(x + i), y0 = Vector512.Load(y + i);
            Vector512<short> x1 = Vector512.Load(x + i + 32), y1 = Vector512.Load(y + i + 32);
            acc0 = Avx512F.FusedMultiplyAdd(Widen(Vector512.WidenLower(x0), bfloat), Widen(Vector512.WidenLower(y0), bfloat), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Widen(Vector512.WidenUpper(x0), bfloat), Widen(Vector512.WidenUpper(y0), bfloat), acc1);
            acc2 = Avx512F.FusedMultiplyAdd(Widen(Vector512.WidenLower(x1), bfloat), Widen(Vector512.WidenLower(y1), bfloat), acc2);
            acc3 = Avx512F.FusedMultiplyAdd(Widen(Vector512.WidenUpper(x1), bfloat), Widen(Vector512.WidenUpper(y1), bfloat), acc3);
        }
        for (; i + 16 <= n; i += 16)
            acc0 = Avx512F.FusedMultiplyAdd(
                Widen(Avx512F.ConvertToVector512Int32(Vector256.Load(x + i)), bfloat),
                Widen(Avx512F.ConvertToVector512Int32(Vector256.Load(y + i)), bfloat), acc0);
        return Tail(x, y, i, n, bfloat, Vector512.Sum((acc0 + acc1) + (acc2 + acc3)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Float16Avx2(short* x, short* y, int n, bool bfloat)
    {
        int i = 0;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector256<float> acc2 = Vector256<float>.Zero, acc3 = Vector256<float>.Zero;
        for (; i + 32 <= n; i += 32)
        {
            Vector256<short> x0 = Vector256.Load(x + i), y0 = Vector256.Load(y + i);
            Vector256<short> x1 = Vector256.Load(x + i + 16), y1 = Vector256.Load(y + i + 16);
            acc0 = Fma.MultiplyAdd(Widen(Vector256.WidenLower(x0), bfloat), Widen(Vector256.WidenLower(y0), bfloat), acc0);
            acc1 = Fma.MultiplyAdd(Widen(Vector256.WidenUpper(x0), bfloat), Widen(Vector256.WidenUpper(y0), bfloat), acc1);
            acc2 = Fma.MultiplyAdd(Widen(Vector256.WidenLower(x1), bfloat), Widen(Vector256.WidenLower(y1), bfloat), acc2);
            acc3 = Fma.MultiplyAdd(Widen(Vector256.WidenUpper(x1), bfloat), Widen(Vector256.WidenUpper(y1), bfloat), acc3);
        }
        for (; i + 8 <= n; i += 8)
            acc0 = Fma.MultiplyAdd(
                Widen(Avx2.ConvertToVector256Int32(Vector128.Load(x + i)), bfloat),
                Widen(Avx2.ConvertToVector256Int32(Vector128.Load(y + i)), bfloat), acc0);
        return Tail(x, y, i, n, bfloat, Vector256.Sum((acc0 + acc1) + (acc2 + acc3)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Float16Vector128(short* x, short* y, int n, bool bfloat)
    {
        int i = 0;
        Vector128<float> acc0 = Vector128<float>.Zero, acc1 = Vector128<float>.Zero;
        for (; i + 8 <= n; i += 8)
        {
            Vector128<short> x0 = Vector128.Load(x + i), y0 = Vector128.Load(y + i);
            acc0 = MultiplyAdd(Widen(Vector128.WidenLower(x0), bfloat), Widen(Vector128.WidenLower(y0), bfloat), acc0);
            acc1 = MultiplyAdd(Widen(Vector128.WidenUpper(x0), bfloat), Widen(Vector128.WidenUpper(y0), bfloat), acc1);
        }
        return Tail(x, y, i, n, bfloat, Vector128.Sum(acc0 + acc1));
    }

    /// <summary>The last values one at a time (each product exact), added to <paramref name="sum"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(short* x, short* y, int i, int n, bool bfloat, float sum)
    {
        for (; i < n; i++)
            sum += bfloat
                ? BitConverter.Int32BitsToSingle(x[i] << 16) * BitConverter.Int32BitsToSingle(y[i] << 16)
                : Half((byte*)(x + i)) * Half((byte*)(y + i));
        return sum;
    }

    /// <summary>16-bit floats (sign-extended to 32 bits) to float: halves by bit moves, bfloat16s by a shift.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(Vector512<int> bits, bool bfloat) =>
        bfloat ? (bits << 16).AsSingle() : HalfToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen(Vector256<int> bits, bool bfloat) =>
        bfloat ? (bits << 16).AsSingle() : HalfToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Widen(Vector128<int> bits, bool bfloat) =>
        bfloat ? (bits << 16).AsSingle() : HalfToSingle(bits);
}
