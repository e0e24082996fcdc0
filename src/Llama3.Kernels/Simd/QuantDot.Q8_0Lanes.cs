using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Q8_0 x Q8_0 on AVX-512 with the weight rows in the lanes, as Q4_0's (QuantDot.Q4_0Lanes.cs): 16 rows at a time, one
// row per 32-bit lane. Per block the 16 rows' 32 quants are widened to 16 bits and transposed (the float transpose of
// FloatDot.Lanes.cs on their bits) into 16 vectors that each hold, for every row, one pair of weights (k = 2g, 2g+1).
// The activations are widened to 16 bits once per call; per token each pair is broadcast to all lanes, pmaddwd gives
// every row's two products summed, and 16 of those add up to the block's exact integer dot product. Then, per row,
// sum += sumi * (dx * dy) in float, block after block: the steps of QuantDotScalar.DotQ8_0 (llama.cpp's generic
// ggml_vec_dot_q8_0_q8_0), so this path gives the scalar twin's bits. The transposition is done once per group of 16
// rows for 64 of a prompt's tokens at a time (QuantType.DotPrompt); fewer than 8 tokens keep the horizontal kernels. A
// matrix packed once at load (QuantDot.Q8_0Packed.cs) skips the transposition and takes these per-token steps for any
// token count.
public static unsafe partial class QuantDot
{
    /// <summary>Tokens one call of <see cref="Q8_0Lanes"/> takes in a prompt.</summary>
    private const int PromptChunk = 64;

    /// <summary>Q8_0 weights with a prompt's Q8_0 activation rows (see <see cref="Quant.DotPromptRows"/>): the scalar twin's bits.</summary>
    public static void DotPromptQ8_0(ReadOnlySpan<byte> w, int wStride, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride)
    {
        int blocks = QuantDotPromptChecks.Check(w, wStride, rows, a, aStride, count, n, results, resultStride, 34, "Q8_0");
        if (rows == 0) return;
        // 64 tokens at a time: their widened activations (64 bytes a block) stay a few MiB at most, and the rows'
        // arrangement is still shared by 64 tokens.
        fixed (byte* x = w, y = a)
        fixed (float* r = results)
            for (int t = 0; t < count; t += PromptChunk)
                Q8_0Lanes(x, wStride, rows, y + (nint)t * aStride, aStride, Math.Min(PromptChunk, count - t), blocks, r + (nint)t * resultStride, resultStride);
    }

    /// <summary>
    /// <c>r[t * rStride + row] = DotQ8_0(row, token t)</c> for <paramref name="rows"/> weight rows and
    /// <paramref name="count"/> activation rows (see <see cref="Q4_0Lanes"/>): the scalar twin's bits.
    /// </summary>
    private static void Q8_0Lanes(byte* x, nint wStride, int rows, byte* y, nint aStride, int count, int blocks, float* r, nint rStride)
    {
        if (rows == 0 || count == 0) return;
        int need = count * blocks;
        float[] dyBuffer = ScaleScratch(need);
        short[] wide = WideScratch(need * 32);
        fixed (float* dy = dyBuffer)
        fixed (short* yw = wide)
        {
            WidenActivations(y, aStride, count, blocks, dy, yw, packedOrder: false);
            byte** rp = stackalloc byte*[16];
            Vector512<byte>* prep = PrepScratch(blocks * 17);
            for (int r0 = 0; r0 < rows; r0 += 16)
            {
                int n = Math.Min(16, rows - r0);
                RowPointers(rp, x, wStride, r0, n);
                Q8_0Prep(rp, blocks, prep);
                for (int t = 0; t < count; t += LaneTokens)
                {
                    int c = Math.Min(LaneTokens, count - t);
                    short* ywt = yw + t * blocks * 32;
                    float* dyt = dy + t * blocks, rt = r + t * rStride + r0;
                    Q8_0Cores[c - 1]((byte*)prep, ywt, dyt, blocks, rt, rStride, n);
                }
            }
        }
    }

