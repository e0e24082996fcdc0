namespace Llama3.Model;

/// <summary>
/// Precomputed rotary angles, as Meta's <c>precompute_freqs_cis</c>: per pair i the frequency
/// <c>1 / theta^(2i/head_dim)</c>, adjusted by Llama 3.1's <c>apply_scaling</c> or divided by GGUF's
/// <c>rope_freqs</c> factors, times each position; cos and sin of those float32 angles.
/// </summary>
public sealed class RopeTable
{
    private readonly float[] _cos, _sin;

    /// <summary>Builds the table for positions 0..<paramref name="positions"/>-1.</summary>
    public RopeTable(LlamaConfig config, int positions, ReadOnlySpan<float> freqFactors = default)
    {
        Half = config.HeadDim / 2;
        Positions = positions;
        Frequencies = Frequencies_(config, freqFactors);
        _cos = new float[positions * Half];
        _sin = new float[positions * Half];
        for (int p = 0; p < positions; p++)
        {
            for (int i = 0; i < Half; i++)
            {
                float angle = p * Frequencies[i]; // torch.outer in float32
                _cos[p * Half + i] = (float)Math.Cos(angle);
                _sin[p * Half + i] = (float)Math.Sin(angle);
            }
        }
    }

    /// <summary>Pairs per head.</summary>
    public int Half { get; }

    /// <summary>Positions covered.</summary>
    public int Positions { get; }

    /// <summary>The frequency of each pair.</summary>
    public float[] Frequencies { get; }

    /// <summary>cos of each pair's angle at <paramref name="pos"/>.</summary>
    public ReadOnlySpan<float> Cos(int pos) => _cos.AsSpan(pos * Half, Half);

    /// <summary>sin of each pair's angle at <paramref name="pos"/>.</summary>
    public ReadOnlySpan<float> Sin(int pos) => _sin.AsSpan(pos * Half, Half);

    private static float[] Frequencies_(LlamaConfig c, ReadOnlySpan<float> factors)
    {
        int half = c.HeadDim / 2;
        var freqs = new float[half];
        float theta = (float)c.RopeTheta;
        for (int i = 0; i < half; i++)
            freqs[i] = 1f / MathF.Pow(theta, (float)(2 * i) / c.HeadDim);
        if (!factors.IsEmpty)
        {
            // llama.cpp divides each angle by its rope_freqs factor.
            for (int i = 0; i < half; i++) freqs[i] /= factors[i];
        }
        else if (c.RopeScaling is { } s)
        {
            ApplyScaling(freqs, s);
        }
        return freqs;
    }

    /// <summary>Meta's <c>apply_scaling</c> (llama-models <c>models/llama3/model.py</c>), in float32 as torch computes it.</summary>
    public static void ApplyScaling(Span<float> freqs, RopeScaling s)
    {
        float factor = (float)s.Factor, low = (float)s.LowFreqFactor, high = (float)s.HighFreqFactor, old = s.OriginalContext;
        float lowFreqWavelen = old / low;
        float highFreqWavelen = old / high;
        for (int i = 0; i < freqs.Length; i++)
        {
            float freq = freqs[i];
            float wavelen = (float)(2 * Math.PI) / freq;
            if (wavelen < highFreqWavelen) continue;
            if (wavelen > lowFreqWavelen) { freqs[i] = freq / factor; continue; }
            float smooth = (old / wavelen - low) / (high - low);
            freqs[i] = (1 - smooth) * freq / factor + smooth * freq;
        }
    }
}
