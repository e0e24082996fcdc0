using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Q4_0 matrices packed once, at load, for the lanes kernel (QuantDot.Q4_0Lanes.cs): 16 rows to a group, one row per
// 32-bit lane, so that decode and the server's few-token steps get the lanes kernel's economy (a block's scales, integer
// sums and float steps done for 16 rows in one vector each) without arranging the rows on every call, which a single
// token does not pay back.
//
// A group holds its blocks in pairs: for each block, 4 vectors of 64 bytes, vector k holding in lane i bytes 4k..4k+3 of
// row i's 16 bytes of nibbles (low nibbles: weights 4k..4k+3; high nibbles: weights 16+4k..16+4k+3); after a pair's
// 512 bytes of nibbles, its two blocks' 16 scales each as halves (64 bytes). A last, unpaired block has its 32 bytes of
// scales after its 256 of nibbles. That is 16 x 18 bytes per block, the size of the 16 rows it replaces, so the packed
// copy takes the place of the file's bytes byte for byte, and it is one stream of whole cache lines: with the scales
// in a second stream after all the nibbles, a core read it 1.5x slower from memory (probe, side by side). The last
// group repeats its last row in the lanes past the matrix's rows (their results are never written).
//
// Per block the kernel splits the 4 vectors into the 8 vectors of 4 nibbles the lanes kernel takes (12 operations) and
// widens the scales (6), then runs the lanes kernel's per-token steps (Q4_0LanesToken): the scalar twin's bits
// (QuantDotScalar.DotQ4_0) for every row and token, whatever the token count.
public static unsafe partial class QuantDot
{
    /// <summary>How far ahead of the nibbles being read the packed kernel prefetches.</summary>
    private const int PrefetchBytes = 4096;

    /// <summary>Rows per group of a packed Q4_0 matrix.</summary>
    public const int PackedRows = 16;

    /// <summary>
    /// Where block b's vectors start in a packed group whose blocks are held in pairs, each block's vectors
    /// (<paramref name="vectorBytes"/>) and then the pair's two sets of 16 scales as halves (a last, unpaired block has its
    /// scales after its vectors).
    /// </summary>
    private static nint PairedVectors(int b, int vectorBytes) => (nint)(b >> 1) * (2 * (vectorBytes + 32)) + (b & 1) * vectorBytes;

    /// <summary>Where block b's 16 scales start in such a group of <paramref name="blocks"/> blocks.</summary>
    private static nint PairedScales(int b, int blocks, int vectorBytes) =>
        (nint)(b >> 1) * (2 * (vectorBytes + 32)) + ((b | 1) < blocks ? 2 * vectorBytes + (b & 1) * 32 : vectorBytes);

    private static nint PackedNibbles(int b) => PairedVectors(b, 256);

    private static nint PackedScales(int b, int blocks) => PairedScales(b, blocks, 256);

    /// <summary>Bytes a packed Q4_0 matrix of <paramref name="rows"/> rows of <paramref name="n"/> values takes.</summary>
    public static long PackedQ4_0Bytes(long rows, int n) => PackedBytes(rows, n, 32, 18, "Q4_0");

