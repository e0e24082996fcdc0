using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Q4_0 x Q8_0 on AVX-512 with the weight rows in the lanes: 16 rows at a time, one row per 32-bit lane, so that a
// block's scales, integer sums and float steps are done for 16 rows in one vector each instead of once per row and
// block pair in a horizontal layout.
//
// Per block the 16 rows' 16 bytes of nibbles are loaded and transposed (a permute within each group of 4 rows, then
// 128-bit shuffles) into 8 vectors that each hold, for every row, 4 consecutive weights (k = 4g..4g+3) as unsigned
// nibbles. Per token the matching 4 activation bytes are broadcast to all lanes and maddubs gives, per row, 2 pair sums
// in 16-bit lanes; the 8 groups add up in 16 bits (at most 8 x 2 x 15 x 128 = 30,720 in magnitude: no overflow),
// pmaddwd adds the pairs, and 8 * sum(y) is subtracted: the block's exact integer dot product sum((q - 8) * y).
// Then, per row, sum += sumi * dx * dy in float, block after block: the steps of QuantDotScalar.DotQ4_0 (llama.cpp's
// generic ggml_vec_dot_q4_0_q8_0), so this path gives the scalar twin's bits for every row and token. The nibble
// transposition and the rows' scales are done once per group of 16 rows for all of a prompt's tokens
// (QuantType.DotPrompt). Per token, 16 rows x 1 block then cost about 21 vector operations where
// the horizontal kernel spends about 84 (pp128 about 120 -> 190 tokens/s with the arrangement per 8 tokens, 240 with it
// once per prompt). With one token the arrangement is not paid back, reading 16 rows at once from memory (a decode step
// measured 30 -> 58 ms), so fewer tokens keep Q4_0Avx512 (DotTile, DotMany, Dot). A matrix packed once at load
// (QuantDot.Q4_0Packed.cs) skips the arrangement and takes these per-token steps for any token count.
public static unsafe partial class QuantDot
{
    /// <summary>Tokens one pass of a lanes kernel takes (accumulators in registers).</summary>
    private const int LaneTokens = 8;

    /// <summary>Whether this machine's best path has the prompt kernels (<see cref="Quant.QuantType.DotPrompt"/>): AVX-512.</summary>
    public static bool HasPromptKernels => KernelPaths.Best == KernelPath.Avx512;

    /// <summary>Q4_0 weights with a prompt's Q8_0 activation rows (see <see cref="Quant.DotPromptRows"/>): the scalar twin's bits.</summary>
    public static void DotPromptQ4_0(ReadOnlySpan<byte> w, int wStride, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride)
    {
        int blocks = QuantDotPromptChecks.Check(w, wStride, rows, a, aStride, count, n, results, resultStride, 18, "Q4_0");
        if (rows == 0) return;
        fixed (byte* x = w, y = a)
        fixed (float* r = results)
            Q4_0Lanes(x, wStride, rows, y, aStride, count, blocks, r, resultStride);
    }

    /// <summary>
    /// <c>r[t * rStride + row] = DotQ4_0(row, token t)</c> for <paramref name="rows"/> weight rows
    /// <paramref name="wStride"/> bytes apart and <paramref name="count"/> Q8_0 activation rows <paramref name="aStride"/>
    /// bytes apart, each <paramref name="blocks"/> blocks long: the scalar twin's bits.
    /// </summary>
    private static void Q4_0Lanes(byte* x, nint wStride, int rows, byte* y, nint aStride, int count, int blocks, float* r, nint rStride)
    {
        if (rows == 0 || count == 0) return;
        int need = count * blocks;
        float[] dyBuffer = ScaleScratch(need);
        int[] sumBuffer = SumScratch(need);
        fixed (float* dy = dyBuffer)
        fixed (int* sy = sumBuffer)
        {
            ActivationScalesAndSums(y, aStride, count, blocks, dy, sy);
            byte** rp = stackalloc byte*[16];
            Vector512<byte>* prep = PrepScratch(blocks * 9);
            for (int r0 = 0; r0 < rows; r0 += 16)
            {
                int n = Math.Min(16, rows - r0);
                RowPointers(rp, x, wStride, r0, n);
                Q4_0Prep(rp, blocks, prep);
                for (int t = 0; t < count; t += LaneTokens)
                {
                    int c = Math.Min(LaneTokens, count - t);
                    byte* yt = y + t * aStride;
                    float* dyt = dy + t * blocks;
                    int* syt = sy + t * blocks;
                    float* rt = r + t * rStride + r0;
                    Q4_0Cores[c - 1]((byte*)prep, yt, aStride, dyt, syt, blocks, rt, rStride, n);
                }
            }
        }
    }

