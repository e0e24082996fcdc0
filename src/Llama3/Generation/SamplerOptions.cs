namespace Llama3.Generation;

/// <summary>
/// The settings of one <see cref="Sampler"/>. Defaults are Meta's (<c>generation.py</c>: temperature 0.6, top_p 0.9)
/// with every other stage of the chain off; names and meanings follow llama.cpp's sampler chain and OpenAI's request
/// fields (<c>frequency_penalty</c>, <c>presence_penalty</c>, <c>logprobs</c>, <c>top_logprobs</c>).
/// </summary>
public sealed record SamplerOptions
{
    /// <summary>The most alternatives <see cref="TopLogprobs"/> may ask for (OpenAI's limit for <c>top_logprobs</c>).</summary>
    public const int MaxTopLogprobs = 20;

    /// <summary>Greedy decoding: temperature 0, so the chain ends at the argmax and the random generator is never used.</summary>
    public static SamplerOptions Greedy { get; } = new() { Temperature = 0f };

    /// <summary>Softmax temperature; 0 picks the most likely token (ties to the lowest id). Meta's default 0.6.</summary>
    public float Temperature { get; init; } = 0.6f;

    /// <summary>Nucleus sampling mass in (0, 1] with Meta's <c>sample_top_p</c> rule; 1 turns it off. Meta's default 0.9.</summary>
    public float TopP { get; init; } = 0.9f;

    /// <summary>Keep only the <c>TopK</c> most likely tokens; 0 turns it off.</summary>
    public int TopK { get; init; }

    /// <summary>Drop tokens whose probability is below <c>MinP</c> times the most likely one's (llama.cpp's min-p); 0 turns it off.</summary>
    public float MinP { get; init; }

    /// <summary>
    /// Repetition penalty as CTRL and llama.cpp apply it to every token of the window: a positive logit is divided by
    /// it, a negative one multiplied. 1 turns it off.
    /// </summary>
    public float RepeatPenalty { get; init; } = 1f;

    /// <summary>OpenAI's frequency penalty: subtracted from a logit once per occurrence of the token in the window.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>OpenAI's presence penalty: subtracted from a logit once if the token occurs in the window at all.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>How many of the last tokens of the history the penalties look at; -1 = the whole history, 0 = none.</summary>
    public int PenaltyWindow { get; init; } = 64;

    /// <summary>
    /// Seed of the random generator (xoshiro256**); with a seed the draws are the same on every run and machine.
    /// <see langword="null"/> seeds from the operating system's random source.
    /// </summary>
    public ulong? Seed { get; init; }

    /// <summary>Whether the caller wants log-probabilities (<see cref="Sampler.SampleWithLogprobs"/>).</summary>
    public bool Logprobs { get; init; }

    /// <summary>
    /// How many of the most likely alternatives <see cref="Sampler.SampleWithLogprobs"/> reports, 0 to
    /// <see cref="MaxTopLogprobs"/>; 0 reports only the chosen token's log-probability.
    /// </summary>
    public int TopLogprobs { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting that is out of range.</summary>
    public void Validate()
    {
        if (!float.IsFinite(Temperature) || Temperature < 0f)
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "the temperature must be a finite number >= 0");
        if (!(TopP > 0f && TopP <= 1f))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top_p must be in (0, 1]");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top_k must be >= 0 (0 turns it off)");
        if (!(MinP >= 0f && MinP <= 1f))
            throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "min_p must be in [0, 1]");
        if (!float.IsFinite(RepeatPenalty) || RepeatPenalty <= 0f)
            throw new ArgumentOutOfRangeException(nameof(RepeatPenalty), RepeatPenalty, "the repeat penalty must be a finite number > 0 (1 turns it off)");
        if (!float.IsFinite(FrequencyPenalty))
            throw new ArgumentOutOfRangeException(nameof(FrequencyPenalty), FrequencyPenalty, "the frequency penalty must be a finite number");
        if (!float.IsFinite(PresencePenalty))
            throw new ArgumentOutOfRangeException(nameof(PresencePenalty), PresencePenalty, "the presence penalty must be a finite number");
        if (PenaltyWindow < -1)
            throw new ArgumentOutOfRangeException(nameof(PenaltyWindow), PenaltyWindow, "the penalty window must be >= 0, or -1 for the whole history");
        if (TopLogprobs is < 0 or > MaxTopLogprobs)
            throw new ArgumentOutOfRangeException(nameof(TopLogprobs), TopLogprobs, $"top_logprobs must be in 0..{MaxTopLogprobs}");
    }
}
