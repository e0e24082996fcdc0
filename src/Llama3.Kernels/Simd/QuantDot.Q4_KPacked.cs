using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Q4_K matrices packed once, at load, with 16 rows in the vector lanes (one row per 32-bit lane), as Q4_0's are
// (QuantDot.Q4_0Packed.cs): a super-block's integer sums, scales, mins and float steps are done for 16 rows in one vector
// each, for any token count, decode included.
//
// A group holds, for each super-block of 256 weights, 2,304 bytes (the 16 rows' 16 x 144, so the packed copy takes the
// place of the file's bytes byte for byte, and one stream of whole cache lines):
//   32 vectors of nibbles: vector k has, in lane i, bytes 4k..4k+3 of row i's 128 bytes of quants (low nibbles: weights
//     4(k % 8).. of sub-block 2(k / 8); high nibbles: the same of sub-block 2(k / 8) + 1);
//   3 vectors of the 12 bytes of 6-bit scales and mins, dword j of every row in lane i;
//   the 16 rows' d, then their dmin, as halves.
// The last group repeats its last row in the lanes past the matrix's rows (their results are never written).
//
// Per sub-block and token: 8 broadcasts of 4 activation bytes and 8 maddubs (unsigned nibbles by signed bytes: pairs at
// most 2 x 15 x 128, 8 of them at most 30,720: no overflow in 16 bits), one pmaddwd by the row's scale in both halves of
// its lane: scale * dot, exact; the mins by pmaddwd with the activations' sub-block sums. Then, per row and super-block,
// sum += d * dy * isum - dmin * dy * summ in float, as QuantDotScalar.DotQ4_K (llama.cpp's generic order): the scalar
// twin's bits for every row and token.
public static unsafe partial class QuantDot
{
    /// <summary>Bytes one packed Q4_K super-block of 16 rows takes (16 x 144).</summary>
    private const int PackedQ4_KBlockBytes = 2304;

    /// <summary>Bytes a packed Q4_K matrix of <paramref name="rows"/> rows of <paramref name="n"/> values takes.</summary>
    public static long PackedQ4_KBytes(long rows, int n) => PackedBytes(rows, n, 256, 144, "Q4_K");

    /// <summary>
    /// Packs <paramref name="rows"/> Q4_K rows of <paramref name="n"/> values, <paramref name="wStride"/> bytes apart, into
    /// <paramref name="packed"/> (<see cref="PackedQ4_KBytes"/> bytes) for <see cref="DotPackedQ4_K"/>. A matrix may be
    /// packed in slices whose first rows are multiples of <see cref="PackedRows"/>, each into its part of the whole.
    /// </summary>
    public static void PackQ4_K(ReadOnlySpan<byte> w, int wStride, int rows, int n, Span<byte> packed)
    {
        int blocks = PackChecks(w, wStride, rows, n, packed, 256, 144, "Q4_K");
        if (rows == 0 || blocks == 0) return;
        fixed (byte* x = w, p = packed)
            PackLanes(x, wStride, rows, blocks, 144, p, &Q4_KToLane);
    }

    // One row's super-block b into lane i of its packed group: the quants' 32 dwords, the scales' 3, d and dmin.
    private static void Q4_KToLane(byte* block, byte* group, int b, int blocks, int i)
    {
        byte* dst = group + (long)b * PackedQ4_KBlockBytes;
        for (int k = 0; k < 32; k++) ((uint*)(dst + k * 64))[i] = *(uint*)(block + 16 + 4 * k);
        for (int j = 0; j < 3; j++) ((uint*)(dst + 2048 + j * 64))[i] = *(uint*)(block + 4 + 4 * j);
        ((ushort*)(dst + 2240))[i] = *(ushort*)block;
        ((ushort*)(dst + 2272))[i] = *(ushort*)(block + 2);
    }

