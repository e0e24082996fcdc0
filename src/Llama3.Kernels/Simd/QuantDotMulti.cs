using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Llama3.Kernels.Quant;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Multi-row dot products (QuantType.DotMany): one weight row with up to 8 activation rows, each weight block decoded
// (nibbles unpacked, scales read) once for all the rows. Every row's result has exactly the bits of the single-row
// kernel of the same path: the same integer parts in the same lanes, and the same float operations in the same order
// per row (the 32-blocks keep the single kernel's per-lane accumulators, one set per row; the K-quants the per
// super-block float expression). AVX-512 has multi-row kernels for Q4_0, Q8_0, Q4_K, Q6_K, AVX2 for Q4_0, Q8_0, Q6_K
// (in QuantDotMulti.Avx2.cs); the other paths call the single-row kernel once per row.
public static unsafe partial class QuantDot
{
    /// <summary>Q4_0 weights with several Q8_0 activation rows (see <see cref="DotRows"/>).</summary>
    public static void DotManyQ4_0(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes,
        int count, int n, Span<float> results) =>
        DotManyQ4_0(weightRow, activationRows, activationRowBytes, count, n, results, KernelPaths.Best);

    /// <summary>Q8_0 weights with several Q8_0 activation rows (see <see cref="DotRows"/>).</summary>
    public static void DotManyQ8_0(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes,
        int count, int n, Span<float> results) =>
        DotManyQ8_0(weightRow, activationRows, activationRowBytes, count, n, results, KernelPaths.Best);

