using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Q8_0 matrices packed once, at load, with 16 rows in the vector lanes (one row per 32-bit lane), as Q4_0's are
// (QuantDot.Q4_0Packed.cs), for the Q8_0 lanes kernel's per-token steps (QuantDot.Q8_0Lanes.cs) at any token count.
//
// A group holds its blocks in pairs: for each block, 8 vectors, vector k holding in lane i quants 4k..4k+3 of row i; after
// a pair's 1,024 bytes of quants, its two blocks' 16 scales each as halves. A last, unpaired block has its scales after
// its quants. That is 16 x 34 bytes a block, the size of the rows, so the packed copy takes the place of the file's bytes
// byte for byte, and one stream of whole cache lines. The last group repeats its last row in the lanes past the matrix's
// rows (their results are never written).
//
// Per block the 8 vectors are widened in their lanes to 16 bits, each into two vectors of pairs: (q0, q2) and (q1, q3)
// of every 4 (shifts, 24 operations a block); the activations are widened once per call in the matching order
// (y0, y2, y1, y3 ...), so that the lanes kernel's pmaddwd steps (Q8_0LanesToken) add the same exact integer products:
// the scalar twin's bits for every row and token.
public static unsafe partial class QuantDot
{
    /// <summary>Bytes a packed Q8_0 matrix of <paramref name="rows"/> rows of <paramref name="n"/> values takes.</summary>
    public static long PackedQ8_0Bytes(long rows, int n) => PackedBytes(rows, n, 32, 34, "Q8_0");

    /// <summary>
    /// Packs <paramref name="rows"/> Q8_0 rows of <paramref name="n"/> values, <paramref name="wStride"/> bytes apart, into
    /// <paramref name="packed"/> (<see cref="PackedQ8_0Bytes"/> bytes) for <see cref="DotPackedQ8_0"/>. A matrix may be
    /// packed in slices whose first rows are multiples of <see cref="PackedRows"/>, each into its part of the whole.
    /// </summary>
    public static void PackQ8_0(ReadOnlySpan<byte> w, int wStride, int rows, int n, Span<byte> packed)
    {
        int blocks = PackChecks(w, wStride, rows, n, packed, 32, 34, "Q8_0");
        if (rows == 0 || blocks == 0) return;
        fixed (byte* x = w, p = packed)
            PackLanes(x, wStride, rows, blocks, 34, p, &Q8_0ToLane);
    }

    // One row's block b into lane i of its packed group: the scales, then the quants' 8 dwords.
    private static void Q8_0ToLane(byte* block, byte* group, int b, int blocks, int i)
    {
        ((ushort*)(group + PairedScales(b, blocks, 512)))[i] = *(ushort*)block;
        for (int k = 0; k < 8; k++) ((uint*)(group + PairedVectors(b, 512) + k * 64))[i] = *(uint*)(block + 2 + 4 * k);
    }

    /// <summary>
    /// <c>results[t * resultStride + row] = DotQ8_0(row, token t)</c> for the <paramref name="rows"/> rows of a packed
    /// Q8_0 matrix (<see cref="PackQ8_0"/>) and <paramref name="count"/> Q8_0 activation rows <paramref name="aStride"/>
    /// bytes apart: the scalar twin's bits. AVX-512 only (<see cref="HasPromptKernels"/>).
    /// </summary>
    public static void DotPackedQ8_0(ReadOnlySpan<byte> packed, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride)
    {
        long need = PackedQ8_0Bytes(rows, n);
        if (packed.Length < need) throw new ArgumentException($"{rows} packed rows need {need} bytes, the span holds {packed.Length}", nameof(packed));
        // The packed groups hold the rows' bytes, so the plain checks with the rows' own stride cover them too.
        int blocks = QuantDotPromptChecks.Check(packed, n / 32 * 34, rows, a, aStride, count, n, results, resultStride, 34, "Q8_0");
        if (rows == 0 || blocks == 0) return;
        fixed (byte* x0 = packed, y0 = a)
        fixed (float* r0 = results)
            for (int t = 0; t < count; t += PromptChunk)
                Q8_0PackedLanes(x0, rows, y0 + (nint)t * aStride, aStride, Math.Min(PromptChunk, count - t), blocks, r0 + (nint)t * resultStride, resultStride);
    }

