namespace Llama3.Generation;

/// <summary>A token id with its log-probability (natural log), as an entry of OpenAI's <c>top_logprobs</c>.</summary>
/// <param name="Id">The token id.</param>
/// <param name="Logprob">
/// The log-softmax of the logits after the penalties and before temperature and truncation (see
/// <see cref="Sampler.SampleWithLogprobs"/>).
/// </param>
public readonly record struct TokenLogprob(int Id, float Logprob);

/// <summary>The result of <see cref="Sampler.SampleWithLogprobs"/>: the chosen token and log-probabilities.</summary>
/// <param name="Id">The chosen token id.</param>
/// <param name="Logprob">The chosen token's log-probability, defined as <see cref="TokenLogprob.Logprob"/>.</param>
/// <param name="TopLogprobs">
/// The <see cref="SamplerOptions.TopLogprobs"/> most likely tokens, most likely first (equal logits: lower id first);
/// they may or may not include the chosen token, as in OpenAI's responses. Empty when none were asked for.
/// </param>
public readonly record struct SampledToken(int Id, float Logprob, TokenLogprob[] TopLogprobs);