    /// <summary>Bytes a packed matrix takes: its rows' bytes, the last group of 16 padded.</summary>
    private static long PackedBytes(long rows, int n, int blockSize, int blockBytes, string typeName)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (n % blockSize != 0) throw new ArgumentException($"{n} values are not a whole number of {typeName} blocks of {blockSize}", nameof(n));
        return (rows + PackedRows - 1) / PackedRows * PackedRows * (n / blockSize * (long)blockBytes);
    }

    /// <summary>The argument checks of a packing; returns the blocks per row.</summary>
    private static int PackChecks(ReadOnlySpan<byte> w, int wStride, int rows, int n, Span<byte> packed, int blockSize, int blockBytes, string typeName)
    {
        long need = PackedBytes(rows, n, blockSize, blockBytes, typeName);
        int blocks = n / blockSize;
        if (wStride < (long)blocks * blockBytes)
            throw new ArgumentException($"{typeName} rows of {blocks} blocks need {(long)blocks * blockBytes} bytes, the stride is {wStride}", nameof(wStride));
        if (rows > 0 && (long)wStride * (rows - 1) + (long)blocks * blockBytes > w.Length)
            throw new ArgumentException($"{rows} weight rows of {wStride} bytes need more than the span's {w.Length}", nameof(w));
        if (packed.Length < need) throw new ArgumentException($"{rows} packed rows need {need} bytes, the span holds {packed.Length}", nameof(packed));
        return blocks;
    }

    /// <summary>
    /// Packs <paramref name="rows"/> Q4_0 rows of <paramref name="n"/> values, <paramref name="wStride"/> bytes apart, into
    /// <paramref name="packed"/> (<see cref="PackedQ4_0Bytes"/> bytes) for <see cref="DotPackedQ4_0"/>. A matrix may be
    /// packed in slices whose first rows are multiples of <see cref="PackedRows"/>, each into its part of the whole.
    /// </summary>
    public static void PackQ4_0(ReadOnlySpan<byte> w, int wStride, int rows, int n, Span<byte> packed)
    {
        int blocks = PackChecks(w, wStride, rows, n, packed, 32, 18, "Q4_0");
        if (rows == 0 || blocks == 0) return;
        fixed (byte* x = w, p = packed)
        {
            long groupBytes = PackedRows * (blocks * 18L);
            if (HasPromptKernels)
            {
                // The prompt kernel's transposition, stored before the nibbles are split; the scales copied.
                byte** rp = stackalloc byte*[PackedRows];
                for (int g = 0; g * PackedRows < rows; g++)
                {
                    RowPointers(rp, x, wStride, g * PackedRows, Math.Min(PackedRows, rows - g * PackedRows));
                    byte* group = p + g * groupBytes;
                    for (int b = 0; b < blocks; b++)
                    {
                        byte* nibbles = group + PackedNibbles(b);
                        ushort* scales = (ushort*)(group + PackedScales(b, blocks));
                        TransposeNibbles(rp, b * 18 + 2, out var d0, out var d1, out var d2, out var d3);
                        d0.Store(nibbles); d1.Store(nibbles + 64); d2.Store(nibbles + 128); d3.Store(nibbles + 192);
                        for (int i = 0; i < PackedRows; i++) scales[i] = *(ushort*)(rp[i] + b * 18);
                    }
                }
                return;
            }
            PackLanes(x, wStride, rows, blocks, 18, p, &Q4_0ToLane);
        }
    }

    // One row's block b into lane i of its packed group: the scales, then the nibbles' 4 dwords.
    private static void Q4_0ToLane(byte* block, byte* group, int b, int blocks, int i)
    {
        ((ushort*)(group + PackedScales(b, blocks)))[i] = *(ushort*)block;
        for (int k = 0; k < 4; k++) ((uint*)(group + PackedNibbles(b) + k * 64))[i] = *(uint*)(block + 2 + 4 * k);
    }

    /// <summary>
    /// The scalar packing, for any packed layout: each row's blocks (<paramref name="blockBytes"/> apart) copied by
    /// <paramref name="toLane"/> into its lane of its group; lanes past the last row repeat it.
    /// </summary>
    private static void PackLanes(byte* x, nint wStride, int rows, int blocks, int blockBytes, byte* p,
        delegate*<byte*, byte*, int, int, int, void> toLane)
    {
        long groupBytes = PackedRows * ((long)blocks * blockBytes);
        for (int g = 0; g * PackedRows < rows; g++)
            for (int i = 0; i < PackedRows; i++)
            {
                byte* row = x + Math.Min(g * PackedRows + i, rows - 1) * wStride;
                for (int b = 0; b < blocks; b++) toLane(row + b * blockBytes, p + g * groupBytes, b, blocks, i);
            }
    }

    /// <summary>
    /// <c>results[t * resultStride + row] = DotQ4_0(row, token t)</c> for the <paramref name="rows"/> rows of a packed
    /// Q4_0 matrix (<see cref="PackQ4_0"/>) and <paramref name="count"/> Q8_0 activation rows <paramref name="aStride"/>
    /// bytes apart: the scalar twin's bits. AVX-512 only (<see cref="HasPromptKernels"/>).
    /// </summary>
    public static void DotPackedQ4_0(ReadOnlySpan<byte> packed, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride)
    {
        long need = PackedQ4_0Bytes(rows, n);
        if (packed.Length < need) throw new ArgumentException($"{rows} packed rows need {need} bytes, the span holds {packed.Length}", nameof(packed));
        // The packed groups hold the rows' bytes, so the plain checks with the rows' own stride cover them too.
        int blocks = QuantDotPromptChecks.Check(packed, n / 32 * 18, rows, a, aStride, count, n, results, resultStride, 18, "Q4_0");
        if (rows == 0 || blocks == 0) return;
        fixed (byte* x = packed, y = a)
        fixed (float* r = results)
            Q4_0PackedLanes(x, rows, y, aStride, count, blocks, r, resultStride);
    }

    private static void Q4_0PackedLanes(byte* x, int rows, byte* y, nint aStride, int count, int blocks, float* r, nint rStride)
    {
        int need = count * blocks;
        float[] dyBuffer = ScaleScratch(need);
        int[] sumBuffer = SumScratch(need);
        fixed (float* dy = dyBuffer)
        fixed (int* sy = sumBuffer)
        {
            ActivationScalesAndSums(y, aStride, count, blocks, dy, sy);
            long groupBytes = PackedRows * (blocks * 18L);
            if (count <= LaneTokens)
            {
                // One pass per group: the nibbles are split in registers as they are read.
                var core = Q4_0PackedCores[count - 1];
                for (int r0 = 0; r0 < rows; r0 += PackedRows, x += groupBytes)
                    core(x, y, aStride, dy, sy, blocks, r + r0, rStride, Math.Min(PackedRows, rows - r0));
                return;
            }
            // A prompt: each group split once into the prompt kernel's arrangement, then read from cache by every pass of
            // 8 tokens.
            Vector512<byte>* prep = PrepScratch(blocks * 9);
            for (int r0 = 0; r0 < rows; r0 += PackedRows, x += groupBytes)
            {
                int n = Math.Min(PackedRows, rows - r0);
                Q4_0Unpack(x, blocks, prep);
                for (int t = 0; t < count; t += LaneTokens)
                {
                    int c = Math.Min(LaneTokens, count - t);
                    Q4_0Cores[c - 1]((byte*)prep, y + t * aStride, aStride, dy + t * blocks, sy + t * blocks, blocks, r + t * rStride + r0, rStride, n);
                }
            }
        }
    }

    // A packed group in the prompt kernel's arrangement (Q4_0Prep's): per block 8 vectors of nibbles and the scales as floats.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q4_0Unpack(byte* group, int blocks, Vector512<byte>* prep)
    {
        var low = Vector512.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++, prep += 9)
        {
            byte* nibbles = group + PackedNibbles(b);
            short* scales = (short*)(group + PackedScales(b, blocks));
            Vector512<byte> d0 = Vector512.Load(nibbles), d1 = Vector512.Load(nibbles + 64);
            Vector512<byte> d2 = Vector512.Load(nibbles + 128), d3 = Vector512.Load(nibbles + 192);
            prep[0] = d0 & low; prep[1] = d1 & low; prep[2] = d2 & low; prep[3] = d3 & low;
            prep[4] = (d0.AsUInt16() >> 4).AsByte() & low; prep[5] = (d1.AsUInt16() >> 4).AsByte() & low;
            prep[6] = (d2.AsUInt16() >> 4).AsByte() & low; prep[7] = (d3.AsUInt16() >> 4).AsByte() & low;
            prep[8] = HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load(scales))).AsByte();
        }
    }

    // What depends on the activations alone, once per call: their scales as floats and 8 * sum(q) per block.
    private static void ActivationScalesAndSums(byte* y, nint aStride, int count, int blocks, float* dy, int* sy)
    {
        for (int t = 0; t < count; t++)
        {
            byte* yt = y + t * aStride;
            for (int b = 0; b < blocks; b++, yt += 34)
            {
                dy[t * blocks + b] = Half(yt);
                sy[t * blocks + b] = 8 * Vector512.Sum(Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)yt + 2)));
            }
        }
    }

    // The kernel for each token count, 1 to 8.
    private static readonly delegate*<byte*, byte*, nint, float*, int*, int, float*, nint, int, void>[] Q4_0PackedCores =
    [
        &Q4_0LanesCore<Tokens1, PackedBlocks>, &Q4_0LanesCore<Tokens2, PackedBlocks>, &Q4_0LanesCore<Tokens3, PackedBlocks>,
        &Q4_0LanesCore<Tokens4, PackedBlocks>, &Q4_0LanesCore<Tokens5, PackedBlocks>, &Q4_0LanesCore<Tokens6, PackedBlocks>,
        &Q4_0LanesCore<Tokens7, PackedBlocks>, &Q4_0LanesCore<Tokens8, PackedBlocks>,
    ];

    /// <summary>A packed group's blocks, split as they are read.</summary>
    private struct PackedBlocks : IQ4_0Blocks
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Load(byte* group, int b, int blocks, out Vector512<byte> w0, out Vector512<byte> w1, out Vector512<byte> w2,
            out Vector512<byte> w3, out Vector512<byte> w4, out Vector512<byte> w5, out Vector512<byte> w6, out Vector512<byte> w7,
            out Vector512<float> dx)
        {
            byte* nibbles = group + PackedNibbles(b);
            short* scales = (short*)(group + PackedScales(b, blocks));
            // 4 KiB ahead: the hardware prefetcher alone leaves this loop short of the memory's speed (decode about 10%
            // faster with it, side by side).
            byte* ahead = group + b * 288L + PrefetchBytes; // about where the stream will be, a block's 4.5 lines
            Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192); Sse.Prefetch0(ahead + 256);
            var low = Vector512.Create((byte)0x0F);
            Vector512<byte> d0 = Vector512.Load(nibbles), d1 = Vector512.Load(nibbles + 64);
            Vector512<byte> d2 = Vector512.Load(nibbles + 128), d3 = Vector512.Load(nibbles + 192);
            w0 = d0 & low; w1 = d1 & low; w2 = d2 & low; w3 = d3 & low;
            w4 = (d0.AsUInt16() >> 4).AsByte() & low; w5 = (d1.AsUInt16() >> 4).AsByte() & low;
            w6 = (d2.AsUInt16() >> 4).AsByte() & low; w7 = (d3.AsUInt16() >> 4).AsByte() & low;
            dx = HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load(scales)));
        }
    }
}
