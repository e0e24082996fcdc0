using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// K-quants with Q8_K activations. Each super-block's integer sums (isum, and the mins' summ where there are mins) are
// formed exactly in vectors, then reduced to one int; the float expression per super-block is the scalar twin's, so the
// result has the same bits as QuantDotScalar. Unsigned weights (at most 63) times signed activations go through
// maddubs (pair sums at most 2 * 63 * 128 = 16128, no saturation), the pair sums times the sub-block scales through
// vpmaddwd; offsets (Q3_K's -4, Q6_K's -32) and mins are subtracted as integers.
public static unsafe partial class QuantDot
{
    internal static float DotQ2_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ2_K(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 256, 84, 292, "Q2_K", "Q8_K");
        fixed (byte* x = w, y = a)
            return path switch
            {
                KernelPath.Avx512 => Q2_KAvx512(x, y, blocks),
                KernelPath.Avx2 => Q2_KAvx2(x, y, blocks),
                _ => Q2_KVector128(x, y, blocks),
            };
    }

    internal static float DotQ3_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ3_K(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 256, 110, 292, "Q3_K", "Q8_K");
        fixed (byte* x = w, y = a)
            return path switch
            {
                KernelPath.Avx512 => Q3_KAvx512(x, y, blocks),
                KernelPath.Avx2 => Q3_KAvx2(x, y, blocks),
                _ => Q3_KVector128(x, y, blocks),
            };
    }

    internal static float DotQ4_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ4_K(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 256, 144, 292, "Q4_K", "Q8_K");
        fixed (byte* x = w, y = a)
            return path switch
            {
                KernelPath.Avx512 => Q4_KAvx512(x, y, blocks),
                KernelPath.Avx2 => Q4_KAvx2(x, y, blocks),
                _ => Q4_KVector128(x, y, blocks),
            };
    }

    internal static float DotQ5_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ5_K(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 256, 176, 292, "Q5_K", "Q8_K");
        fixed (byte* x = w, y = a)
            return path switch
            {
                KernelPath.Avx512 => Q5_KAvx512(x, y, blocks),
                KernelPath.Avx2 => Q5_KAvx2(x, y, blocks),
                _ => Q5_KVector128(x, y, blocks),
            };
    }

    internal static float DotQ6_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return QuantDotScalar.DotQ6_K(w, a, n);
        int blocks = QuantDotChecks.Blocks(w, a, n, 256, 210, 292, "Q6_K", "Q8_K");
        fixed (byte* x = w, y = a)
            return path switch
            {
                KernelPath.Avx512 => Q6_KAvx512(x, y, blocks),
                KernelPath.Avx2 => Q6_KAvx2(x, y, blocks),
                _ => Q6_KVector128(x, y, blocks),
            };
    }

    // One method per instruction set, so that each is compiled alone (code for a wider, unsupported set would be
    // software-emulated and bloat the method past the JIT's inlining budget); the shared cores are inlined with a
    // constant flag and the other branch folded away.
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q2_KAvx512(byte* x, byte* y, int blocks) => Q2_K(x, y, blocks, wide: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q2_KAvx2(byte* x, byte* y, int blocks) => Q2_K(x, y, blocks, wide: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q3_KAvx512(byte* x, byte* y, int blocks) => Q3_K(x, y, blocks, wide: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q3_KAvx2(byte* x, byte* y, int blocks) => Q3_K(x, y, blocks, wide: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q4_KAvx512(byte* x, byte* y, int blocks) => Q45_KAvx512(x, y, blocks, five: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q4_KAvx2(byte* x, byte* y, int blocks) => Q45_KAvx2(x, y, blocks, five: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q4_KVector128(byte* x, byte* y, int blocks) => Q45_KVector128(x, y, blocks, five: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q5_KAvx512(byte* x, byte* y, int blocks) => Q45_KAvx512(x, y, blocks, five: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q5_KAvx2(byte* x, byte* y, int blocks) => Q45_KAvx2(x, y, blocks, five: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q5_KVector128(byte* x, byte* y, int blocks) => Q45_KVector128(x, y, blocks, five: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q6_KAvx512(byte* x, byte* y, int blocks) => Q6_K(x, y, blocks, wide: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static float Q6_KAvx2(byte* x, byte* y, int blocks) => Q6_K(x, y, blocks, wide: false);

    // ---- Q2_K ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q2_K(byte* x, byte* y, int blocks, bool wide)
    {
        short* scales = stackalloc short[16];
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += 84, y += 292)
        {
            Vector128<byte> packed = Vector128.Load(x);
            Vector256<short> sc = Avx2.ConvertToVector256Int16(packed & Vector128.Create((byte)0x0F));
            Vector256<short> mins = Avx2.ConvertToVector256Int16((packed.AsUInt16() >> 4).AsByte() & Vector128.Create((byte)0x0F));
            int summs = Vector256.Sum(Avx2.MultiplyAddAdjacent(BlockSums8K(y), mins));
            byte* qs = x + 16;
            sbyte* q8 = (sbyte*)y + 4;
            int isum;
            if (wide)
            {
                Vector512<short> sc512 = sc.ToVector512Unsafe();
                Vector512<int> acc = Vector512<int>.Zero;
                for (int h = 0; h < 2; h++)
                {
                    Vector256<ushort> q = Vector256.Load(qs + 32 * h).AsUInt16();
                    for (int f = 0; f < 4; f += 2)
                    {
                        Vector512<byte> q2 = Join((q >> (2 * f)).AsByte(), (q >> (2 * f + 2)).AsByte()) & Vector512.Create((byte)3);
                        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(q2, Vector512.Load(q8 + 128 * h + 32 * f));
                        acc += Avx512BW.MultiplyAddAdjacent(p, Spread4(sc512, 8 * h + 2 * f));
                    }
                }
                isum = Vector512.Sum(acc);
            }
            else
            {
                sc.Store(scales);
                Vector256<int> acc = Vector256<int>.Zero;
                for (int h = 0; h < 2; h++)
                {
                    Vector256<ushort> q = Vector256.Load(qs + 32 * h).AsUInt16();
                    for (int f = 0; f < 4; f++)
                    {
                        Vector256<byte> q2 = (q >> (2 * f)).AsByte() & Vector256.Create((byte)3);
                        Vector256<short> p = Avx2.MultiplyAddAdjacent(q2, Vector256.Load(q8 + 128 * h + 32 * f));
                        acc += Avx2.MultiplyAddAdjacent(p, Spread2(scales, 8 * h + 2 * f));
                    }
                }
                isum = Vector256.Sum(acc);
            }
            float dy = Single(y);
            float dall = dy * Half(x + 80), dmin = dy * Half(x + 82);
            sum += dall * isum - dmin * summs;
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q2_KVector128(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += 84, y += 292)
        {
            byte* qs = x + 16;
            sbyte* q8 = (sbyte*)y + 4;
            short* bsums = (short*)(y + 260);
            Vector128<int> acc = Vector128<int>.Zero;
            int summs = 0;
            for (int g = 0; g < 16; g++)
            {
                Vector128<byte> q = (Vector128.Load(qs + 32 * (g / 8) + 16 * (g % 2)) >> (2 * (g % 8 / 2))) & Vector128.Create((byte)3);
                acc += Dot16(q.AsSByte(), Vector128.Load(q8 + 16 * g)) * (x[g] & 0xF);
                summs += bsums[g] * (x[g] >> 4);
            }
            int isum = Vector128.Sum(acc);
            float dy = Single(y);
            float dall = dy * Half(x + 80), dmin = dy * Half(x + 82);
            sum += dall * isum - dmin * summs;
        }
        return sum;
    }

    // ---- Q3_K ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q3_K(byte* x, byte* y, int blocks, bool wide)
    {
        short* scales = stackalloc short[16];
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += 110, y += 292)
        {
            Vector256<short> sc = Avx2.ConvertToVector256Int16(Q3Scales(x + 96));
            Vector256<ushort> hm = Vector256.Load(x).AsUInt16();
            byte* qs = x + 32;
            sbyte* q8 = (sbyte*)y + 4;
            int isum;
            if (wide)
            {
                Vector512<short> sc512 = sc.ToVector512Unsafe();
                Vector512<int> acc = Vector512<int>.Zero;
                for (int h = 0; h < 2; h++)
                {
                    Vector256<ushort> q = Vector256.Load(qs + 32 * h).AsUInt16();
                    for (int f = 0; f < 4; f += 2)
                    {
                        Vector512<byte> q2 = Join((q >> (2 * f)).AsByte(), (q >> (2 * f + 2)).AsByte()) & Vector512.Create((byte)3);
                        Vector512<byte> minus4 = Join(Minus4(hm, 4 * h + f), Minus4(hm, 4 * h + f + 1));
                        Vector512<sbyte> y8 = Vector512.Load(q8 + 128 * h + 32 * f);
                        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(q2, y8) - Avx512BW.MultiplyAddAdjacent(minus4, y8);
                        acc += Avx512BW.MultiplyAddAdjacent(p, Spread4(sc512, 8 * h + 2 * f));
                    }
                }
                isum = Vector512.Sum(acc);
            }
            else
            {
                sc.Store(scales);
                Vector256<int> acc = Vector256<int>.Zero;
                for (int h = 0; h < 2; h++)
                {
                    Vector256<ushort> q = Vector256.Load(qs + 32 * h).AsUInt16();
                    for (int f = 0; f < 4; f++)
                    {
                        Vector256<byte> q2 = (q >> (2 * f)).AsByte() & Vector256.Create((byte)3);
                        Vector256<sbyte> y8 = Vector256.Load(q8 + 128 * h + 32 * f);
                        Vector256<short> p = Avx2.MultiplyAddAdjacent(q2, y8) - Avx2.MultiplyAddAdjacent(Minus4(hm, 4 * h + f), y8);
                        acc += Avx2.MultiplyAddAdjacent(p, Spread2(scales, 8 * h + 2 * f));
                    }
                }
                isum = Vector256.Sum(acc);
            }
            sum += Half(x + 108) * Single(y) * isum;
        }
        return sum;
    }

    /// <summary>4 where bit <paramref name="bit"/> of the 32 hmask bytes is clear, else 0 (Q3_K's <c>-4</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Minus4(Vector256<ushort> hmask, int bit) =>
        Vector256.AndNot(Vector256.Create((byte)4), ((hmask >> bit) << 2).AsByte());

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q3_KVector128(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += 110, y += 292)
        {
            Vector128<sbyte> sc = Q3Scales(x + 96);
            byte* qs = x + 32;
            sbyte* q8 = (sbyte*)y + 4;
            Vector128<int> acc = Vector128<int>.Zero;
            for (int g = 0; g < 16; g++)
            {
                Vector128<byte> q2 = (Vector128.Load(qs + 32 * (g / 8) + 16 * (g % 2)) >> (2 * (g % 8 / 2))) & Vector128.Create((byte)3);
                Vector128<byte> minus4 = Vector128.AndNot(Vector128.Create((byte)4), Vector128.Load(x + 16 * (g % 2)) >> (g / 2) << 2);
                acc += Dot16((q2 - minus4).AsSByte(), Vector128.Load(q8 + 16 * g)) * sc.GetElement(g);
            }
            sum += Half(x + 108) * Single(y) * Vector128.Sum(acc);
        }
        return sum;
    }

    /// <summary>
    /// Q3_K's 16 scales from their 12 packed bytes, minus 32 (ggml's <c>kmask1/kmask2</c> unpacking, as
    /// ggml_vec_dot_q3_K_q8_K does): low 4 bits from the nibbles of bytes 0..7, high 2 bits from bytes 8..11.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Q3Scales(byte* packed)
    {
        uint a0 = *(uint*)packed, a1 = *(uint*)(packed + 4), tmp = *(uint*)(packed + 8);
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        uint s0 = (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4);
        uint s1 = (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4);
        uint s2 = ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        uint s3 = ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        return Vector128.Create(s0, s1, s2, s3).AsSByte() - Vector128.Create((sbyte)32);
    }

    // ---- Q4_K and Q5_K ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q45_KAvx2(byte* x, byte* y, int blocks, bool five)
    {
        int stride = five ? 176 : 144;
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += stride, y += 292)
        {
            Vector128<byte> scalesMins = ScalesMinsK4(x + 4);
            ulong sc = scalesMins.AsUInt64().ToScalar();
            byte* qs = x + (five ? 48 : 16);
            Vector256<ushort> qh = five ? Vector256.Load(x + 16).AsUInt16() : default;
            sbyte* q8 = (sbyte*)y + 4;
            Vector256<int> acc = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                // Sub-blocks 2c and 2c + 1: low and high nibbles of qs[32c .. 32c + 32].
                Vector256<byte> q = Vector256.Load(qs + 32 * c);
                Vector256<byte> lo = q & Vector256.Create((byte)0x0F);
                Vector256<byte> hi = (q.AsUInt16() >> 4).AsByte() & Vector256.Create((byte)0x0F);
                if (five)
                {
                    lo |= SixteenIfBit(qh, 2 * c);
                    hi |= SixteenIfBit(qh, 2 * c + 1);
                }
                Vector256<short> p0 = Avx2.MultiplyAddAdjacent(lo, Vector256.Load(q8 + 64 * c));
                Vector256<short> p1 = Avx2.MultiplyAddAdjacent(hi, Vector256.Load(q8 + 64 * c + 32));
                acc += Avx2.MultiplyAddAdjacent(p0, Vector256.Create((short)(byte)(sc >> (16 * c))))
                       + Avx2.MultiplyAddAdjacent(p1, Vector256.Create((short)(byte)(sc >> (16 * c + 8))));
            }
            int isum = Vector256.Sum(acc);
            int summ = MinsK4(scalesMins, y);
            float dy = Single(y);
            sum += Half(x) * dy * isum - Half(x + 2) * dy * summ;
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q45_KAvx512(byte* x, byte* y, int blocks, bool five)
    {
        int stride = five ? 176 : 144;
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += stride, y += 292)
        {
            Vector128<byte> scalesMins = ScalesMinsK4(x + 4);
            Vector512<short> sc512 = Avx2.ConvertToVector256Int16(scalesMins).ToVector512Unsafe();
            byte* qs = x + (five ? 48 : 16);
            Vector256<ushort> qh = five ? Vector256.Load(x + 16).AsUInt16() : default;
            sbyte* q8 = (sbyte*)y + 4;
            Vector512<int> acc = Vector512<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                // [sub-block 2c | sub-block 2c + 1] = [low nibbles | high nibbles] of the same 32 bytes: y is contiguous.
                Vector256<byte> q = Vector256.Load(qs + 32 * c);
                Vector512<byte> u = Join(q, (q.AsUInt16() >> 4).AsByte()) & Vector512.Create((byte)0x0F);
                if (five)
                    u |= Join(SixteenIfBit(qh, 2 * c), SixteenIfBit(qh, 2 * c + 1));
                Vector512<short> p = Avx512BW.MultiplyAddAdjacent(u, Vector512.Load(q8 + 64 * c));
                Vector512<short> s = Avx512BW.PermuteVar32x16(sc512, HalvesIndex + Vector512.Create((short)(2 * c)));
                acc += Avx512BW.MultiplyAddAdjacent(p, s);
            }
            int isum = Vector512.Sum(acc);
            int summ = MinsK4(scalesMins, y);
            float dy = Single(y);
            sum += Half(x) * dy * isum - Half(x + 2) * dy * summ;
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q45_KVector128(byte* x, byte* y, int blocks, bool five)
    {
        int stride = five ? 176 : 144;
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += stride, y += 292)
        {
            Vector128<byte> scalesMins = ScalesMinsK4(x + 4);
            byte* qs = x + (five ? 48 : 16);
            byte* qh = x + 16;
            sbyte* q8 = (sbyte*)y + 4;
            short* bsums = (short*)(y + 260);
            Vector128<int> acc = Vector128<int>.Zero;
            int summ = 0;
            for (int s = 0; s < 8; s++)
            {
                int shift = 4 * (s % 2);
                Vector128<int> dot = Vector128<int>.Zero;
                for (int half = 0; half < 2; half++)
                {
                    Vector128<byte> u = (Vector128.Load(qs + 32 * (s / 2) + 16 * half) >> shift) & Vector128.Create((byte)0x0F);
                    if (five)
                        u |= ((Vector128.Load(qh + 16 * half) >> s) & Vector128<byte>.One) << 4;
                    dot += Dot16(u.AsSByte(), Vector128.Load(q8 + 32 * s + 16 * half));
                }
                acc += dot * scalesMins.GetElement(s);
                summ += scalesMins.GetElement(8 + s) * (bsums[2 * s] + bsums[2 * s + 1]);
            }
            int isum = Vector128.Sum(acc);
            float dy = Single(y);
            sum += Half(x) * dy * isum - Half(x + 2) * dy * summ;
        }
        return sum;
    }

    /// <summary>
    /// The 6-bit scales (bytes 0..7) and mins (bytes 8..15) of the 8 sub-blocks of Q4_K and Q5_K from their 12
    /// packed bytes (ggml's <c>kmask1..3</c> unpacking of ggml_vec_dot_q4_K_q8_K; the same values as
    /// <c>get_scale_min_k4</c>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> ScalesMinsK4(byte* packed)
    {
        uint u0 = *(uint*)packed, u1 = *(uint*)(packed + 4), u2 = *(uint*)(packed + 8);
        const uint kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
        uint scales03 = u0 & kmask1;
        uint scales47 = (u2 & kmask2) | (((u0 >> 6) & kmask3) << 4);
        uint mins03 = u1 & kmask1;
        uint mins47 = ((u2 >> 4) & kmask2) | (((u1 >> 6) & kmask3) << 4);
        return Vector128.Create(scales03, scales47, mins03, mins47).AsByte();
    }

    /// <summary><c>sum_k mins[k / 2] * bsums[k]</c> for Q4_K and Q5_K, the mins in bytes 8..15 of <paramref name="scalesMins"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MinsK4(Vector128<byte> scalesMins, byte* y)
    {
        Vector128<byte> pairs = Avx2.Shuffle(scalesMins, Vector128.Create((byte)8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
        return Vector256.Sum(Avx2.MultiplyAddAdjacent(BlockSums8K(y), Avx2.ConvertToVector256Int16(pairs)));
    }

    /// <summary>16 where bit <paramref name="bit"/> of the 32 <c>qh</c> bytes is set, else 0 (Q5_K's fifth bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> SixteenIfBit(Vector256<ushort> qh, int bit) =>
        ((qh >> bit) << 4).AsByte() & Vector256.Create((byte)0x10);

    // ---- Q6_K ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q6_K(byte* x, byte* y, int blocks, bool wide)
    {
        short* scales = stackalloc short[16];
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += 210, y += 292)
        {
            byte* ql = x, qh = x + 128;
            Vector256<short> sc = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 192));
            // The -32 of every weight: 32 * sum_g sc_g * bsums_g.
            int offset = 32 * Vector256.Sum(Avx2.MultiplyAddAdjacent(BlockSums8K(y), sc));
            sbyte* q8 = (sbyte*)y + 4;
            int isum;
            if (wide)
            {
                Vector512<short> sc512 = sc.ToVector512Unsafe();
                Vector512<int> acc = Vector512<int>.Zero;
                for (int h = 0; h < 2; h++)
                {
                    Vector512<ushort> low = Vector512.Load(ql + 64 * h).AsUInt16();
                    Vector256<ushort> high = Vector256.Load(qh + 32 * h).AsUInt16();
                    for (int f = 0; f < 4; f += 2)
                    {
                        // Quarters f, f + 1 of this half: nibble f / 2 of ql[64h .. 64h + 64], bits 2f.. and 2f+2.. of qh.
                        Vector512<byte> u = ((low >> (2 * f)).AsByte() & Vector512.Create((byte)0x0F))
                                            | ((Join((high >> (2 * f)).AsByte(), (high >> (2 * f + 2)).AsByte()) & Vector512.Create((byte)3)).AsUInt16() << 4).AsByte();
                        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(u, Vector512.Load(q8 + 128 * h + 32 * f));
                        acc += Avx512BW.MultiplyAddAdjacent(p, Spread4(sc512, 8 * h + 2 * f));
                    }
                }
                isum = Vector512.Sum(acc);
            }
            else
            {
                sc.Store(scales);
                Vector256<int> acc = Vector256<int>.Zero;
                for (int h = 0; h < 2; h++)
                {
                    Vector256<ushort> high = Vector256.Load(qh + 32 * h).AsUInt16();
                    for (int f = 0; f < 4; f++)
                    {
                        Vector256<ushort> low = Vector256.Load(ql + 64 * h + 32 * (f % 2)).AsUInt16();
                        Vector256<byte> u = ((low >> (f < 2 ? 0 : 4)).AsByte() & Vector256.Create((byte)0x0F))
                                            | (((high >> (2 * f)) & Vector256.Create((ushort)0x0303)) << 4).AsByte();
                        Vector256<short> p = Avx2.MultiplyAddAdjacent(u, Vector256.Load(q8 + 128 * h + 32 * f));
                        acc += Avx2.MultiplyAddAdjacent(p, Spread2(scales, 8 * h + 2 * f));
                    }
                }
                isum = Vector256.Sum(acc);
            }
            sum += Half(x + 208) * Single(y) * (isum - offset);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Q6_KVector128(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += 210, y += 292)
        {
            byte* ql = x, qh = x + 128;
            sbyte* sc = (sbyte*)x + 192;
            sbyte* q8 = (sbyte*)y + 4;
            Vector128<int> acc = Vector128<int>.Zero;
            for (int g = 0; g < 16; g++)
            {
                int half = g / 8, quarter = g % 8 / 2, offset = 16 * (g % 2);
                Vector128<byte> low = (Vector128.Load(ql + 64 * half + 32 * (quarter % 2) + offset) >> (quarter < 2 ? 0 : 4)) & Vector128.Create((byte)0x0F);
                Vector128<byte> high = ((Vector128.Load(qh + 32 * half + offset) >> (2 * quarter)) & Vector128.Create((byte)3)) << 4;
                Vector128<sbyte> u = (low | high).AsSByte() - Vector128.Create((sbyte)32);
                acc += Dot16(u, Vector128.Load(q8 + 16 * g)) * sc[g];
            }
            sum += Half(x + 208) * Single(y) * Vector128.Sum(acc);
        }
        return sum;
    }

    // ---- shared ----

    /// <summary>The 16 int16 block sums of a Q8_K block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> BlockSums8K(byte* y) => Vector256.Load((short*)(y + 4 + 256));

    /// <summary>
    /// 16 int16 scale lanes for the 32 maddubs pair sums of two 16-weight sub-blocks: <c>scales[g]</c> in the low
    /// 128-bit lane, <c>scales[g + 1]</c> in the high one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Spread2(short* scales, int g) =>
        Vector256.Create(Vector128.Create(scales[g]), Vector128.Create(scales[g + 1]));

    /// <summary>
    /// 32 int16 scale lanes for the maddubs pair sums of four 16-weight sub-blocks <c>g .. g + 3</c>: 8 lanes each,
    /// picked from <paramref name="scales"/> (lanes 0..15) by vpermw.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Spread4(Vector512<short> scales, int g) =>
        Avx512BW.PermuteVar32x16(scales, QuartersIndex + Vector512.Create((short)g));

    /// <summary>vpermw indices 0 (16 lanes), 1 (16 lanes): two sub-blocks of 32 weights.</summary>
    private static Vector512<short> HalvesIndex
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create((short)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    }

    /// <summary>vpermw indices 0, 1, 2, 3 (8 lanes each): four sub-blocks of 16 weights.</summary>
    private static Vector512<short> QuartersIndex
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create((short)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    }
}