    // 16 rows' blocks arranged once for all the tokens: per block 16 vectors of weight pairs (w_g: weights 2g, 2g + 1
    // of every row as 16-bit values, row i in lane i) and the rows' scales as floats.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q8_0Prep(byte** rp, int blocks, Vector512<byte>* prep)
    {
        Vector512<int> offsets = RowOffsets(rp);
        for (int b = 0; b < blocks; b++, prep += 17)
        {
            nint o = b * 34;
            Vector512<float> r0 = Wide(rp[0] + o), r1 = Wide(rp[1] + o), r2 = Wide(rp[2] + o), r3 = Wide(rp[3] + o);
            Vector512<float> r4 = Wide(rp[4] + o), r5 = Wide(rp[5] + o), r6 = Wide(rp[6] + o), r7 = Wide(rp[7] + o);
            Vector512<float> r8 = Wide(rp[8] + o), r9 = Wide(rp[9] + o), r10 = Wide(rp[10] + o), r11 = Wide(rp[11] + o);
            Vector512<float> r12 = Wide(rp[12] + o), r13 = Wide(rp[13] + o), r14 = Wide(rp[14] + o), r15 = Wide(rp[15] + o);
            FloatDotTranspose.Quad(r0, r1, r2, r3, out var a0, out var a1, out var a2, out var a3);
            FloatDotTranspose.Quad(r4, r5, r6, r7, out var b0, out var b1, out var b2, out var b3);
            FloatDotTranspose.Quad(r8, r9, r10, r11, out var c0, out var c1, out var c2, out var c3);
            FloatDotTranspose.Quad(r12, r13, r14, r15, out var d0, out var d1, out var d2, out var d3);
            FloatDotTranspose.Columns(a0, b0, c0, d0, out var w0, out var w4, out var w8, out var w12);
            FloatDotTranspose.Columns(a1, b1, c1, d1, out var w1, out var w5, out var w9, out var w13);
            FloatDotTranspose.Columns(a2, b2, c2, d2, out var w2, out var w6, out var w10, out var w14);
            FloatDotTranspose.Columns(a3, b3, c3, d3, out var w3, out var w7, out var w11, out var w15);
            prep[0] = w0.AsByte(); prep[1] = w1.AsByte(); prep[2] = w2.AsByte(); prep[3] = w3.AsByte();
            prep[4] = w4.AsByte(); prep[5] = w5.AsByte(); prep[6] = w6.AsByte(); prep[7] = w7.AsByte();
            prep[8] = w8.AsByte(); prep[9] = w9.AsByte(); prep[10] = w10.AsByte(); prep[11] = w11.AsByte();
            prep[12] = w12.AsByte(); prep[13] = w13.AsByte(); prep[14] = w14.AsByte(); prep[15] = w15.AsByte();
            prep[16] = RowScales(rp, offsets, o).AsByte();
        }
    }

    // The kernel for each token count, 1 to 8.
    private static readonly delegate*<byte*, short*, float*, int, float*, nint, int, void>[] Q8_0Cores =
    [
        &Q8_0LanesCore<Tokens1, PreparedQ8_0Blocks>, &Q8_0LanesCore<Tokens2, PreparedQ8_0Blocks>, &Q8_0LanesCore<Tokens3, PreparedQ8_0Blocks>,
        &Q8_0LanesCore<Tokens4, PreparedQ8_0Blocks>, &Q8_0LanesCore<Tokens5, PreparedQ8_0Blocks>, &Q8_0LanesCore<Tokens6, PreparedQ8_0Blocks>,
        &Q8_0LanesCore<Tokens7, PreparedQ8_0Blocks>, &Q8_0LanesCore<Tokens8, PreparedQ8_0Blocks>,
    ];

