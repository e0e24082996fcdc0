using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Q6_K matrices packed once, at load, with 16 rows in the vector lanes (one row per 32-bit lane), as Q4_0's and Q4_K's
// are (QuantDot.Q4_0Packed.cs, QuantDot.Q4_KPacked.cs).
//
// A group holds, for each super-block of 256 weights, 52 vectors: 32 of the low 4 bits (vector k: bytes 4k..4k+3 of row
// i's ql in lane i), 16 of the high 2 bits (qh, likewise) and 4 of the 16 signed scales; and the 16 rows' d as halves.
// Super-blocks are held in pairs, the pair's two sets of d after its vectors (a last, unpaired super-block has its d
// after its vectors), so that every vector sits on a cache line: 16 x 210 bytes a super-block, the size of the rows,
// so the packed copy takes the place of the file's bytes byte for byte.
// The last group repeats its last row in the lanes past the matrix's rows (their results are never written).
//
// Per sub-block of 16 weights the 6-bit quants q (0..63) are put together in the lanes, and per token: 4 broadcasts of 4
// activation bytes, 4 maddubs (pairs at most 2 x 63 x 128; two of them at most 32,256: no overflow in 16 bits) and two
// pmaddwd by the row's scale: scale * sum(q * y), exact. The offset of 32 is taken off once per super-block:
// 32 * sum(scale * bsum), with the activations' 16-weight sums (pmaddwd on pairs). Then, per row,
// sum += d * dy * isum in float, as QuantDotScalar.DotQ6_K (llama.cpp's generic order): the scalar twin's bits for every
// row and token.
public static unsafe partial class QuantDot
{
    /// <summary>Bytes one packed Q6_K super-block of 16 rows takes (16 x 210).</summary>
    private const int PackedQ6_KBlockBytes = 3360;

    /// <summary>Bytes a packed Q6_K matrix of <paramref name="rows"/> rows of <paramref name="n"/> values takes.</summary>
    public static long PackedQ6_KBytes(long rows, int n) => PackedBytes(rows, n, 256, 210, "Q6_K");

    /// <summary>
    /// Packs <paramref name="rows"/> Q6_K rows of <paramref name="n"/> values, <paramref name="wStride"/> bytes apart, into
    /// <paramref name="packed"/> (<see cref="PackedQ6_KBytes"/> bytes) for <see cref="DotPackedQ6_K"/>. A matrix may be
    /// packed in slices whose first rows are multiples of <see cref="PackedRows"/>, each into its part of the whole.
    /// </summary>
    public static void PackQ6_K(ReadOnlySpan<byte> w, int wStride, int rows, int n, Span<byte> packed)
    {
        int blocks = PackChecks(w, wStride, rows, n, packed, 256, 210, "Q6_K");
        if (rows == 0 || blocks == 0) return;
        fixed (byte* x = w, p = packed)
            PackLanes(x, wStride, rows, blocks, 210, p, &Q6_KToLane);
    }

    // One row's super-block b into lane i of its packed group: ql (128 bytes), qh (64) and the scales (16) are 52
    // consecutive dwords; d follows.
    private static void Q6_KToLane(byte* block, byte* group, int b, int blocks, int i)
    {
        for (int k = 0; k < 52; k++) ((uint*)(group + PairedVectors(b, 3328) + k * 64))[i] = *(uint*)(block + 4 * k);
        ((ushort*)(group + PairedScales(b, blocks, 3328)))[i] = *(ushort*)(block + 208);
    }

