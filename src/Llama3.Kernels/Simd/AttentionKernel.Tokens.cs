using System.Runtime.Intrinsics;

namespace Llama3.Kernels.Simd;

// Prompt attention tiled over tokens: several query tokens of one sequence meet one KV head's cache a block of
// positions at a time (64 positions of head size 64, 32 of 128: 16 KiB), so each block of keys and values is read
// from memory once for all of them instead of once per token. Each token's scores and weighted sums are the float
// kernels' on the blocks, which give the bits of one call over all its positions (see AttentionKernel.F16.cs), so a
// token's attention has the same bits tiled or not. The cache rows of a head are contiguous here (stride head_dim).
// A single token over a float cache (decode) skips the blocks: one call of the float kernels over all its positions.
public static partial class AttentionKernel
{
    /// <summary>
    /// <see cref="Scores(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, int, int, int, float, Span{float}, int)"/>
    /// for tokens <c>i &lt; positions.Length</c> against one KV head's keys (<paramref name="hd"/> floats per position,
    /// one after another): token i's queries start at <c>i * qStride</c> and it sees <c>positions[i]</c> positions; its
    /// scores start at <c>i * tokenStride</c>, query head g's at <c>g * scoresStride</c> after that.
    /// </summary>
    public static void Scores(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<int> positions, int group, int hd, ReadOnlySpan<float> keys,
        float scale, Span<float> scores, int tokenStride, int scoresStride) =>
        ScoresTokens(q, qStride, positions, group, hd, keys, [], f16: false, hd, 0, scale, scores, tokenStride, scoresStride);

    /// <summary>The F16-cache twin of <see cref="Scores(ReadOnlySpan{float}, int, ReadOnlySpan{int}, int, int, ReadOnlySpan{float}, float, Span{float}, int, int)"/>.</summary>
    public static void Scores(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<int> positions, int group, int hd, ReadOnlySpan<Half> keys,
        float scale, Span<float> scores, int tokenStride, int scoresStride) =>
        ScoresTokens(q, qStride, positions, group, hd, [], keys, f16: true, hd, 0, scale, scores, tokenStride, scoresStride);

    /// <summary>
    /// <see cref="WeightedSum(ReadOnlySpan{float}, int, int, ReadOnlySpan{float}, int, int, int, int, Span{float})"/>
    /// for tokens <c>i &lt; positions.Length</c>: token i's weights start at <c>i * tokenStride</c> (query head g's at
    /// <c>g * scoresStride</c> after that) and its outputs at <c>i * outputStride</c>.
    /// </summary>
    public static void WeightedSum(ReadOnlySpan<float> scores, int tokenStride, int scoresStride, ReadOnlySpan<int> positions, int group,
        ReadOnlySpan<float> values, int hd, Span<float> output, int outputStride) =>
        WeightedSumTokens(scores, tokenStride, scoresStride, positions, group, values, [], f16: false, hd, 0, hd, output, outputStride);

    /// <summary>The F16-cache twin of <see cref="WeightedSum(ReadOnlySpan{float}, int, int, ReadOnlySpan{int}, int, ReadOnlySpan{float}, int, Span{float}, int)"/>.</summary>
    public static void WeightedSum(ReadOnlySpan<float> scores, int tokenStride, int scoresStride, ReadOnlySpan<int> positions, int group,
        ReadOnlySpan<Half> values, int hd, Span<float> output, int outputStride) =>
        WeightedSumTokens(scores, tokenStride, scoresStride, positions, group, [], values, f16: true, hd, 0, hd, output, outputStride);

