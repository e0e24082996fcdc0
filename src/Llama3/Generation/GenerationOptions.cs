namespace Llama3.Generation;

/// <summary>What to generate and when to stop.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate (Meta's <c>max_gen_len</c>).</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>The sampler chain's settings (defaults: Meta's temperature 0.6, top-p 0.9).</summary>
    public SamplerOptions Sampling { get; init; } = new();

    /// <summary>Text that ends generation when it appears; it is not part of the returned text (as OpenAI's <c>stop</c>).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Token ids that end generation; null means the model's end-of-generation ids.</summary>
    public IReadOnlyList<int>? StopTokens { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> for impossible settings.</summary>
    public void Validate()
    {
        if (MaxTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "max tokens must not be negative");
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop strings must not be empty", nameof(StopStrings));
        Sampling.Validate();
    }
}

/// <summary>Why generation ended (OpenAI's <c>finish_reason</c>).</summary>
public enum FinishReason
{
    /// <summary>An end-of-generation token or a stop string.</summary>
    Stop,

    /// <summary>The token limit or the end of the context.</summary>
    Length,
}

/// <summary>How long the two phases took.</summary>
/// <param name="PromptTokens">Tokens of the prompt evaluated (a prefix already in the cache from the previous call is not).</param>
/// <param name="PromptSeconds">Time to evaluate them (prefill).</param>
/// <param name="GeneratedTokens">Tokens generated.</param>
/// <param name="GenerateSeconds">Time to generate them (decode, sampling included).</param>
public sealed record GenerationTimings(int PromptTokens, double PromptSeconds, int GeneratedTokens, double GenerateSeconds)
{
    /// <summary>Prefill speed.</summary>
    public double PromptTokensPerSecond => PromptSeconds > 0 ? PromptTokens / PromptSeconds : 0;

    /// <summary>Decode speed.</summary>
    public double GenerateTokensPerSecond => GenerateSeconds > 0 ? GeneratedTokens / GenerateSeconds : 0;
}

/// <summary>One step of a stream: a generated token and the text it completes; the last step carries the finish reason.</summary>
/// <param name="Token">The token id, or -1 on a final step that added no token (an end-of-generation token was sampled, or
/// no tokens were asked for).</param>
/// <param name="Text">New text (may be empty while a character or a possible stop string is incomplete).</param>
/// <param name="Logprob">The token's log-probability when asked for.</param>
/// <param name="TopLogprobs">The best alternatives when asked for.</param>
/// <param name="FinishReason">Set on the last step.</param>
/// <param name="Timings">Set on the last step.</param>
public sealed record GenerationStep(int Token, string Text, float? Logprob, IReadOnlyList<TokenLogprob>? TopLogprobs,
    FinishReason? FinishReason = null, GenerationTimings? Timings = null);

/// <summary>A finished generation.</summary>
/// <param name="PromptTokens">The prompt's ids.</param>
/// <param name="Tokens">The generated ids (without a final end-of-generation token).</param>
/// <param name="Text">The generated text (without a stop string).</param>
/// <param name="FinishReason">Why it ended.</param>
/// <param name="Timings">Timings.</param>
/// <param name="Logprobs">Per generated token, when asked for.</param>
public sealed record GenerationResult(IReadOnlyList<int> PromptTokens, IReadOnlyList<int> Tokens, string Text,
    FinishReason FinishReason, GenerationTimings Timings, IReadOnlyList<GenerationStep>? Logprobs = null);

/// <summary>The prompt does not fit in the context.</summary>
public sealed class PromptTooLongException(int promptTokens, int context)
    : ArgumentException($"the prompt has {promptTokens} tokens, more than the context of {context} tokens")
{
    /// <summary>Tokens in the prompt.</summary>
    public int PromptTokens { get; } = promptTokens;

    /// <summary>The context size.</summary>
    public int Context { get; } = context;
}