    /// <summary>Q4_K weights with several Q8_K activation rows (see <see cref="DotRows"/>).</summary>
    public static void DotManyQ4_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes,
        int count, int n, Span<float> results) =>
        DotManyQ4_K(weightRow, activationRows, activationRowBytes, count, n, results, KernelPaths.Best);

    /// <summary>Q6_K weights with several Q8_K activation rows (see <see cref="DotRows"/>).</summary>
    public static void DotManyQ6_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes,
        int count, int n, Span<float> results) =>
        DotManyQ6_K(weightRow, activationRows, activationRowBytes, count, n, results, KernelPaths.Best);

    internal static void DotManyQ4_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int stride, int count, int n, Span<float> results, KernelPath path)
    {
        int blocks = QuantDotMultiChecks.Rows(w, a, stride, count, n, results, 32, 18, 34, "Q4_0", "Q8_0");
        if (path is not (KernelPath.Avx512 or KernelPath.Avx2))
        {
            for (int i = 0; i < count; i++)
                results[i] = DotQ4_0(w, a.Slice(i * stride, stride), n, path);
            return;
        }
        fixed (byte* x = w, y = a)
        fixed (float* r = results)
        {
            int i = 0;
            bool wide = path == KernelPath.Avx512;
            for (; i + 4 <= count; i += 4)
                if (wide) Q4_0Avx512Rows4(x, y + (nint)i * stride, stride, blocks, r + i);
                else Q4_0Avx2Rows4(x, y + (nint)i * stride, stride, blocks, r + i);
            byte* yi = y + (nint)i * stride;
            switch (count - i)
            {
                case 3: if (wide) Q4_0Avx512Rows3(x, yi, stride, blocks, r + i); else Q4_0Avx2Rows3(x, yi, stride, blocks, r + i); break;
                case 2: if (wide) Q4_0Avx512Rows2(x, yi, stride, blocks, r + i); else Q4_0Avx2Rows2(x, yi, stride, blocks, r + i); break;
                case 1: r[i] = wide ? Q4_0Avx512(x, yi, blocks) : Q4_0Avx2(x, yi, blocks); break;
            }
        }
    }

    internal static void DotManyQ8_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int stride, int count, int n, Span<float> results, KernelPath path)
    {
        int blocks = QuantDotMultiChecks.Rows(w, a, stride, count, n, results, 32, 34, 34, "Q8_0", "Q8_0");
        if (path is not (KernelPath.Avx512 or KernelPath.Avx2))
        {
            for (int i = 0; i < count; i++)
                results[i] = DotQ8_0(w, a.Slice(i * stride, stride), n, path);
            return;
        }
        fixed (byte* x = w, y = a)
        fixed (float* r = results)
        {
            int i = 0;
            bool wide = path == KernelPath.Avx512;
            for (; i + 4 <= count; i += 4)
                if (wide) Q8_0Avx512Rows4(x, y + (nint)i * stride, stride, blocks, r + i);
                else Q8_0Avx2Rows4(x, y + (nint)i * stride, stride, blocks, r + i);
            byte* yi = y + (nint)i * stride;
            switch (count - i)
            {
                case 3: if (wide) Q8_0Avx512Rows3(x, yi, stride, blocks, r + i); else Q8_0Avx2Rows3(x, yi, stride, blocks, r + i); break;
                case 2: if (wide) Q8_0Avx512Rows2(x, yi, stride, blocks, r + i); else Q8_0Avx2Rows2(x, yi, stride, blocks, r + i); break;
                case 1: r[i] = wide ? Q8_0Avx512(x, yi, blocks) : Q8_0Avx2(x, yi, blocks); break;
            }
        }
    }

    internal static void DotManyQ4_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int stride, int count, int n, Span<float> results, KernelPath path)
    {
        int blocks = QuantDotMultiChecks.Rows(w, a, stride, count, n, results, 256, 144, 292, "Q4_K", "Q8_K");
        // AVX2 too runs one row at a time: its decoding is a few cheap operations per 64 weights, and a multi-row
        // version (decoded vectors kept on the stack) measured no faster.
        if (path != KernelPath.Avx512)
        {
            for (int i = 0; i < count; i++)
                results[i] = DotQ4_K(w, a.Slice(i * stride, stride), n, path);
            return;
        }
        fixed (byte* x = w, y = a)
        fixed (float* r = results)
            Q4_KAvx512Many(x, y, stride, count, blocks, r);
    }

    internal static void DotManyQ6_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int stride, int count, int n, Span<float> results, KernelPath path)
    {
        int blocks = QuantDotMultiChecks.Rows(w, a, stride, count, n, results, 256, 210, 292, "Q6_K", "Q8_K");
        if (path is not (KernelPath.Avx512 or KernelPath.Avx2))
        {
            for (int i = 0; i < count; i++)
                results[i] = DotQ6_K(w, a.Slice(i * stride, stride), n, path);
            return;
        }
        fixed (byte* x = w, y = a)
        fixed (float* r = results)
            if (path == KernelPath.Avx512)
                Q6_KAvx512Many(x, y, stride, count, blocks, r);
            else
                Q6_KAvx2Many(x, y, stride, count, blocks, r);
    }

    // ---- Q4_0: the nibbles of two blocks decoded once, then Q4_0Avx512's steps per row (its tail likewise). ----

    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q4_0Avx512Rows4(byte* x, byte* y, nint s, int blocks, float* r) => Q4_0Avx512Rows(x, y, s, blocks, r, 4);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q4_0Avx512Rows3(byte* x, byte* y, nint s, int blocks, float* r) => Q4_0Avx512Rows(x, y, s, blocks, r, 3);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q4_0Avx512Rows2(byte* x, byte* y, nint s, int blocks, float* r) => Q4_0Avx512Rows(x, y, s, blocks, r, 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4_0Avx512Rows(byte* x, byte* y, nint s, int blocks, float* r, int rows)
    {
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero, acc2 = Vector512<float>.Zero, acc3 = Vector512<float>.Zero;
        byte* y0 = y, y1 = y + s, y2 = y + 2 * s, y3 = y + 3 * s;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 36, y0 += 68, y1 += 68, y2 += 68, y3 += 68)
        {
            Vector512<byte> nibbles = Q4_0Nibbles(x);
            float dx0 = Half(x), dx1 = Half(x + 18);
            acc0 = Q4_0Pair(acc0, nibbles, y0, dx0, dx1);
            if (rows > 1) acc1 = Q4_0Pair(acc1, nibbles, y1, dx0, dx1);
            if (rows > 2) acc2 = Q4_0Pair(acc2, nibbles, y2, dx0, dx1);
            if (rows > 3) acc3 = Q4_0Pair(acc3, nibbles, y3, dx0, dx1);
        }
        Vector256<float> tail0 = Vector256<float>.Zero, tail1 = Vector256<float>.Zero, tail2 = Vector256<float>.Zero, tail3 = Vector256<float>.Zero;
        if (b < blocks)
        {
            Vector128<byte> q = Vector128.Load(x + 2);
            Vector256<byte> nibbles = Vector256.Create(q, (q.AsUInt16() >> 4).AsByte()) & Vector256.Create((byte)0x0F);
            float dx = Half(x);
            tail0 = Q4_0Tail(tail0, nibbles, y0, dx);
            if (rows > 1) tail1 = Q4_0Tail(tail1, nibbles, y1, dx);
            if (rows > 2) tail2 = Q4_0Tail(tail2, nibbles, y2, dx);
            if (rows > 3) tail3 = Q4_0Tail(tail3, nibbles, y3, dx);
        }
        r[0] = Vector512.Sum(acc0) + Vector256.Sum(tail0);
        if (rows > 1) r[1] = Vector512.Sum(acc1) + Vector256.Sum(tail1);
        if (rows > 2) r[2] = Vector512.Sum(acc2) + Vector256.Sum(tail2);
        if (rows > 3) r[3] = Vector512.Sum(acc3) + Vector256.Sum(tail3);
    }

    /// <summary>The 64 nibbles of a Q4_0 block pair at <paramref name="x"/>, in Q4_0Avx512's lane order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Q4_0Nibbles(byte* x)
    {
        Vector256<byte> q = Vector256.Create(Vector128.Load(x + 2), Vector128.Load(x + 20));
        Vector512<uint> halves = Join(q, (q.AsUInt16() >> 4).AsByte()).AsUInt32(); // [lo0 lo1 hi0 hi1]
        return Avx512F.Shuffle4x128(halves, halves, 0xD8).AsByte() & Vector512.Create((byte)0x0F);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q4_0Pair(Vector512<float> acc, Vector512<byte> nibbles, byte* y, float dx0, float dx1)
    {
        Vector512<sbyte> yv = Join(Vector256.Load(y + 2), Vector256.Load(y + 36)).AsSByte();
        Vector512<int> p = OffsetDotAvx512(nibbles, yv, 8);
        Vector512<float> d = Join(Vector256.Create(dx0 * Half(y)), Vector256.Create(dx1 * Half(y + 34)));
        return Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(p), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q4_0Tail(Vector256<float> tail, Vector256<byte> nibbles, byte* y, float dx) =>
        Fma.MultiplyAdd(Vector256.Create(dx * Half(y)), Avx.ConvertToVector256Single(OffsetDotAvx2(nibbles, Vector256.Load((sbyte*)y + 2), 8)), tail);

    // ---- Q8_0: the weights of two blocks widened to 16 bits once, then Q8_0Avx512's steps per row. ----

    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q8_0Avx512Rows4(byte* x, byte* y, nint s, int blocks, float* r) => Q8_0Avx512Rows(x, y, s, blocks, r, 4);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q8_0Avx512Rows3(byte* x, byte* y, nint s, int blocks, float* r) => Q8_0Avx512Rows(x, y, s, blocks, r, 3);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Q8_0Avx512Rows2(byte* x, byte* y, nint s, int blocks, float* r) => Q8_0Avx512Rows(x, y, s, blocks, r, 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q8_0Avx512Rows(byte* x, byte* y, nint s, int blocks, float* r, int rows)
    {
        Vector512<float> a00 = Vector512<float>.Zero, a01 = Vector512<float>.Zero, a10 = Vector512<float>.Zero, a11 = Vector512<float>.Zero;
        Vector512<float> a20 = Vector512<float>.Zero, a21 = Vector512<float>.Zero, a30 = Vector512<float>.Zero, a31 = Vector512<float>.Zero;
        byte* y0 = y, y1 = y + s, y2 = y + 2 * s, y3 = y + 3 * s;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, x += 68, y0 += 68, y1 += 68, y2 += 68, y3 += 68)
        {
            Vector512<short> w0 = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)x + 2));
            Vector512<short> w1 = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)x + 36));
            float dx0 = Half(x), dx1 = Half(x + 34);
            a00 = Q8_0Block(a00, w0, y0, dx0); a01 = Q8_0Block(a01, w1, y0 + 34, dx1);
            if (rows > 1) { a10 = Q8_0Block(a10, w0, y1, dx0); a11 = Q8_0Block(a11, w1, y1 + 34, dx1); }
            if (rows > 2) { a20 = Q8_0Block(a20, w0, y2, dx0); a21 = Q8_0Block(a21, w1, y2 + 34, dx1); }
            if (rows > 3) { a30 = Q8_0Block(a30, w0, y3, dx0); a31 = Q8_0Block(a31, w1, y3 + 34, dx1); }
        }
        if (b < blocks)
        {
            Vector512<short> w0 = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)x + 2));
            float dx0 = Half(x);
            a00 = Q8_0Block(a00, w0, y0, dx0);
            if (rows > 1) a10 = Q8_0Block(a10, w0, y1, dx0);
            if (rows > 2) a20 = Q8_0Block(a20, w0, y2, dx0);
            if (rows > 3) a30 = Q8_0Block(a30, w0, y3, dx0);
        }
        r[0] = Vector512.Sum(a00 + a01);
        if (rows > 1) r[1] = Vector512.Sum(a10 + a11);
        if (rows > 2) r[2] = Vector512.Sum(a20 + a21);
        if (rows > 3) r[3] = Vector512.Sum(a30 + a31);
    }

    /// <summary>One Q8_0 block (weights <paramref name="w"/> widened, scale <paramref name="dx"/>) into <paramref name="acc"/>, as Q8_0Avx512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q8_0Block(Vector512<float> acc, Vector512<short> w, byte* y, float dx) =>
        Avx512F.FusedMultiplyAdd(Vector512.Create(dx * Half(y)),
            Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w, Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)y + 2)))), acc);

    // ---- Q4_K: a super-block's nibbles and scale lanes decoded once; per row its exact isum and summ, then the same
    // float expression as Q45_KAvx512. ----

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q4_KAvx512Many(byte* x, byte* y, nint s, int rows, int blocks, float* r)
    {
        for (int k = 0; k < rows; k++)
            r[k] = 0;
        for (int b = 0; b < blocks; b++, x += 144, y += 292)
        {
            Vector128<byte> scalesMins = ScalesMinsK4(x + 4);
            Vector512<short> sc512 = Avx2.ConvertToVector256Int16(scalesMins).ToVector512Unsafe();
            byte* qs = x + 16;
            Vector256<byte> q;
            q = Vector256.Load(qs);
            Vector512<byte> u0 = Join(q, (q.AsUInt16() >> 4).AsByte()) & Vector512.Create((byte)0x0F);
            q = Vector256.Load(qs + 32);
            Vector512<byte> u1 = Join(q, (q.AsUInt16() >> 4).AsByte()) & Vector512.Create((byte)0x0F);
            q = Vector256.Load(qs + 64);
            Vector512<byte> u2 = Join(q, (q.AsUInt16() >> 4).AsByte()) & Vector512.Create((byte)0x0F);
            q = Vector256.Load(qs + 96);
            Vector512<byte> u3 = Join(q, (q.AsUInt16() >> 4).AsByte()) & Vector512.Create((byte)0x0F);
            Vector512<short> s0 = Avx512BW.PermuteVar32x16(sc512, HalvesIndex);
            Vector512<short> s1 = Avx512BW.PermuteVar32x16(sc512, HalvesIndex + Vector512.Create((short)2));
            Vector512<short> s2 = Avx512BW.PermuteVar32x16(sc512, HalvesIndex + Vector512.Create((short)4));
            Vector512<short> s3 = Avx512BW.PermuteVar32x16(sc512, HalvesIndex + Vector512.Create((short)6));
            float d = Half(x), dmin = Half(x + 2);
            byte* yk = y;
            for (int k = 0; k < rows; k++, yk += s)
            {
                sbyte* q8 = (sbyte*)yk + 4;
                Vector512<int> acc = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u0, Vector512.Load(q8)), s0)
                                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u1, Vector512.Load(q8 + 64)), s1)
                                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u2, Vector512.Load(q8 + 128)), s2)
                                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u3, Vector512.Load(q8 + 192)), s3);
                int isum = Vector512.Sum(acc);
                int summ = MinsK4(scalesMins, yk);
                float dy = Single(yk);
                r[k] += d * dy * isum - dmin * dy * summ;
            }
        }
    }

    // ---- Q6_K: a super-block's 6-bit weights and scale lanes decoded once; per row its exact isum and offset, then
    // the same float expression as Q6_K. ----

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q6_KAvx512Many(byte* x, byte* y, nint s, int rows, int blocks, float* r)
    {
        for (int k = 0; k < rows; k++)
            r[k] = 0;
        for (int b = 0; b < blocks; b++, x += 210, y += 292)
        {
            byte* ql = x, qh = x + 128;
            Vector256<short> sc = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)x + 192));
            Vector512<short> sc512 = sc.ToVector512Unsafe();
            Vector512<byte> u00 = Q6Weights(Vector512.Load(ql).AsUInt16(), Vector256.Load(qh).AsUInt16(), 0);
            Vector512<byte> u02 = Q6Weights(Vector512.Load(ql).AsUInt16(), Vector256.Load(qh).AsUInt16(), 2);
            Vector512<byte> u10 = Q6Weights(Vector512.Load(ql + 64).AsUInt16(), Vector256.Load(qh + 32).AsUInt16(), 0);
            Vector512<byte> u12 = Q6Weights(Vector512.Load(ql + 64).AsUInt16(), Vector256.Load(qh + 32).AsUInt16(), 2);
            Vector512<short> s00 = Spread4(sc512, 0), s02 = Spread4(sc512, 4), s10 = Spread4(sc512, 8), s12 = Spread4(sc512, 12);
            float dx = Half(x + 208);
            byte* yk = y;
            for (int k = 0; k < rows; k++, yk += s)
            {
                int offset = 32 * Vector256.Sum(Avx2.MultiplyAddAdjacent(BlockSums8K(yk), sc));
                sbyte* q8 = (sbyte*)yk + 4;
                Vector512<int> acc = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u00, Vector512.Load(q8)), s00)
                                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u02, Vector512.Load(q8 + 64)), s02)
                                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u10, Vector512.Load(q8 + 128)), s10)
                                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u12, Vector512.Load(q8 + 192)), s12);
                int isum = Vector512.Sum(acc);
                r[k] += dx * Single(yk) * (isum - offset);
            }
        }
    }

    /// <summary>Q6_K's quarters f, f + 1 of one half (as in Q6_K's wide path), the 64 unsigned weights 0..63.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Q6Weights(Vector512<ushort> low, Vector256<ushort> high, int f) =>
        ((low >> (2 * f)).AsByte() & Vector512.Create((byte)0x0F))
        | ((Join((high >> (2 * f)).AsByte(), (high >> (2 * f + 2)).AsByte()) & Vector512.Create((byte)3)).AsUInt16() << 4).AsByte();
}