    // The tiles; keys (or keys16, for an F16 cache) are rows kvStride apart, this head's kvOffset into each.
    private static void ScoresTokens(ReadOnlySpan<float> q, int qStride, ReadOnlySpan<int> positions, int group, int hd,
        ReadOnlySpan<float> keys, ReadOnlySpan<Half> keys16, bool f16, int kvStride, int kvOffset, float scale, Span<float> scores, int tokenStride,
        int scoresStride)
    {
        int most = CheckTokens(q.Length, qStride, group * hd, positions, hd, f16 ? keys16.Length : keys.Length, kvStride, kvOffset,
            scores.Length, tokenStride, group, scoresStride);
        bool vector = Vector256.IsHardwareAccelerated && hd % 8 == 0 && hd <= BlockFloats / 4;
        Span<float> widened = f16 && vector ? stackalloc float[BlockFloats] : [];
        // Without vectors, and for one token over a float cache, one block of all the positions (nothing to share).
        int rows = vector && (f16 || positions.Length > 1) ? BlockRows(hd) : most;
        for (int j0 = 0; j0 < most; j0 += rows)
        {
            int m = Math.Min(rows, most - j0);
            if (f16 && vector) WidenRows(keys16, j0 * kvStride + kvOffset, kvStride, m, hd, widened);
            for (int i = 0; i < positions.Length; i++)
            {
                if (positions[i] <= j0) continue;
                var qi = q.Slice(i * qStride, group * hd);
                var si = scores[(i * tokenStride + j0)..];
                int mi = Math.Min(m, positions[i] - j0);
                if (f16 && vector) Scores(qi, group, hd, widened, hd, 0, mi, scale, si, scoresStride);
                else if (f16) ScoresScalar<Half, FromHalf>(qi, group, hd, keys16, kvStride, kvOffset, mi, scale, si, scoresStride);
                else Scores(qi, group, hd, keys[(j0 * kvStride)..], kvStride, kvOffset, mi, scale, si, scoresStride);
            }
        }
    }

    private static void WeightedSumTokens(ReadOnlySpan<float> scores, int tokenStride, int scoresStride, ReadOnlySpan<int> positions, int group,
        ReadOnlySpan<float> values, ReadOnlySpan<Half> values16, bool f16, int kvStride, int kvOffset, int hd, Span<float> output, int outputStride)
    {
        int most = CheckTokens(output.Length, outputStride, group * hd, positions, hd, f16 ? values16.Length : values.Length, kvStride, kvOffset,
            scores.Length, tokenStride, group, scoresStride);
        bool vector = Vector256.IsHardwareAccelerated && hd % 8 == 0 && hd <= 256;
        Span<float> widened = f16 && vector ? stackalloc float[BlockFloats] : [];
        int rows = vector && (f16 || positions.Length > 1) ? BlockRows(hd) : most;
        for (int j0 = 0; j0 < most; j0 += rows)
        {
            int m = Math.Min(rows, most - j0);
            if (f16 && vector) WidenRows(values16, j0 * kvStride + kvOffset, kvStride, m, hd, widened);
            for (int i = 0; i < positions.Length; i++)
            {
                if (positions[i] <= j0) continue;
                var si = scores[(i * tokenStride + j0)..];
                var oi = output.Slice(i * outputStride, group * hd);
                int mi = Math.Min(m, positions[i] - j0);
                if (f16 && vector) WeightedSumVector(si, scoresStride, group, widened, hd, 0, mi, hd, oi, accumulate: j0 > 0);
                else if (f16) WeightedSumScalar<Half, FromHalf>(si, scoresStride, group, values16, kvStride, kvOffset, mi, hd, oi);
                else if (vector) WeightedSumVector(si, scoresStride, group, values[(j0 * kvStride)..], kvStride, kvOffset, mi, hd, oi, accumulate: j0 > 0);
                else WeightedSumScalar(si, scoresStride, group, values, kvStride, kvOffset, mi, hd, oi);
            }
        }
    }

    /// <summary>The shapes of the several-token kernels; returns the most positions a token sees.</summary>
    private static int CheckTokens(int perTokenLength, int perTokenStride, int perToken, ReadOnlySpan<int> positions, int hd, int cacheLength,
        int kvStride, int kvOffset, int scoresLength, int tokenStride, int group, int scoresStride)
    {
        int most = 0;
        foreach (int p in positions)
        {
            if (p <= 0) throw new ArgumentException("every token sees at least one position", nameof(positions));
            most = Math.Max(most, p);
        }
        int tokens = positions.Length;
        if (tokens == 0) return 0;
        if (group <= 0 || hd <= 0 || kvOffset < 0 || kvOffset + hd > kvStride || perTokenStride < perToken || scoresStride < most
            || tokenStride < (long)(group - 1) * scoresStride + most)
            throw new ArgumentException("inconsistent attention shapes");
        if (perTokenLength < (long)(tokens - 1) * perTokenStride + perToken)
            throw new ArgumentException("the query/output span is shorter than the tokens' rows");
        if (cacheLength < (long)(most - 1) * kvStride + kvOffset + hd) throw new ArgumentException("the cache span is shorter than the positions");
        if (scoresLength < (long)(tokens - 1) * tokenStride + (long)(group - 1) * scoresStride + most)
            throw new ArgumentException("the scores span is too short");
        return most;
    }
}
