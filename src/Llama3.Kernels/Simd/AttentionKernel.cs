using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Llama3.Kernels.Simd;

/// <summary>
/// Grouped-query attention for one token and one KV head: the <c>group</c> query heads that share the KV head read each
/// cached key and value once (Meta's <c>repeat_kv</c> without the copy). Keys and values are rows of
/// <c>kvStride</c> floats in the cache, this head's slice starting at <c>kvOffset</c>.
/// </summary>
public static class AttentionKernel
{
    /// <summary>
    /// <c>scores[g * scoresStride + j] = dot(q[g], key[j]) / scale</c> for the query heads g &lt; group and positions
    /// j &lt; positions (Meta: <c>xq @ keys.transpose / math.sqrt(head_dim)</c>).
    /// </summary>
    public static void Scores(ReadOnlySpan<float> q, int group, int hd, ReadOnlySpan<float> keys, int kvStride, int kvOffset,
        int positions, float scale, Span<float> scores, int scoresStride)
    {
        Check(q, group, hd, keys, kvStride, kvOffset, positions, scores, scoresStride);
        if (!Vector256.IsHardwareAccelerated || hd % 8 != 0)
        {
            ScoresScalar(q, group, hd, keys, kvStride, kvOffset, positions, scale, scores, scoresStride);
            return;
        }
        ref float qr = ref MemoryMarshal.GetReference(q);
        ref float kr = ref MemoryMarshal.GetReference(keys);
        ref float sr = ref MemoryMarshal.GetReference(scores);
        for (int j = 0; j < positions; j++)
        {
            ref float k = ref Unsafe.Add(ref kr, j * kvStride + kvOffset);
            for (int g = 0; g < group; g++)
            {
                ref float qg = ref Unsafe.Add(ref qr, g * hd);
                var acc0 = Vector256<float>.Zero;
                var acc1 = Vector256<float>.Zero;
                int i = 0;
                for (; i + 16 <= hd; i += 16)
                {
                    acc0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)i), Vector256.LoadUnsafe(ref k, (nuint)i), acc0);
                    acc1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)(i + 8)), Vector256.LoadUnsafe(ref k, (nuint)(i + 8)), acc1);
                }
                if (i < hd) acc0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)i), Vector256.LoadUnsafe(ref k, (nuint)i), acc0);
                Unsafe.Add(ref sr, g * scoresStride + j) = Vector256.Sum(acc0 + acc1) / scale;
            }
        }
    }

    /// <summary>The scalar twin of <see cref="Scores"/>.</summary>
    public static void ScoresScalar(ReadOnlySpan<float> q, int group, int hd, ReadOnlySpan<float> keys, int kvStride, int kvOffset,
        int positions, float scale, Span<float> scores, int scoresStride)
    {
        Check(q, group, hd, keys, kvStride, kvOffset, positions, scores, scoresStride);
        for (int j = 0; j < positions; j++)
            for (int g = 0; g < group; g++)
            {
                float sum = 0;
                for (int i = 0; i < hd; i++) sum += q[g * hd + i] * keys[j * kvStride + kvOffset + i];
                scores[g * scoresStride + j] = sum / scale;
            }
    }

    /// <summary>
    /// <c>output[g] = Σ_j scores[g * scoresStride + j] · value[j]</c> for the query heads g &lt; group (Meta:
    /// <c>scores @ values</c>); <paramref name="output"/> holds <c>group × hd</c> floats and is overwritten.
    /// </summary>
    public static void WeightedSum(ReadOnlySpan<float> scores, int scoresStride, int group, ReadOnlySpan<float> values, int kvStride,
        int kvOffset, int positions, int hd, Span<float> output)
    {
        Check(output, group, hd, values, kvStride, kvOffset, positions, scores, scoresStride);
        if (!Vector256.IsHardwareAccelerated || hd % 8 != 0 || hd > 256)
        {
            WeightedSumScalar(scores, scoresStride, group, values, kvStride, kvOffset, positions, hd, output);
            return;
        }
        ref float vr = ref MemoryMarshal.GetReference(values);
        ref float sr = ref MemoryMarshal.GetReference(scores);
        ref float or = ref MemoryMarshal.GetReference(output);
        Span<Vector256<float>> acc = stackalloc Vector256<float>[32];
        int chunks = hd / 8;
        for (int g = 0; g < group; g++)
        {
            acc[..chunks].Clear();
            ref float s = ref Unsafe.Add(ref sr, g * scoresStride);
            for (int j = 0; j < positions; j++)
            {
                var w = Vector256.Create(Unsafe.Add(ref s, j));
                ref float v = ref Unsafe.Add(ref vr, j * kvStride + kvOffset);
                for (int c = 0; c < chunks; c++)
                    acc[c] = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref v, (nuint)(c * 8)), w, acc[c]);
            }
            for (int c = 0; c < chunks; c++) acc[c].StoreUnsafe(ref or, (nuint)(g * hd + c * 8));
        }
    }

    /// <summary>The scalar twin of <see cref="WeightedSum"/>.</summary>
    public static void WeightedSumScalar(ReadOnlySpan<float> scores, int scoresStride, int group, ReadOnlySpan<float> values, int kvStride,
        int kvOffset, int positions, int hd, Span<float> output)
    {
        Check(output, group, hd, values, kvStride, kvOffset, positions, scores, scoresStride);
        for (int g = 0; g < group; g++)
            for (int i = 0; i < hd; i++)
            {
                float sum = 0;
                for (int j = 0; j < positions; j++) sum += scores[g * scoresStride + j] * values[j * kvStride + kvOffset + i];
                output[g * hd + i] = sum;
            }
    }

    private static void Check(ReadOnlySpan<float> perHead, int group, int hd, ReadOnlySpan<float> cache, int kvStride, int kvOffset,
        int positions, ReadOnlySpan<float> scores, int scoresStride)
    {
        if (group <= 0 || hd <= 0 || positions <= 0 || kvOffset < 0 || kvOffset + hd > kvStride || scoresStride < positions)
            throw new ArgumentException("inconsistent attention shapes");
        if (perHead.Length < group * hd) throw new ArgumentException("the query/output span is shorter than group × head_dim");
        if (cache.Length < (long)(positions - 1) * kvStride + kvOffset + hd) throw new ArgumentException("the cache span is shorter than the positions");
        if (scores.Length < (long)(group - 1) * scoresStride + positions) throw new ArgumentException("the scores span is too short");
    }
}