/// <summary>Argument checks of the multi-row dot products, and the default that loops over the single-row one.</summary>
internal static class QuantDotMultiChecks
{
    /// <summary>
    /// The number of blocks of <paramref name="n"/> values after checking every row as <see cref="QuantDotChecks.Blocks"/>
    /// does; throws <see cref="ArgumentOutOfRangeException"/> for a count outside 1..8 or too few results.
    /// </summary>
    public static int Rows(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes, int count,
        int n, Span<float> results, int blockSize, int weightBytes, int activationBytes, string weightType, string activationType)
    {
        Counts(count, results);
        int blocks = 0;
        for (int i = 0; i < count; i++)
            blocks = QuantDotChecks.Blocks(weightRow, activationRows.Slice(i * activationRowBytes, activationRowBytes), n,
                blockSize, weightBytes, activationBytes, weightType, activationType);
        return blocks;
    }

    /// <summary><c>results[i] = dot(weightRow, row i, n)</c> for every row.</summary>
    public static void Loop(DotRow dot, ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes,
        int count, int n, Span<float> results)
    {
        Counts(count, results);
        for (int i = 0; i < count; i++)
            results[i] = dot(weightRow, activationRows.Slice(i * activationRowBytes, activationRowBytes), n);
    }

    private static void Counts(int count, Span<float> results)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, 8);
        if (results.Length < count)
            throw new ArgumentException($"{count} activation rows need {count} results but there is room for {results.Length}", nameof(results));
    }
}
