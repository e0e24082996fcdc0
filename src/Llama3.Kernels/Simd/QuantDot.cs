using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

/// <summary>
/// Dot products of one weight row with one activation row already in the weight type's
/// <see cref="Quant.QuantType.VecDotType"/> (ggml-cpu's <c>ggml_vec_dot_*</c>), vectorized with
/// System.Runtime.Intrinsics: an AVX-512 (F, BW) path, an AVX2 + FMA path and a portable <see cref="Vector128"/> path,
/// the widest available taken; the scalar twins are in <see cref="QuantDotScalar"/>, which describes the arithmetic.
/// </summary>
/// <remarks>
/// <para>Integer parts are exact for every input byte, so the vectorized and scalar results differ only by float
/// rounding, and for the K-quants not at all: there the integer sum of each super-block is formed in vectors and the
/// few float operations per super-block are the scalar twin's, in its order. The 32-blocks (Q4_0 .. Q8_0) keep per-lane
/// partial sums (as ggml's AVX2 code does), so their float terms are added in another order. F16 and BF16 widen both
/// rows to float and add the (exact) products in float lanes, not in double as the scalar twin does; F32 is
/// <see cref="TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>.</para>
/// <para>Unlike ggml's AVX2 code, the 8-bit products never rely on <c>_mm256_sign_epi8</c> or saturating
/// <c>maddubs</c> of signed quants, which go wrong for a quant of -128 (our quantizers never write one, but a file
/// may hold one): signed-by-signed products widen to 16 bits first, and unsigned-by-signed <c>maddubs</c> is used only
/// where its 16-bit pair sums cannot overflow (weights below 64).</para>
/// </remarks>
public static unsafe partial class QuantDot
{
    /// <summary>Q8_0 weights with Q8_0 activations (see <see cref="QuantDotScalar.DotQ8_0"/>).</summary>
    public static float DotQ8_0(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ8_0(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Q4_0 weights with Q8_0 activations (see <see cref="QuantDotScalar.DotQ4_0"/>).</summary>
    public static float DotQ4_0(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ4_0(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Q4_1 weights with Q8_1 activations (see <see cref="QuantDotScalar.DotQ4_1"/>).</summary>
    public static float DotQ4_1(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ4_1(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Q5_0 weights with Q8_0 activations (see <see cref="QuantDotScalar.DotQ5_0"/>).</summary>
    public static float DotQ5_0(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ5_0(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Q5_1 weights with Q8_1 activations (see <see cref="QuantDotScalar.DotQ5_1"/>).</summary>
    public static float DotQ5_1(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ5_1(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Q2_K weights with Q8_K activations (see <see cref="QuantDotScalar.DotQ2_K"/>); the same bits as the scalar twin.</summary>
    public static float DotQ2_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ2_K(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Q3_K weights with Q8_K activations (see <see cref="QuantDotScalar.DotQ3_K"/>); the same bits as the scalar twin.</summary>
    public static float DotQ3_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ3_K(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Q4_K weights with Q8_K activations (see <see cref="QuantDotScalar.DotQ4_K"/>); the same bits as the scalar twin.</summary>
    public static float DotQ4_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ4_K(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Q5_K weights with Q8_K activations (see <see cref="QuantDotScalar.DotQ5_K"/>); the same bits as the scalar twin.</summary>
    public static float DotQ5_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ5_K(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>
    /// Q6_K weights with Q8_K activations (see <see cref="QuantDotScalar.DotQ6_K"/>); the same bits as the scalar
    /// twin. The activations' block sums must be those of their quants, as every Q8_K quantizer writes them (they
    /// stand in for the <c>-32</c> of every weight).
    /// </summary>
    public static float DotQ6_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotQ6_K(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>F16 weights with F16 activations (see <see cref="QuantDotScalar.DotF16"/>), float lanes.</summary>
    public static float DotF16(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotF16(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>BF16 weights with BF16 activations (see <see cref="QuantDotScalar.DotBF16"/>), float lanes.</summary>
    public static float DotBF16(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotBF16(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>F32 weights with F32 activations: <see cref="TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>.</summary>
    public static float DotF32(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n) =>
        DotF32(weightRow, activationRow, n, KernelPaths.Best);

    /// <summary>Every vector path is the library's (it picks its own instructions); the scalar one is the twin.</summary>
    internal static float DotF32(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotF32(w, a, n);
        QuantDotChecks.Blocks(w, a, n, 1, 4, 4, "F32", "F32");
        return TensorPrimitives.Dot(MemoryMarshal.Cast<byte, float>(w[..(4 * n)]), MemoryMarshal.Cast<byte, float>(a[..(4 * n)]));
    }

    internal static float DotQ8_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ8_0(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 32, 34, 34, "Q8_0", "Q8_0");
        fixed (byte* x = w, y = a)
            return path switch
            {
                KernelPath.Avx512 => Q8_0Avx512(x, y, blocks),
                KernelPath.Avx2 => Q8_0Avx2(x, y, blocks),
                _ => Q8_0Vector128(x, y, blocks),
            };
    }

    internal static float DotQ4_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ4_0(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 32, 18, 34, "Q4_0", "Q8_0");
        fixed (byte* x = w, y = a)
            return path switch
            {
                KernelPath.Avx512 => Q4_0Avx512(x, y, blocks),
                KernelPath.Avx2 => Q4_0Avx2(x, y, blocks),
                _ => Q4_0Vector128(x, y, blocks),
            };
    }

    internal static float DotQ5_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ5_0(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 32, 22, 34, "Q5_0", "Q8_0");
        fixed (byte* x = w, y = a)
            return path switch
            {
                KernelPath.Avx512 => Q5_0Avx512(x, y, blocks),
                KernelPath.Avx2 => Q5_0Avx2(x, y, blocks),
                _ => Q5_0Vector128(x, y, blocks),
            };
    }

    internal static float DotQ4_1(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ4_1(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 32, 20, 36, "Q4_1", "Q8_1");
        fixed (byte* x = w, y = a)
            return path == KernelPath.Vector128 ? Q4_1Vector128(x, y, blocks) : Q4_1Avx2(x, y, blocks);
    }

    internal static float DotQ5_1(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ5_1(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 32, 24, 36, "Q5_1", "Q8_1");
        fixed (byte* x = w, y = a)
            return path == KernelPath.Vector128 ? Q5_1Vector128(x, y, blocks) : Q5_1Avx2(x, y, blocks);
    }

    // ---- Q8_0 x Q8_0: 16-bit products (exact for -128), pairs summed by vpmaddwd. ----

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q8_0Avx512(byte* x, byte* y, int blocks)
    {
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 68, y += 68)
        {
            acc0 = Avx512F.FusedMultiplyAdd(Vector512.Create(Half(x) * Half(y)), Avx512F.ConvertToVector512Single(Signed32Avx512(x + 2, y + 2)), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Vector512.Create(Half(x + 34) * Half(y + 34)), Avx512F.ConvertToVector512Single(Signed32Avx512(x + 36, y + 36)), acc1);
        }
        if (b < blocks)
            acc0 = Avx512F.FusedMultiplyAdd(Vector512.Create(Half(x) * Half(y)), Avx512F.ConvertToVector512Single(Signed32Avx512(x + 2, y + 2)), acc0);
        return Vector512.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q8_0Avx2(byte* x, byte* y, int blocks)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 68, y += 68)
        {
            acc0 = Fma.MultiplyAdd(Vector256.Create(Half(x) * Half(y)), Avx.ConvertToVector256Single(Signed32Avx2(x + 2, y + 2)), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(Half(x + 34) * Half(y + 34)), Avx.ConvertToVector256Single(Signed32Avx2(x + 36, y + 36)), acc1);
        }
        if (b < blocks)
            acc0 = Fma.MultiplyAdd(Vector256.Create(Half(x) * Half(y)), Avx.ConvertToVector256Single(Signed32Avx2(x + 2, y + 2)), acc0);
        return Vector256.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q8_0Vector128(byte* x, byte* y, int blocks)
    {
        Vector128<float> acc = Vector128<float>.Zero;
        for (int b = 0; b < blocks; b++, x += 34, y += 34)
        {
            Vector128<int> p = Dot16(Vector128.Load((sbyte*)x + 2), Vector128.Load((sbyte*)y + 2))
                               + Dot16(Vector128.Load((sbyte*)x + 18), Vector128.Load((sbyte*)y + 18));
            acc = MultiplyAdd(Vector128.ConvertToSingle(p), Vector128.Create(Half(x) * Half(y)), acc);
        }
        return Vector128.Sum(acc);
    }

    /// <summary>32 signed bytes times 32 signed bytes, in 16 int lanes (pairs), widened to 16 bits first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Signed32Avx512(byte* a, byte* b) =>
        Avx512BW.MultiplyAddAdjacent(
            Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)a)), Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)b)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Signed32Avx2(byte* a, byte* b) =>
        Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)a)), Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)b)))
        + Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)a + 16)), Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)b + 16)));

    // ---- Q4_0 and Q5_0 x Q8_0: unsigned quants (below 32) by maddubs, minus offset * sum(y) by maddubs too. ----

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q4_0Avx512(byte* x, byte* y, int blocks)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 36, y += 68)
        {
            // Two blocks' 16 bytes -> [lo0 | hi0 | lo1 | hi1] nibbles, matching [y0 | y1].
            Vector512<byte> nibbles = Q4_0Nibbles(x);
            Vector512<sbyte> yv = Join(Vector256.Load(y + 2), Vector256.Load(y + 36)).AsSByte();
            Vector512<int> p = OffsetDotAvx512(nibbles, yv, 8);
            Vector512<float> d = Join(Vector256.Create(Half(x) * Half(y)), Vector256.Create(Half(x + 18) * Half(y + 34)));
            acc = Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(p), acc);
        }
        Vector256<float> tail = Vector256<float>.Zero;
        if (b < blocks)
            tail = Fma.MultiplyAdd(Vector256.Create(Half(x) * Half(y)), Avx.ConvertToVector256Single(Q4_0Block256(x, y)), tail);
        return Vector512.Sum(acc) + Vector256.Sum(tail);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q4_0Avx2(byte* x, byte* y, int blocks)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 36, y += 68)
        {
            acc0 = Fma.MultiplyAdd(Vector256.Create(Half(x) * Half(y)), Avx.ConvertToVector256Single(Q4_0Block256(x, y)), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(Half(x + 18) * Half(y + 34)), Avx.ConvertToVector256Single(Q4_0Block256(x + 18, y + 34)), acc1);
        }
        if (b < blocks)
            acc0 = Fma.MultiplyAdd(Vector256.Create(Half(x) * Half(y)), Avx.ConvertToVector256Single(Q4_0Block256(x, y)), acc0);
        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>One Q4_0 block times one Q8_0 block: 8 int lanes summing to the block's integer dot product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4_0Block256(byte* x, byte* y)
    {
        Vector128<byte> q = Vector128.Load(x + 2);
        Vector256<byte> nibbles = Vector256.Create(q, (q.AsUInt16() >> 4).AsByte()) & Vector256.Create((byte)0x0F);
        return OffsetDotAvx2(nibbles, Vector256.Load((sbyte*)y + 2), 8);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q4_0Vector128(byte* x, byte* y, int blocks)
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<sbyte> eight = Vector128.Create((sbyte)8);
        for (int b = 0; b < blocks; b++, x += 18, y += 34)
        {
            Vector128<byte> q = Vector128.Load(x + 2);
            Vector128<sbyte> lo = (q & Vector128.Create((byte)0x0F)).AsSByte() - eight;
            Vector128<sbyte> hi = (q >> 4).AsSByte() - eight;
            Vector128<int> p = Dot16(lo, Vector128.Load((sbyte*)y + 2)) + Dot16(hi, Vector128.Load((sbyte*)y + 18));
            acc = MultiplyAdd(Vector128.ConvertToSingle(p), Vector128.Create(Half(x) * Half(y)), acc);
        }
        return Vector128.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q5_0Avx512(byte* x, byte* y, int blocks)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 44, y += 68)
        {
            Vector512<byte> q5 = Join(Q5Weights256(x + 6, *(uint*)(x + 2)), Q5Weights256(x + 28, *(uint*)(x + 24)));
            Vector512<sbyte> yv = Join(Vector256.Load(y + 2), Vector256.Load(y + 36)).AsSByte();
            Vector512<int> p = OffsetDotAvx512(q5, yv, 16);
            Vector512<float> d = Join(Vector256.Create(Half(x) * Half(y)), Vector256.Create(Half(x + 22) * Half(y + 34)));
            acc = Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(p), acc);
        }
        Vector256<float> tail = Vector256<float>.Zero;
        if (b < blocks)
            tail = Fma.MultiplyAdd(Vector256.Create(Half(x) * Half(y)),
                Avx.ConvertToVector256Single(OffsetDotAvx2(Q5Weights256(x + 6, *(uint*)(x + 2)), Vector256.Load((sbyte*)y + 2), 16)), tail);
        return Vector512.Sum(acc) + Vector256.Sum(tail);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q5_0Avx2(byte* x, byte* y, int blocks)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += 22, y += 34)
        {
            Vector256<int> p = OffsetDotAvx2(Q5Weights256(x + 6, *(uint*)(x + 2)), Vector256.Load((sbyte*)y + 2), 16);
            acc = Fma.MultiplyAdd(Vector256.Create(Half(x) * Half(y)), Avx.ConvertToVector256Single(p), acc);
        }
        return Vector256.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q5_0Vector128(byte* x, byte* y, int blocks)
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<sbyte> sixteen = Vector128.Create((sbyte)16);
        for (int b = 0; b < blocks; b++, x += 22, y += 34)
        {
            uint qh = *(uint*)(x + 2);
            Vector128<byte> q = Vector128.Load(x + 6);
            Vector128<sbyte> lo = ((q & Vector128.Create((byte)0x0F)) | FifthBits16(qh & 0xFFFF)).AsSByte() - sixteen;
            Vector128<sbyte> hi = ((q >> 4) | FifthBits16(qh >> 16)).AsSByte() - sixteen;
            Vector128<int> p = Dot16(lo, Vector128.Load((sbyte*)y + 2)) + Dot16(hi, Vector128.Load((sbyte*)y + 18));
            acc = MultiplyAdd(Vector128.ConvertToSingle(p), Vector128.Create(Half(x) * Half(y)), acc);
        }
        return Vector128.Sum(acc);
    }

    /// <summary>A Q5 block's 32 weights 0..31 (nibbles at <paramref name="qs"/>, fifth bits <paramref name="qh"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q5Weights256(byte* qs, uint qh)
    {
        Vector128<byte> q = Vector128.Load(qs);
        return (Vector256.Create(q, (q.AsUInt16() >> 4).AsByte()) & Vector256.Create((byte)0x0F)) | FifthBits(qh);
    }

    /// <summary>
    /// <c>sum (u_j - offset) * y_j</c> over pairs, in int lanes: <c>maddubs(u, y) - maddubs(offset, y)</c>, both exact
    /// (|pair| &lt;= 2 * 31 * 128), then pairs of pairs by vpmaddwd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> OffsetDotAvx512(Vector512<byte> u, Vector512<sbyte> y, byte offset) =>
        Avx512BW.MultiplyAddAdjacent(
            Avx512BW.MultiplyAddAdjacent(u, y) - Avx512BW.MultiplyAddAdjacent(Vector512.Create(offset), y), Vector512<short>.One);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> OffsetDotAvx2(Vector256<byte> u, Vector256<sbyte> y, byte offset) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, y) - Avx2.MultiplyAddAdjacent(Vector256.Create(offset), y), Vector256<short>.One);

    // ---- Q4_1 and Q5_1 x Q8_1: unsigned quants by maddubs; the mins through s = dy * sum(q), added per block in order. ----

    // The AVX2 code serves the AVX-512 path too (one 32-block per 256-bit vector).
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q4_1Avx2(byte* x, byte* y, int blocks) => Affine32Avx2(x, y, blocks, fifthBits: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q5_1Avx2(byte* x, byte* y, int blocks) => Affine32Avx2(x, y, blocks, fifthBits: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q4_1Vector128(byte* x, byte* y, int blocks) => Affine32Vector128(x, y, blocks, fifthBits: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q5_1Vector128(byte* x, byte* y, int blocks) => Affine32Vector128(x, y, blocks, fifthBits: true);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Affine32Avx2(byte* x, byte* y, int blocks, bool fifthBits)
    {
        int stride = fifthBits ? 24 : 20, qsOffset = fifthBits ? 8 : 4;
        float summs = 0;
        Vector256<float> acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += stride, y += 36)
        {
            Vector128<byte> q = Vector128.Load(x + qsOffset);
            Vector256<byte> u = Vector256.Create(q, (q.AsUInt16() >> 4).AsByte()) & Vector256.Create((byte)0x0F);
            if (fifthBits)
                u |= FifthBits(*(uint*)(x + 4));
            Vector256<int> p = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Load((sbyte*)y + 4)), Vector256<short>.One);
            acc = Fma.MultiplyAdd(Vector256.Create(Half(x) * Half(y)), Avx.ConvertToVector256Single(p), acc);
            summs += Half(x + 2) * Half(y + 2);
        }
        return Vector256.Sum(acc) + summs;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Affine32Vector128(byte* x, byte* y, int blocks, bool fifthBits)
    {
        int stride = fifthBits ? 24 : 20, qsOffset = fifthBits ? 8 : 4;
        float summs = 0;
        Vector128<float> acc = Vector128<float>.Zero;
        for (int b = 0; b < blocks; b++, x += stride, y += 36)
        {
            Vector128<byte> q = Vector128.Load(x + qsOffset);
            Vector128<byte> lo = q & Vector128.Create((byte)0x0F), hi = q >> 4;
            if (fifthBits)
            {
                uint qh = *(uint*)(x + 4);
                lo |= FifthBits16(qh & 0xFFFF);
                hi |= FifthBits16(qh >> 16);
            }
            Vector128<int> p = Dot16(lo.AsSByte(), Vector128.Load((sbyte*)y + 4)) + Dot16(hi.AsSByte(), Vector128.Load((sbyte*)y + 20));
            acc = MultiplyAdd(Vector128.ConvertToSingle(p), Vector128.Create(Half(x) * Half(y)), acc);
            summs += Half(x + 2) * Half(y + 2);
        }
        return Vector128.Sum(acc) + summs;
    }
}