    /// <summary>
    /// <c>results[t * resultStride + row] = DotQ4_K(row, token t)</c> for the <paramref name="rows"/> rows of a packed
    /// Q4_K matrix (<see cref="PackQ4_K"/>) and <paramref name="count"/> Q8_K activation rows <paramref name="aStride"/>
    /// bytes apart: the scalar twin's bits. AVX-512 only (<see cref="HasPromptKernels"/>).
    /// </summary>
    public static void DotPackedQ4_K(ReadOnlySpan<byte> packed, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride)
    {
        int blocks = PackedKChecks(packed, PackedQ4_KBytes(rows, n), rows, a, aStride, count, n, results, resultStride);
        if (rows == 0 || blocks == 0) return;
        fixed (byte* x0 = packed, y = a)
        fixed (float* r = results)
        {
            byte* x = x0;
            nint rStride = resultStride;
            float[] dyBuffer = ScaleScratch(count * blocks);
            int[] sumBuffer = SumScratch(count * blocks * 4);
            fixed (float* dy = dyBuffer)
            fixed (int* bsp = sumBuffer)
            {
                // What depends on the activations alone, once per call: their scales, and the sub-blocks' sums in pairs of
                // 16-bit halves (sub-blocks 2u and 2u + 1) for the mins' pmaddwd.
                for (int t = 0; t < count; t++)
                    for (int b = 0; b < blocks; b++)
                    {
                        byte* yb = y + (long)t * aStride + b * 292;
                        dy[t * blocks + b] = *(float*)yb;
                        short* bs = (short*)(yb + 260);
                        for (int u = 0; u < 4; u++)
                        {
                            int lo = bs[4 * u] + bs[4 * u + 1], hi = bs[4 * u + 2] + bs[4 * u + 3];
                            bsp[(t * blocks + b) * 4 + u] = (ushort)lo | (hi << 16);
                        }
                    }
                long groupBytes = (long)blocks * PackedQ4_KBlockBytes;
                for (int r0 = 0; r0 < rows; r0 += PackedRows, x += groupBytes)
                {
                    int lanes = Math.Min(PackedRows, rows - r0);
                    for (int t = 0; t < count; t += LaneTokens)
                    {
                        int c = Math.Min(LaneTokens, count - t);
                        Q4_KPackedCores[c - 1](x, y + t * aStride, aStride, dy + t * blocks, bsp + t * blocks * 4, blocks, r + t * rStride + r0, rStride, lanes);
                    }
                }
            }
        }
    }