    /// <summary>
    /// <c>results[t * resultStride + row] = DotQ6_K(row, token t)</c> for the <paramref name="rows"/> rows of a packed
    /// Q6_K matrix (<see cref="PackQ6_K"/>) and <paramref name="count"/> Q8_K activation rows <paramref name="aStride"/>
    /// bytes apart: the scalar twin's bits. AVX-512 only (<see cref="HasPromptKernels"/>).
    /// </summary>
    public static void DotPackedQ6_K(ReadOnlySpan<byte> packed, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride)
    {
        int blocks = PackedKChecks(packed, PackedQ6_KBytes(rows, n), rows, a, aStride, count, n, results, resultStride);
        if (rows == 0 || blocks == 0) return;
        fixed (byte* x0 = packed, y = a)
        fixed (float* r = results)
        {
            float[] dyBuffer = ScaleScratch(count * blocks);
            fixed (float* dy = dyBuffer)
            {
                for (int t = 0; t < count; t++)
                    for (int b = 0; b < blocks; b++)
                        dy[t * blocks + b] = *(float*)(y + (long)t * aStride + b * 292);
                byte* x = x0;
                long groupBytes = (long)blocks * PackedQ6_KBlockBytes;
                for (int r0 = 0; r0 < rows; r0 += PackedRows, x += groupBytes)
                {
                    int lanes = Math.Min(PackedRows, rows - r0);
                    for (int t = 0; t < count; t += LaneTokens)
                    {
                        int c = Math.Min(LaneTokens, count - t);
                        Q6_KPackedCores[c - 1](x, y + t * aStride, aStride, dy + t * blocks, blocks, r + t * resultStride + r0, resultStride, lanes);
                    }
                }
            }
        }
    }

    /// <summary>The argument checks of the packed K-quant products (Q8_K activations); returns the super-block count.</summary>
    private static int PackedKChecks(ReadOnlySpan<byte> packed, long need, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride)
    {
        if (!HasPromptKernels) throw new PlatformNotSupportedException("the packed kernels are the AVX-512 path's");
        if (packed.Length < need) throw new ArgumentException($"{rows} packed rows need {need} bytes, the span holds {packed.Length}", nameof(packed));
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(resultStride, rows);
        int blocks = n / 256;
        if (aStride < (long)blocks * 292) throw new ArgumentException($"Q8_K rows of {blocks} super-blocks need {(long)blocks * 292} bytes, the stride is {aStride}", nameof(aStride));
        if ((long)aStride * (count - 1) + (long)blocks * 292 > a.Length)
            throw new ArgumentException($"{count} activation rows of {aStride} bytes need more than the span's {a.Length}", nameof(a));
        if (rows > 0 && (long)(count - 1) * resultStride + rows > results.Length)
            throw new ArgumentException($"the results span holds {results.Length} floats, {(long)(count - 1) * resultStride + rows} needed", nameof(results));
        return blocks;
    }