    [ThreadStatic] private static byte[]? _prepScratch;
    [ThreadStatic] private static nint _prepAligned;

    // One buffer per thread for a group of rows arranged in lanes, grown when a call needs more: pinned, and used from a
    // 64-byte boundary, so that no vector load of it spans two cache lines (a managed array of vectors is only 8-byte
    // aligned; where the GC put it moved the prompt speed by 10-20% from one process to the next).
    private static Vector512<byte>* PrepScratch(int vectors)
    {
        var s = _prepScratch;
        if (s is null || (s.Length - 64) / 64 < vectors)
        {
            _prepScratch = s = GC.AllocateUninitializedArray<byte>(Math.Max(vectors, 2048) * 64 + 64, pinned: true);
            fixed (byte* p = s) _prepAligned = ((nint)p + 63) & ~(nint)63;
        }
        return (Vector512<byte>*)_prepAligned;
    }

    // Pointers to the 16 rows from r0; lanes past the last of the n rows repeat it (their results are not written).
    private static void RowPointers(byte** rp, byte* x, nint wStride, int r0, int n)
    {
        for (int i = 0; i < 16; i++) rp[i] = x + (r0 + Math.Min(i, n - 1)) * wStride;
    }

    // Each row's offset from the first, for gathering one value per row.
    private static Vector512<int> RowOffsets(byte** rp)
    {
        Vector512<int> offsets = default;
        for (int i = 0; i < 16; i++) offsets = offsets.WithElement(i, (int)(rp[i] - rp[0]));
        return offsets;
    }

    // The 16 rows' block scales (the half at offset o of each row), widened; two gathers of 8 (AVX-512 gathers are not
    // exposed).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RowScales(byte** rp, Vector512<int> offsets, nint o)
    {
        Vector512<int> bits = Vector512.Create(Avx2.GatherVector256((int*)(rp[0] + o), offsets.GetLower(), 1),
            Avx2.GatherVector256((int*)(rp[0] + o), offsets.GetUpper(), 1));
        return HalfToSingle((bits << 16) >> 16);
    }