    /// <summary>
    /// The activations once per call: their scales as floats, and their quants widened to 16 bits (64 bytes a block), in
    /// order or, for packed weights (<paramref name="packedOrder"/>), as (y0, y2, y1, y3) of every 4 to match the packed
    /// pairs (QuantDot.Q8_0Packed.cs).
    /// </summary>
    private static void WidenActivations(byte* y, nint aStride, int count, int blocks, float* dy, short* yw, bool packedOrder)
    {
        var order = Vector512.Create((short)0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15, 16, 18, 17, 19, 20, 22, 21, 23, 24, 26, 25, 27, 28, 30, 29, 31);
        for (int t = 0; t < count; t++)
        {
            byte* yt = y + t * aStride;
            for (int b = 0; b < blocks; b++, yt += 34)
            {
                dy[t * blocks + b] = Half(yt);
                var q = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)yt + 2));
                Vector512.Store(packedOrder ? Avx512BW.PermuteVar32x16(q, order) : q, yw + (t * blocks + b) * 32);
            }
        }
    }

    [ThreadStatic] private static short[]? _wideScratch;

    // One buffer per thread for the widened activation quants, grown when a call needs more.
    private static short[] WideScratch(int shorts)
    {
        var s = _wideScratch;
        if (s is null || s.Length < shorts) _wideScratch = s = new short[Math.Max(shorts, 16384)];
        return s;
    }

    /// <summary>Where a Q8_0 lanes kernel reads its blocks: per block 16 vectors of 16-bit weight pairs and the rows' scales.</summary>
    private interface IQ8_0Blocks
    {
        /// <summary>
        /// Block <paramref name="b"/> of <paramref name="blocks"/> at <paramref name="source"/>: w_g holds one pair of
        /// 16-bit weights of every row, row i in lane i, matching dword g of the token's widened quants; dx the rows' scales.
        /// </summary>
        static abstract void Load(byte* source, int b, int blocks, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2,
            out Vector512<float> w3, out Vector512<float> w4, out Vector512<float> w5, out Vector512<float> w6, out Vector512<float> w7,
            out Vector512<float> w8, out Vector512<float> w9, out Vector512<float> w10, out Vector512<float> w11, out Vector512<float> w12,
            out Vector512<float> w13, out Vector512<float> w14, out Vector512<float> w15, out Vector512<float> dx);
    }

    /// <summary>Blocks arranged for a prompt (<see cref="Q8_0Prep"/>): 17 vectors each.</summary>
    private struct PreparedQ8_0Blocks : IQ8_0Blocks
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Load(byte* source, int b, int blocks, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2,
            out Vector512<float> w3, out Vector512<float> w4, out Vector512<float> w5, out Vector512<float> w6, out Vector512<float> w7,
            out Vector512<float> w8, out Vector512<float> w9, out Vector512<float> w10, out Vector512<float> w11, out Vector512<float> w12,
            out Vector512<float> w13, out Vector512<float> w14, out Vector512<float> w15, out Vector512<float> dx)
        {
            var prep = (Vector512<float>*)source + b * 17;
            w0 = prep[0]; w1 = prep[1]; w2 = prep[2]; w3 = prep[3]; w4 = prep[4]; w5 = prep[5]; w6 = prep[6]; w7 = prep[7];
            w8 = prep[8]; w9 = prep[9]; w10 = prep[10]; w11 = prep[11]; w12 = prep[12]; w13 = prep[13]; w14 = prep[14]; w15 = prep[15];
            dx = prep[16];
        }
    }

    // The Q8_0 lanes kernel for 1 to 8 tokens (TCount) over the 16 rows of a group whose blocks TBlocks reads.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q8_0LanesCore<TCount, TBlocks>(byte* source, short* yw, float* dy, int blocks, float* r, nint rStride, int n)
        where TCount : struct, ITokenCount where TBlocks : struct, IQ8_0Blocks
    {
        int count = TCount.Value;
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default, acc4 = default, acc5 = default, acc6 = default, acc7 = default;
        nint tokenStride = (nint)blocks * 32;
        for (int b = 0; b < blocks; b++)
        {
            TBlocks.Load(source, b, blocks, out var w0, out var w1, out var w2, out var w3, out var w4, out var w5, out var w6, out var w7,
                out var w8, out var w9, out var w10, out var w11, out var w12, out var w13, out var w14, out var w15, out var dx);
            short* yb = yw + (nint)b * 32;
            acc0 = Q8_0LanesToken(acc0, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, yb, dx, dy[b]);
            if (count > 1) acc1 = Q8_0LanesToken(acc1, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, yb + tokenStride, dx, dy[blocks + b]);
            if (count > 2) acc2 = Q8_0LanesToken(acc2, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, yb + 2 * tokenStride, dx, dy[2 * blocks + b]);
            if (count > 3) acc3 = Q8_0LanesToken(acc3, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, yb + 3 * tokenStride, dx, dy[3 * blocks + b]);
            if (count > 4) acc4 = Q8_0LanesToken(acc4, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, yb + 4 * tokenStride, dx, dy[4 * blocks + b]);
            if (count > 5) acc5 = Q8_0LanesToken(acc5, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, yb + 5 * tokenStride, dx, dy[5 * blocks + b]);
            if (count > 6) acc6 = Q8_0LanesToken(acc6, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, yb + 6 * tokenStride, dx, dy[6 * blocks + b]);
            if (count > 7) acc7 = Q8_0LanesToken(acc7, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, yb + 7 * tokenStride, dx, dy[7 * blocks + b]);
        }
        StoreTokens<TCount>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, r, rStride, n);
    }

    /// <summary>A Q8_0 block's 32 quants at <paramref name="block"/> + 2 widened to 16 bits (as float bits, for the transpose).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Wide(byte* block) => Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)block + 2)).AsSingle();

    /// <summary>One token's block for 16 rows: the exact integer dot products, then <c>sum += sumi * (dx * dy)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q8_0LanesToken(Vector512<float> acc,
        Vector512<float> w0, Vector512<float> w1, Vector512<float> w2, Vector512<float> w3, Vector512<float> w4, Vector512<float> w5,
        Vector512<float> w6, Vector512<float> w7, Vector512<float> w8, Vector512<float> w9, Vector512<float> w10, Vector512<float> w11,
        Vector512<float> w12, Vector512<float> w13, Vector512<float> w14, Vector512<float> w15, short* y, Vector512<float> dx, float dy)
    {
        int* p = (int*)y;
        Vector512<int> s = Pair(w0, p[0]) + Pair(w1, p[1]);
        s += Pair(w2, p[2]) + Pair(w3, p[3]);
        s += Pair(w4, p[4]) + Pair(w5, p[5]);
        s += Pair(w6, p[6]) + Pair(w7, p[7]);
        s += Pair(w8, p[8]) + Pair(w9, p[9]);
        s += Pair(w10, p[10]) + Pair(w11, p[11]);
        s += Pair(w12, p[12]) + Pair(w13, p[13]);
        s += Pair(w14, p[14]) + Pair(w15, p[15]);
        return acc + Avx512F.ConvertToVector512Single(s) * (dx * Vector512.Create(dy));
    }

    // Every lane's pair of 16-bit weights times the token's pair (broadcast), summed.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair(Vector512<float> w, int y) =>
        Avx512BW.MultiplyAddAdjacent(w.AsInt16(), Vector512.Create(y).AsInt16());
}