    // The kernel for each token count, 1 to 8.
    private static readonly delegate*<byte*, byte*, nint, float*, int*, int, float*, nint, int, void>[] Q4_KPackedCores =
    [
        &Q4_KPackedCore<Tokens1>, &Q4_KPackedCore<Tokens2>, &Q4_KPackedCore<Tokens3>, &Q4_KPackedCore<Tokens4>,
        &Q4_KPackedCore<Tokens5>, &Q4_KPackedCore<Tokens6>, &Q4_KPackedCore<Tokens7>, &Q4_KPackedCore<Tokens8>,
    ];

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q4_KPackedCore<TCount>(byte* group, byte* y, nint aStride, float* dy, int* bsp, int blocks, float* r, nint rStride, int n)
        where TCount : struct, ITokenCount
    {
        int count = TCount.Value;
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default, acc4 = default, acc5 = default, acc6 = default, acc7 = default;
        byte* y1 = y + aStride, y2 = y1 + aStride, y3 = y2 + aStride, y4 = y3 + aStride, y5 = y4 + aStride, y6 = y5 + aStride, y7 = y6 + aStride;
        var low = Vector512.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++)
        {
            byte* block = group + (long)b * PackedQ4_KBlockBytes;
            Vector512<int> i0 = default, i1 = default, i2 = default, i3 = default, i4 = default, i5 = default, i6 = default, i7 = default;
            nint yo = b * 292 + 4;
            for (int s = 0; s < 8; s++)
            {
                // 4 KiB ahead, a sub-block's 288 bytes a step (the hardware prefetcher alone leaves a core well short of
                // the memory's speed, as for Q4_0).
                byte* ahead = block + s * 288 + PrefetchBytes;
                Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192); Sse.Prefetch0(ahead + 256);
                // Sub-block s: the low (even s) or high (odd s) nibbles of vectors 8(s / 2) .. 8(s / 2) + 7.
                byte* v = block + (s >> 1) * 512;
                int shift = 4 * (s & 1);
                Vector512<byte> w0 = (Vector512.Load(v).AsUInt16() >> shift).AsByte() & low;
                Vector512<byte> w1 = (Vector512.Load(v + 64).AsUInt16() >> shift).AsByte() & low;
                Vector512<byte> w2 = (Vector512.Load(v + 128).AsUInt16() >> shift).AsByte() & low;
                Vector512<byte> w3 = (Vector512.Load(v + 192).AsUInt16() >> shift).AsByte() & low;
                Vector512<byte> w4 = (Vector512.Load(v + 256).AsUInt16() >> shift).AsByte() & low;
                Vector512<byte> w5 = (Vector512.Load(v + 320).AsUInt16() >> shift).AsByte() & low;
                Vector512<byte> w6 = (Vector512.Load(v + 384).AsUInt16() >> shift).AsByte() & low;
                Vector512<byte> w7 = (Vector512.Load(v + 448).AsUInt16() >> shift).AsByte() & low;
                Vector512<int> sc = Q4_KScale(block, s);
                Vector512<short> scales = (sc | (sc << 16)).AsInt16();
                nint so = yo + 32 * s;
                i0 += Q4_KSubBlock(w0, w1, w2, w3, w4, w5, w6, w7, y + so, scales);
                if (count > 1) i1 += Q4_KSubBlock(w0, w1, w2, w3, w4, w5, w6, w7, y1 + so, scales);
                if (count > 2) i2 += Q4_KSubBlock(w0, w1, w2, w3, w4, w5, w6, w7, y2 + so, scales);
                if (count > 3) i3 += Q4_KSubBlock(w0, w1, w2, w3, w4, w5, w6, w7, y3 + so, scales);
                if (count > 4) i4 += Q4_KSubBlock(w0, w1, w2, w3, w4, w5, w6, w7, y4 + so, scales);
                if (count > 5) i5 += Q4_KSubBlock(w0, w1, w2, w3, w4, w5, w6, w7, y5 + so, scales);
                if (count > 6) i6 += Q4_KSubBlock(w0, w1, w2, w3, w4, w5, w6, w7, y6 + so, scales);
                if (count > 7) i7 += Q4_KSubBlock(w0, w1, w2, w3, w4, w5, w6, w7, y7 + so, scales);
            }
            // The mins of sub-blocks 2u and 2u + 1 in the halves of each lane, for pmaddwd with the activations' sums.
            Vector512<short> m0 = Q4_KMinPair(block, 0), m1 = Q4_KMinPair(block, 1), m2 = Q4_KMinPair(block, 2), m3 = Q4_KMinPair(block, 3);
            Vector512<float> d = HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)(block + 2240))));
            Vector512<float> dmin = HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)(block + 2272))));
            int o = b * 4, stride = blocks * 4;
            acc0 = Q4_KFloatStep(acc0, d, dmin, dy[b], i0, m0, m1, m2, m3, bsp + o);
            if (count > 1) acc1 = Q4_KFloatStep(acc1, d, dmin, dy[blocks + b], i1, m0, m1, m2, m3, bsp + stride + o);
            if (count > 2) acc2 = Q4_KFloatStep(acc2, d, dmin, dy[2 * blocks + b], i2, m0, m1, m2, m3, bsp + 2 * stride + o);
            if (count > 3) acc3 = Q4_KFloatStep(acc3, d, dmin, dy[3 * blocks + b], i3, m0, m1, m2, m3, bsp + 3 * stride + o);
            if (count > 4) acc4 = Q4_KFloatStep(acc4, d, dmin, dy[4 * blocks + b], i4, m0, m1, m2, m3, bsp + 4 * stride + o);
            if (count > 5) acc5 = Q4_KFloatStep(acc5, d, dmin, dy[5 * blocks + b], i5, m0, m1, m2, m3, bsp + 5 * stride + o);
            if (count > 6) acc6 = Q4_KFloatStep(acc6, d, dmin, dy[6 * blocks + b], i6, m0, m1, m2, m3, bsp + 6 * stride + o);
            if (count > 7) acc7 = Q4_KFloatStep(acc7, d, dmin, dy[7 * blocks + b], i7, m0, m1, m2, m3, bsp + 7 * stride + o);
        }
        StoreTokens<TCount>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, r, rStride, n);
    }

    /// <summary>One token's sub-block for 16 rows: scale * sum(q * y), exact, one row per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q4_KSubBlock(Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3,
        Vector512<byte> w4, Vector512<byte> w5, Vector512<byte> w6, Vector512<byte> w7, byte* y, Vector512<short> scales)
    {
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(w0, Vector512.Create(*(int*)y).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w1, Vector512.Create(*(int*)(y + 4)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w2, Vector512.Create(*(int*)(y + 8)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w3, Vector512.Create(*(int*)(y + 12)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w4, Vector512.Create(*(int*)(y + 16)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w5, Vector512.Create(*(int*)(y + 20)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w6, Vector512.Create(*(int*)(y + 24)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w7, Vector512.Create(*(int*)(y + 28)).AsSByte());
        return Avx512BW.MultiplyAddAdjacent(p, scales);
    }

    /// <summary>A token's super-block for 16 rows: <c>sum += d * dy * isum - dmin * dy * summ</c>, the scalar twin's steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q4_KFloatStep(Vector512<float> acc, Vector512<float> d, Vector512<float> dmin, float dy,
        Vector512<int> isum, Vector512<short> m0, Vector512<short> m1, Vector512<short> m2, Vector512<short> m3, int* bsp)
    {
        Vector512<int> summ = Avx512BW.MultiplyAddAdjacent(m0, Vector512.Create(bsp[0]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(m1, Vector512.Create(bsp[1]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(m2, Vector512.Create(bsp[2]).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(m3, Vector512.Create(bsp[3]).AsInt16());
        var vdy = Vector512.Create(dy);
        return acc + (d * vdy * Avx512F.ConvertToVector512Single(isum) - dmin * vdy * Avx512F.ConvertToVector512Single(summ));
    }

    // The 6-bit scale of sub-block s of every row (QuantDotScalar.ScaleMinK4), from the 3 packed vectors of scale bytes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q4_KScale(byte* block, int s)
    {
        Vector512<int> q0 = Vector512.Load((int*)(block + 2048));
        if (s < 4) return (q0 >>> (8 * s)) & Vector512.Create(63);
        Vector512<int> q2 = Vector512.Load((int*)(block + 2176));
        int u = 8 * (s - 4);
        return ((q2 >>> u) & Vector512.Create(0xF)) | (((q0 >>> (u + 6)) & Vector512.Create(3)) << 4);
    }

    // The 6-bit mins of sub-blocks 2u and 2u + 1 of every row, in the low and high halves of its lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Q4_KMinPair(byte* block, int u) =>
        (Q4_KMin(block, 2 * u) | (Q4_KMin(block, 2 * u + 1) << 16)).AsInt16();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q4_KMin(byte* block, int s)
    {
        Vector512<int> q1 = Vector512.Load((int*)(block + 2112));
        if (s < 4) return (q1 >>> (8 * s)) & Vector512.Create(63);
        Vector512<int> q2 = Vector512.Load((int*)(block + 2176));
        int u = 8 * (s - 4);
        return ((q2 >>> (u + 4)) & Vector512.Create(0xF)) | (((q1 >>> (u + 6)) & Vector512.Create(3)) << 4);
    }
}