    // The kernel for each token count, 1 to 8.
    private static readonly delegate*<byte*, byte*, nint, float*, int, float*, nint, int, void>[] Q6_KPackedCores =
    [
        &Q6_KPackedCore<Tokens1>, &Q6_KPackedCore<Tokens2>, &Q6_KPackedCore<Tokens3>, &Q6_KPackedCore<Tokens4>,
        &Q6_KPackedCore<Tokens5>, &Q6_KPackedCore<Tokens6>, &Q6_KPackedCore<Tokens7>, &Q6_KPackedCore<Tokens8>,
    ];

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q6_KPackedCore<TCount>(byte* group, byte* y, nint aStride, float* dy, int blocks, float* r, nint rStride, int n)
        where TCount : struct, ITokenCount
    {
        int count = TCount.Value;
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default, acc4 = default, acc5 = default, acc6 = default, acc7 = default;
        byte* y1 = y + aStride, y2 = y1 + aStride, y3 = y2 + aStride, y4 = y3 + aStride, y5 = y4 + aStride, y6 = y5 + aStride, y7 = y6 + aStride;
        var low4 = Vector512.Create((byte)0x0F);
        var low2 = Vector512.Create((byte)0x03);
        for (int b = 0; b < blocks; b++)
        {
            byte* block = group + PairedVectors(b, 3328);
            Vector512<int> i0 = default, i1 = default, i2 = default, i3 = default, i4 = default, i5 = default, i6 = default, i7 = default;
            nint yo = b * 292;
            for (int g = 0; g < 16; g++)
            {
                // 4 KiB ahead, a sub-block's 210 bytes a step (as for Q4_0).
                byte* ahead = group + (long)b * PackedQ6_KBlockBytes + g * 210 + PrefetchBytes;
                Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
                // Sub-block g (QuantDotScalar.DotQ6_K): low bits from 4 ql vectors, high bits from 4 qh vectors.
                int half = g >> 3, quarter = (g & 7) >> 1, offset = 16 * (g & 1);
                byte* ql = block + (64 * half + 32 * (quarter & 1) + offset) * 16;
                byte* qh = block + 2048 + (32 * half + offset) * 16;
                int lowShift = quarter < 2 ? 0 : 4, highShift = 2 * quarter;
                Vector512<byte> w0 = Q6_KQuants(ql, qh, lowShift, highShift, low4, low2);
                Vector512<byte> w1 = Q6_KQuants(ql + 64, qh + 64, lowShift, highShift, low4, low2);
                Vector512<byte> w2 = Q6_KQuants(ql + 128, qh + 128, lowShift, highShift, low4, low2);
                Vector512<byte> w3 = Q6_KQuants(ql + 192, qh + 192, lowShift, highShift, low4, low2);
                Vector512<short> scales = Q6_KScalePair(block, g);
                nint so = yo + 4 + 16 * g;
                i0 += Q6_KSubBlock(w0, w1, w2, w3, y + so, scales);
                if (count > 1) i1 += Q6_KSubBlock(w0, w1, w2, w3, y1 + so, scales);
                if (count > 2) i2 += Q6_KSubBlock(w0, w1, w2, w3, y2 + so, scales);
                if (count > 3) i3 += Q6_KSubBlock(w0, w1, w2, w3, y3 + so, scales);
                if (count > 4) i4 += Q6_KSubBlock(w0, w1, w2, w3, y4 + so, scales);
                if (count > 5) i5 += Q6_KSubBlock(w0, w1, w2, w3, y5 + so, scales);
                if (count > 6) i6 += Q6_KSubBlock(w0, w1, w2, w3, y6 + so, scales);
                if (count > 7) i7 += Q6_KSubBlock(w0, w1, w2, w3, y7 + so, scales);
            }
            Vector512<float> d = HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)(group + PairedScales(b, blocks, 3328)))));
            // The scales of sub-blocks 2u and 2u + 1 in the halves of each lane, for the offset's pmaddwd.
            Vector512<short> s0 = Q6_KScalePairs(block, 0), s1 = Q6_KScalePairs(block, 1), s2 = Q6_KScalePairs(block, 2), s3 = Q6_KScalePairs(block, 3);
            Vector512<short> s4 = Q6_KScalePairs(block, 4), s5 = Q6_KScalePairs(block, 5), s6 = Q6_KScalePairs(block, 6), s7 = Q6_KScalePairs(block, 7);
            acc0 = Q6_KFloatStep(acc0, d, dy[b], i0, y + yo, s0, s1, s2, s3, s4, s5, s6, s7);
            if (count > 1) acc1 = Q6_KFloatStep(acc1, d, dy[blocks + b], i1, y1 + yo, s0, s1, s2, s3, s4, s5, s6, s7);
            if (count > 2) acc2 = Q6_KFloatStep(acc2, d, dy[2 * blocks + b], i2, y2 + yo, s0, s1, s2, s3, s4, s5, s6, s7);
            if (count > 3) acc3 = Q6_KFloatStep(acc3, d, dy[3 * blocks + b], i3, y3 + yo, s0, s1, s2, s3, s4, s5, s6, s7);
            if (count > 4) acc4 = Q6_KFloatStep(acc4, d, dy[4 * blocks + b], i4, y4 + yo, s0, s1, s2, s3, s4, s5, s6, s7);
            if (count > 5) acc5 = Q6_KFloatStep(acc5, d, dy[5 * blocks + b], i5, y5 + yo, s0, s1, s2, s3, s4, s5, s6, s7);
            if (count > 6) acc6 = Q6_KFloatStep(acc6, d, dy[6 * blocks + b], i6, y6 + yo, s0, s1, s2, s3, s4, s5, s6, s7);
            if (count > 7) acc7 = Q6_KFloatStep(acc7, d, dy[7 * blocks + b], i7, y7 + yo, s0, s1, s2, s3, s4, s5, s6, s7);
        }
        StoreTokens<TCount>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, r, rStride, n);
    }

    /// <summary>4 weights of every row as the unsigned 6-bit quant: the low 4 bits and the high 2, put together.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Q6_KQuants(byte* ql, byte* qh, int lowShift, int highShift, Vector512<byte> low4, Vector512<byte> low2) =>
        ((Vector512.Load(ql).AsUInt16() >> lowShift).AsByte() & low4)
        | (((Vector512.Load(qh).AsUInt16() >> highShift).AsByte() & low2).AsUInt16() << 4).AsByte();

    /// <summary>One token's sub-block for 16 rows: scale * sum(q * y), exact, one row per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q6_KSubBlock(Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3, byte* y,
        Vector512<short> scales)
    {
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(w0, Vector512.Create(*(int*)y).AsSByte())
            + Avx512BW.MultiplyAddAdjacent(w1, Vector512.Create(*(int*)(y + 4)).AsSByte());
        Vector512<short> q = Avx512BW.MultiplyAddAdjacent(w2, Vector512.Create(*(int*)(y + 8)).AsSByte())
            + Avx512BW.MultiplyAddAdjacent(w3, Vector512.Create(*(int*)(y + 12)).AsSByte());
        return Avx512BW.MultiplyAddAdjacent(p, scales) + Avx512BW.MultiplyAddAdjacent(q, scales);
    }

    /// <summary>
    /// A token's super-block for 16 rows: the offset of 32 taken off (32 * sum(scale * bsum), pairs of sub-blocks by
    /// pmaddwd), then <c>sum += d * dy * isum</c>, the scalar twin's steps.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q6_KFloatStep(Vector512<float> acc, Vector512<float> d, float dy, Vector512<int> isum, byte* y,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3, Vector512<short> s4, Vector512<short> s5,
        Vector512<short> s6, Vector512<short> s7)
    {
        int* bsums = (int*)(y + 260); // the 16-bit sums of sub-blocks 2u and 2u + 1 in dword u
        Vector512<int> offset = Avx512BW.MultiplyAddAdjacent(s0, Vector512.Create(bsums[0]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(s1, Vector512.Create(bsums[1]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(s2, Vector512.Create(bsums[2]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(s3, Vector512.Create(bsums[3]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(s4, Vector512.Create(bsums[4]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(s5, Vector512.Create(bsums[5]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(s6, Vector512.Create(bsums[6]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(s7, Vector512.Create(bsums[7]).AsInt16());
        Vector512<int> sumi = isum - (offset << 5);
        return acc + d * Vector512.Create(dy) * Avx512F.ConvertToVector512Single(sumi);
    }

    // The signed scale of sub-block g of every row, in both halves of its lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Q6_KScalePair(byte* block, int g)
    {
        Vector512<int> s = (Vector512.Load((int*)(block + 3072 + (g >> 2) * 64)) << (24 - 8 * (g & 3))) >> 24;
        return ((s & Vector512.Create(0xFFFF)) | (s << 16)).AsInt16();
    }

    // The signed scales of sub-blocks 2u and 2u + 1 of every row, in the low and high halves of its lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Q6_KScalePairs(byte* block, int u)
    {
        Vector512<int> v = Vector512.Load((int*)(block + 3072 + (u >> 1) * 64));
        int first = 16 * (u & 1); // bytes 2(u % 2), 2(u % 2) + 1 of the dword
        Vector512<int> lo = (v << (24 - first)) >> 24, hi = (v << (16 - first)) >> 24;
        return ((lo & Vector512.Create(0xFFFF)) | (hi << 16)).AsInt16();
    }
}