    // 16 rows' blocks arranged once for all the tokens: per block 8 vectors of nibbles (w_g: weights 4g..4g+3 of every
    // row, row i in lane i) and the rows' scales as floats.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q4_0Prep(byte** rp, int blocks, Vector512<byte>* prep)
    {
        Vector512<int> offsets = RowOffsets(rp);
        var low = Vector512.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++, prep += 9)
        {
            nint o = b * 18;
            TransposeNibbles(rp, o + 2, out var d0, out var d1, out var d2, out var d3);
            prep[0] = d0 & low; prep[1] = d1 & low; prep[2] = d2 & low; prep[3] = d3 & low;
            prep[4] = (d0.AsUInt16() >> 4).AsByte() & low; prep[5] = (d1.AsUInt16() >> 4).AsByte() & low;
            prep[6] = (d2.AsUInt16() >> 4).AsByte() & low; prep[7] = (d3.AsUInt16() >> 4).AsByte() & low;
            prep[8] = RowScales(rp, offsets, o).AsByte();
        }
    }

    // The 16 rows' 16 bytes at offset o (a block's nibbles): 4 rows per vector, then each row's 4 dwords spread over 4
    // vectors (d_j: dword j of every row, row i in lane i).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposeNibbles(byte** rp, nint o, out Vector512<byte> d0, out Vector512<byte> d1, out Vector512<byte> d2, out Vector512<byte> d3)
    {
        var within = Vector512.Create(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        Vector512<int> z0 = Avx512F.PermuteVar16x32(Vector512.Create(Vector256.Create(Vector128.Load(rp[0] + o), Vector128.Load(rp[1] + o)), Vector256.Create(Vector128.Load(rp[2] + o), Vector128.Load(rp[3] + o))).AsInt32(), within);
        Vector512<int> z1 = Avx512F.PermuteVar16x32(Vector512.Create(Vector256.Create(Vector128.Load(rp[4] + o), Vector128.Load(rp[5] + o)), Vector256.Create(Vector128.Load(rp[6] + o), Vector128.Load(rp[7] + o))).AsInt32(), within);
        Vector512<int> z2 = Avx512F.PermuteVar16x32(Vector512.Create(Vector256.Create(Vector128.Load(rp[8] + o), Vector128.Load(rp[9] + o)), Vector256.Create(Vector128.Load(rp[10] + o), Vector128.Load(rp[11] + o))).AsInt32(), within);
        Vector512<int> z3 = Avx512F.PermuteVar16x32(Vector512.Create(Vector256.Create(Vector128.Load(rp[12] + o), Vector128.Load(rp[13] + o)), Vector256.Create(Vector128.Load(rp[14] + o), Vector128.Load(rp[15] + o))).AsInt32(), within);
        Vector512<int> p01 = Avx512F.Shuffle4x128(z0, z1, 0x44), p23 = Avx512F.Shuffle4x128(z2, z3, 0x44);
        Vector512<int> q01 = Avx512F.Shuffle4x128(z0, z1, 0xEE), q23 = Avx512F.Shuffle4x128(z2, z3, 0xEE);
        d0 = Avx512F.Shuffle4x128(p01, p23, 0x88).AsByte();
        d1 = Avx512F.Shuffle4x128(p01, p23, 0xDD).AsByte();
        d2 = Avx512F.Shuffle4x128(q01, q23, 0x88).AsByte();
        d3 = Avx512F.Shuffle4x128(q01, q23, 0xDD).AsByte();
    }

    // The kernel for each token count, 1 to 8.
    private static readonly delegate*<byte*, byte*, nint, float*, int*, int, float*, nint, int, void>[] Q4_0Cores =
    [
        &Q4_0LanesCore<Tokens1, PreparedBlocks>, &Q4_0LanesCore<Tokens2, PreparedBlocks>, &Q4_0LanesCore<Tokens3, PreparedBlocks>,
        &Q4_0LanesCore<Tokens4, PreparedBlocks>, &Q4_0LanesCore<Tokens5, PreparedBlocks>, &Q4_0LanesCore<Tokens6, PreparedBlocks>,
        &Q4_0LanesCore<Tokens7, PreparedBlocks>, &Q4_0LanesCore<Tokens8, PreparedBlocks>,
    ];

    [ThreadStatic] private static int[]? _sumScratch;

    // One buffer per thread for the activations' block sums, grown when a call needs more.
    private static int[] SumScratch(int ints)
    {
        var s = _sumScratch;
        if (s is null || s.Length < ints) _sumScratch = s = new int[Math.Max(ints, 4096)];
        return s;
    }

    // The token count as a type: each count gets its own compiled kernel with the count a constant.
    private interface ITokenCount { static abstract int Value { get; } }
    private struct Tokens1 : ITokenCount { public static int Value => 1; }
    private struct Tokens2 : ITokenCount { public static int Value => 2; }
    private struct Tokens3 : ITokenCount { public static int Value => 3; }
    private struct Tokens4 : ITokenCount { public static int Value => 4; }
    private struct Tokens5 : ITokenCount { public static int Value => 5; }
    private struct Tokens6 : ITokenCount { public static int Value => 6; }
    private struct Tokens7 : ITokenCount { public static int Value => 7; }
    private struct Tokens8 : ITokenCount { public static int Value => 8; }

    /// <summary>Where a lanes kernel reads its blocks: per block 8 vectors of nibbles and the 16 rows' scales.</summary>
    private interface IQ4_0Blocks
    {
        /// <summary>
        /// Block <paramref name="b"/> of <paramref name="blocks"/> at <paramref name="source"/>: w_g holds weights 4g..4g+3
        /// (g below 4) or 16+4(g-4).. (g from 4) of every row as unsigned nibbles, row i in lane i; dx the rows' scales.
        /// </summary>
        static abstract void Load(byte* source, int b, int blocks, out Vector512<byte> w0, out Vector512<byte> w1, out Vector512<byte> w2,
            out Vector512<byte> w3, out Vector512<byte> w4, out Vector512<byte> w5, out Vector512<byte> w6, out Vector512<byte> w7,
            out Vector512<float> dx);
    }

    /// <summary>Blocks arranged for a prompt (<see cref="Q4_0Prep"/>): 9 vectors each.</summary>
    private struct PreparedBlocks : IQ4_0Blocks
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Load(byte* source, int b, int blocks, out Vector512<byte> w0, out Vector512<byte> w1, out Vector512<byte> w2,
            out Vector512<byte> w3, out Vector512<byte> w4, out Vector512<byte> w5, out Vector512<byte> w6, out Vector512<byte> w7,
            out Vector512<float> dx)
        {
            var prep = (Vector512<byte>*)source + b * 9;
            w0 = prep[0]; w1 = prep[1]; w2 = prep[2]; w3 = prep[3]; w4 = prep[4]; w5 = prep[5]; w6 = prep[6]; w7 = prep[7];
            dx = prep[8].AsSingle();
        }
    }

    // The lanes kernel for 1 to 8 tokens (TCount) over the 16 rows of a group whose blocks TBlocks reads.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q4_0LanesCore<TCount, TBlocks>(byte* source, byte* y, nint aStride, float* dy, int* sy, int blocks, float* r, nint rStride, int n)
        where TCount : struct, ITokenCount where TBlocks : struct, IQ4_0Blocks
    {
        int count = TCount.Value;
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default, acc4 = default, acc5 = default, acc6 = default, acc7 = default;
        byte* y1 = y + aStride, y2 = y1 + aStride, y3 = y2 + aStride, y4 = y3 + aStride, y5 = y4 + aStride, y6 = y5 + aStride, y7 = y6 + aStride;
        for (int b = 0; b < blocks; b++)
        {
            TBlocks.Load(source, b, blocks, out var w0, out var w1, out var w2, out var w3, out var w4, out var w5, out var w6, out var w7, out var dx);
            nint yo = b * 34;
            acc0 = Q4_0LanesToken(acc0, w0, w1, w2, w3, w4, w5, w6, w7, y + yo, dx, dy[b], sy[b]);
            if (count > 1) acc1 = Q4_0LanesToken(acc1, w0, w1, w2, w3, w4, w5, w6, w7, y1 + yo, dx, dy[blocks + b], sy[blocks + b]);
            if (count > 2) acc2 = Q4_0LanesToken(acc2, w0, w1, w2, w3, w4, w5, w6, w7, y2 + yo, dx, dy[2 * blocks + b], sy[2 * blocks + b]);
            if (count > 3) acc3 = Q4_0LanesToken(acc3, w0, w1, w2, w3, w4, w5, w6, w7, y3 + yo, dx, dy[3 * blocks + b], sy[3 * blocks + b]);
            if (count > 4) acc4 = Q4_0LanesToken(acc4, w0, w1, w2, w3, w4, w5, w6, w7, y4 + yo, dx, dy[4 * blocks + b], sy[4 * blocks + b]);
            if (count > 5) acc5 = Q4_0LanesToken(acc5, w0, w1, w2, w3, w4, w5, w6, w7, y5 + yo, dx, dy[5 * blocks + b], sy[5 * blocks + b]);
            if (count > 6) acc6 = Q4_0LanesToken(acc6, w0, w1, w2, w3, w4, w5, w6, w7, y6 + yo, dx, dy[6 * blocks + b], sy[6 * blocks + b]);
            if (count > 7) acc7 = Q4_0LanesToken(acc7, w0, w1, w2, w3, w4, w5, w6, w7, y7 + yo, dx, dy[7 * blocks + b], sy[7 * blocks + b]);
        }
        StoreTokens<TCount>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, r, rStride, n);
    }

    /// <summary>One token's block for 16 rows: the exact integer dot products, then <c>sum += sumi * dx * dy</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q4_0LanesToken(Vector512<float> acc, Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2,
        Vector512<byte> w3, Vector512<byte> w4, Vector512<byte> w5, Vector512<byte> w6, Vector512<byte> w7, byte* y, Vector512<float> dx,
        float dy, int sy8)
    {
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(w0, Vector512.Create(*(int*)(y + 2)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w1, Vector512.Create(*(int*)(y + 6)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w2, Vector512.Create(*(int*)(y + 10)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w3, Vector512.Create(*(int*)(y + 14)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w4, Vector512.Create(*(int*)(y + 18)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w5, Vector512.Create(*(int*)(y + 22)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w6, Vector512.Create(*(int*)(y + 26)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w7, Vector512.Create(*(int*)(y + 30)).AsSByte());
        Vector512<int> sumi = Avx512BW.MultiplyAddAdjacent(p, Vector512.Create((short)1)) - Vector512.Create(sy8);
        return acc + Avx512F.ConvertToVector512Single(sumi) * dx * Vector512.Create(dy);
    }

    /// <summary>The first <paramref name="n"/> lanes of each of the first TCount accumulators, token t's to <c>r + t * rStride</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTokens<TCount>(Vector512<float> acc0, Vector512<float> acc1, Vector512<float> acc2, Vector512<float> acc3,
        Vector512<float> acc4, Vector512<float> acc5, Vector512<float> acc6, Vector512<float> acc7, float* r, nint rStride, int n)
        where TCount : struct, ITokenCount
    {
        int count = TCount.Value;
        StoreLanes(acc0, r, n);
        if (count > 1) StoreLanes(acc1, r + rStride, n);
        if (count > 2) StoreLanes(acc2, r + 2 * rStride, n);
        if (count > 3) StoreLanes(acc3, r + 3 * rStride, n);
        if (count > 4) StoreLanes(acc4, r + 4 * rStride, n);
        if (count > 5) StoreLanes(acc5, r + 5 * rStride, n);
        if (count > 6) StoreLanes(acc6, r + 6 * rStride, n);
        if (count > 7) StoreLanes(acc7, r + 7 * rStride, n);
    }

    /// <summary>The first <paramref name="n"/> lanes of <paramref name="v"/> to <paramref name="r"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreLanes(Vector512<float> v, float* r, int n)
    {
        if (n == 16) Vector512.Store(v, r);
        else for (int i = 0; i < n; i++) r[i] = v.GetElement(i);
    }
}

/// <summary>Argument checks of the prompt kernels (<see cref="Quant.DotPromptRows"/>).</summary>
internal static class QuantDotPromptChecks
{
    /// <summary>Checks the shapes of a Q8_0-activation prompt product of a 32-weight block type; returns the block count.</summary>
    public static int Check(ReadOnlySpan<byte> w, int wStride, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride, int weightBlockBytes, string typeName)
    {
        if (!QuantDot.HasPromptKernels) throw new PlatformNotSupportedException("the prompt kernels are the AVX-512 path's");
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfLessThan(resultStride, rows);
        if (n % 32 != 0) throw new ArgumentException($"{n} values are not a whole number of {typeName} blocks of 32", nameof(n));
        int blocks = n / 32;
        if (wStride < (long)blocks * weightBlockBytes) throw new ArgumentException($"{typeName} rows of {blocks} blocks need {(long)blocks * weightBlockBytes} bytes, the stride is {wStride}", nameof(wStride));
        if (aStride < (long)blocks * 34) throw new ArgumentException($"Q8_0 rows of {blocks} blocks need {(long)blocks * 34} bytes, the stride is {aStride}", nameof(aStride));
        if (rows > 0 && (long)wStride * (rows - 1) + (long)blocks * weightBlockBytes > w.Length)
            throw new ArgumentException($"{rows} weight rows of {wStride} bytes need more than the span's {w.Length}", nameof(w));
        if ((long)aStride * (count - 1) + (long)blocks * 34 > a.Length)
            throw new ArgumentException($"{count} activation rows of {aStride} bytes need more than the span's {a.Length}", nameof(a));
        if (rows > 0 && (long)(count - 1) * resultStride + rows > results.Length)
            throw new ArgumentException($"the results span holds {results.Length} floats, {(long)(count - 1) * resultStride + rows} needed", nameof(results));
        return blocks;
    }
}