    private static void Q8_0PackedLanes(byte* x, int rows, byte* y, nint aStride, int count, int blocks, float* r, nint rStride)
    {
        int need = count * blocks;
        float[] dyBuffer = ScaleScratch(need);
        short[] wide = WideScratch(need * 32);
        fixed (float* dy = dyBuffer)
        fixed (short* yw = wide)
        {
            WidenActivations(y, aStride, count, blocks, dy, yw, packedOrder: true);
            long groupBytes = PackedRows * (blocks * 34L);
            for (int r0 = 0; r0 < rows; r0 += PackedRows, x += groupBytes)
            {
                int lanes = Math.Min(PackedRows, rows - r0);
                for (int t = 0; t < count; t += LaneTokens)
                {
                    int c = Math.Min(LaneTokens, count - t);
                    Q8_0PackedCores[c - 1](x, yw + (nint)t * blocks * 32, dy + t * blocks, blocks, r + t * rStride + r0, rStride, lanes);
                }
            }
        }
    }

    // The kernel for each token count, 1 to 8.
    private static readonly delegate*<byte*, short*, float*, int, float*, nint, int, void>[] Q8_0PackedCores =
    [
        &Q8_0LanesCore<Tokens1, PackedQ8_0Blocks>, &Q8_0LanesCore<Tokens2, PackedQ8_0Blocks>, &Q8_0LanesCore<Tokens3, PackedQ8_0Blocks>,
        &Q8_0LanesCore<Tokens4, PackedQ8_0Blocks>, &Q8_0LanesCore<Tokens5, PackedQ8_0Blocks>, &Q8_0LanesCore<Tokens6, PackedQ8_0Blocks>,
        &Q8_0LanesCore<Tokens7, PackedQ8_0Blocks>, &Q8_0LanesCore<Tokens8, PackedQ8_0Blocks>,
    ];

    /// <summary>A packed group's blocks, widened in their lanes as they are read.</summary>
    private struct PackedQ8_0Blocks : IQ8_0Blocks
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Load(byte* group, int b, int blocks, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2,
            out Vector512<float> w3, out Vector512<float> w4, out Vector512<float> w5, out Vector512<float> w6, out Vector512<float> w7,
            out Vector512<float> w8, out Vector512<float> w9, out Vector512<float> w10, out Vector512<float> w11, out Vector512<float> w12,
            out Vector512<float> w13, out Vector512<float> w14, out Vector512<float> w15, out Vector512<float> dx)
        {
            byte* q = group + PairedVectors(b, 512);
            // 4 KiB ahead, about where the stream will be (a block's 8.5 lines), as for Q4_0.
            byte* ahead = group + b * 544L + PrefetchBytes;
            for (int l = 0; l < 576; l += 64) Sse.Prefetch0(ahead + l);
            Q8_0Pairs(q, out w0, out w1);
            Q8_0Pairs(q + 64, out w2, out w3);
            Q8_0Pairs(q + 128, out w4, out w5);
            Q8_0Pairs(q + 192, out w6, out w7);
            Q8_0Pairs(q + 256, out w8, out w9);
            Q8_0Pairs(q + 320, out w10, out w11);
            Q8_0Pairs(q + 384, out w12, out w13);
            Q8_0Pairs(q + 448, out w14, out w15);
            dx = HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)(group + PairedScales(b, blocks, 512)))));
        }
    }

    // Quants 4k..4k+3 of every row (one 32-bit lane each) as two vectors of 16-bit pairs: (q0, q2) and (q1, q3).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q8_0Pairs(byte* v, out Vector512<float> even, out Vector512<float> odd)
    {
        Vector512<short> x = Vector512.Load((short*)v);
        even = ((x << 8) >> 8).AsSingle();
        odd = (x >> 8).AsSingle();
    }
}
