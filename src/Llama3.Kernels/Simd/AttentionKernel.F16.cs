using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Llama3.Kernels.Quant;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Attention over an F16 cache (llama.cpp's default cache type): the keys and values of a block of positions are
// widened exactly (HalfToSingle) into a float block that stays in L1, then the float kernels run on the block (the
// blocks are AttentionKernel.Tokens.cs's; one token is a tile of one). The
// float kernels' results do not depend on the blocking (each score is its own dot product, with blocks a multiple of
// the 4 positions Scores512 takes together; the weighted sums continue their accumulators from block to block), so an
// F16 cache gives, bit for bit, what a float cache holding the same rounded keys and values gives. Widening each half
// once per block, not once per query head that reads it, keeps the cost of the conversion below that of the reads it
// saves: the cache streams half the bytes of a float one.
public static partial class AttentionKernel
{
    /// <summary>Floats in one widened block (16 KiB: 64 positions of head size 64, 32 of 128; a multiple of 4 positions).</summary>
    private const int BlockFloats = 4096;

    /// <summary>
    /// <see cref="Scores(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, int, int, int, float, Span{float}, int)"/>
    /// over keys stored as halves: the bits of the float kernel on the keys widened.
    /// </summary>
    public static void Scores(ReadOnlySpan<float> q, int group, int hd, ReadOnlySpan<Half> keys, int kvStride, int kvOffset,
        int positions, float scale, Span<float> scores, int scoresStride)
    {
        Check(q, group, hd, keys.Length, kvStride, kvOffset, positions, scores, scoresStride);
        ScoresTokens(q, group * hd, [positions], group, hd, [], keys, f16: true, kvStride, kvOffset, scale, scores, (group - 1) * scoresStride + positions, scoresStride);
    }

    /// <summary>The scalar twin of the F16 <see cref="Scores(ReadOnlySpan{float}, int, int, ReadOnlySpan{Half}, int, int, int, float, Span{float}, int)"/>.</summary>
    public static void ScoresScalar(ReadOnlySpan<float> q, int group, int hd, ReadOnlySpan<Half> keys, int kvStride, int kvOffset,
        int positions, float scale, Span<float> scores, int scoresStride) =>
        ScoresScalar<Half, FromHalf>(q, group, hd, keys, kvStride, kvOffset, positions, scale, scores, scoresStride);

    /// <summary>
    /// <see cref="WeightedSum(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, int, int, int, int, Span{float})"/>
    /// over values stored as halves: the bits of the float kernel on the values widened.
    /// </summary>
    public static void WeightedSum(ReadOnlySpan<float> scores, int scoresStride, int group, ReadOnlySpan<Half> values, int kvStride,
        int kvOffset, int positions, int hd, Span<float> output)
    {
        Check(output, group, hd, values.Length, kvStride, kvOffset, positions, scores, scoresStride);
        WeightedSumTokens(scores, (group - 1) * scoresStride + positions, scoresStride, [positions], group, [], values, f16: true, kvStride, kvOffset, hd,
            output, group * hd);
    }

    /// <summary>The scalar twin of the F16 <see cref="WeightedSum(ReadOnlySpan{float}, int, int, ReadOnlySpan{Half}, int, int, int, int, Span{float})"/>.</summary>
    public static void WeightedSumScalar(ReadOnlySpan<float> scores, int scoresStride, int group, ReadOnlySpan<Half> values, int kvStride,
        int kvOffset, int positions, int hd, Span<float> output) =>
        WeightedSumScalar<Half, FromHalf>(scores, scoresStride, group, values, kvStride, kvOffset, positions, hd, output);

    /// <summary>Positions per widened block: a multiple of 4 (see the file's comment).</summary>
    private static int BlockRows(int hd) => BlockFloats / hd / 4 * 4;

    /// <summary>
    /// <paramref name="rows"/> rows of <paramref name="hd"/> halves, <paramref name="stride"/> apart from
    /// <paramref name="start"/>, widened exactly into consecutive floats; the source 16 rows ahead is prefetched.
    /// </summary>
    private static unsafe void WidenRows(ReadOnlySpan<Half> source, int start, int stride, int rows, int hd, Span<float> destination)
    {
        fixed (Half* s0 = source)
        fixed (float* d0 = destination)
        {
            short* s = (short*)s0 + start;
            for (int r = 0; r < rows; r++, s += stride)
            {
                float* d = d0 + r * hd;
                if (Sse.IsSupported && start + (long)(r + 16) * stride + hd <= source.Length)
                    for (int b = 0; b < hd * sizeof(short); b += 64) Sse.Prefetch0((byte*)(s + 16 * stride) + b);
                int i = 0;
                if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
                    for (; i + 16 <= hd; i += 16)
                        HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load(s + i))).Store(d + i);
                if (Avx2.IsSupported)
                    for (; i + 8 <= hd; i += 8)
                        HalfToSingle(Avx2.ConvertToVector256Int32(Vector128.Load(s + i))).Store(d + i);
                for (; i < hd; i++)
                    d[i] = Float16.HalfToSingle((ushort)s[i]);
            }
        }
    }
}
