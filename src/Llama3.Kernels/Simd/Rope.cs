namespace Llama3.Kernels.Simd;

/// <summary>
/// Rotary position embedding: rotate each pair of a head by the angle of its frequency,
/// <c>(a, b) → (a·cos − b·sin, a·sin + b·cos)</c> (Meta's <c>apply_rotary_emb</c>, a complex multiply).
/// </summary>
public static class Rope
{
    /// <summary>Meta's and GGUF's order: pair i is elements (2i, 2i+1) of each head.</summary>
    public static void ApplyInterleaved(Span<float> heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = headDim / 2;
        for (int h = 0; h < heads.Length; h += headDim)
        {
            var v = heads.Slice(h, headDim);
            for (int i = 0; i < half; i++)
            {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * cos[i] - b * sin[i];
                v[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
    }

    /// <summary>Hugging Face's order (rotate_half): pair i is elements (i, i + headDim/2) of each head.</summary>
    public static void ApplyHalves(Span<float> heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = headDim / 2;
        for (int h = 0; h < heads.Length; h += headDim)
        {
            var v = heads.Slice(h, headDim);
            for (int i = 0; i < half; i++)
            {
                float a = v[i], b = v[i + half];
                v[i] = a * cos[i] - b * sin[i];
                v[i + half] = a * sin[i] + b * cos[i];
            }
        }
    }
}
