using System.Diagnostics;
using Llama3.Model;
using Llama3.Tokenization;

namespace Llama3.Generation;

/// <summary>One sequence's state: its cache, sampler, decoder and stop conditions.</summary>
internal sealed class Sequence
{
    private readonly GenerationOptions _options;
    private readonly Sampler _sampler;
    private readonly StreamingDecoder _decoder;
    private readonly StopStrings _stops;
    private readonly IReadOnlyList<int> _stopTokens;
    private readonly List<int> _history;
    private readonly List<int> _generated = [];
    private readonly List<GenerationStep>? _logprobs;
    private readonly System.Text.StringBuilder _text = new();
    private readonly float[] _scratch;
    private long _t0, _t1;

    public Sequence(LlamaTokenizer tokenizer, int vocabSize, int context, IReadOnlyList<int> prompt, GenerationOptions options, int index,
        KvCache? cache, int reused)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt has no tokens", nameof(prompt));
        if (prompt.Count > context) throw new PromptTooLongException(prompt.Count, context);
        foreach (int t in prompt)
            if ((uint)t >= (uint)vocabSize)
                throw new ArgumentOutOfRangeException(nameof(prompt), t, $"token {t} is outside the vocabulary of {vocabSize}");
        _options = options;
        Options = options;
        Prompt = prompt;
        if (cache is not null) Attach(cache, reused);
        var sampling = options.Sampling.Seed is ulong seed ? options.Sampling with { Seed = seed + (ulong)index } : options.Sampling;
        _sampler = new Sampler(sampling, vocabSize);
        _decoder = tokenizer.CreateStreamingDecoder();
        _stops = new StopStrings(options.StopStrings);
        _stopTokens = options.StopTokens ?? tokenizer.EndOfGenerationIds;
        _history = new List<int>(prompt.Count + options.MaxTokens);
        _history.AddRange(prompt);
        _logprobs = options.Sampling.Logprobs ? [] : null;
        _scratch = new float[vocabSize];
    }

    public IReadOnlyList<int> Prompt { get; }
    public GenerationOptions Options { get; }
    public KvCache Cache { get; private set; } = null!;
    public int Reused { get; private set; }

    /// <summary>Gives the sequence its cache, whose first <paramref name="reused"/> positions hold the prompt's start.</summary>
    public void Attach(KvCache cache, int reused)
    {
        Cache = cache;
        Reused = reused;
    }

    /// <summary>The tokens whose keys and values are in the cache now.</summary>
    public int[] CachedTokens() => Prompt.Concat(_generated).Take(Cache.Length).ToArray();
    public int Last { get; private set; }
    public GenerationResult? Result { get; private set; }

    public void StartClock() => _t0 = Stopwatch.GetTimestamp();
    public void PrefillDone() => _t1 = Stopwatch.GetTimestamp();

    public GenerationStep Choose(ReadOnlySpan<float> logits)
    {
        logits.CopyTo(_scratch);
        int id;
        float? logprob = null;
        IReadOnlyList<TokenLogprob>? top = null;
        if (_logprobs is not null)
        {
            var s = _sampler.SampleWithLogprobs(_scratch, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history));
            id = s.Id;
            logprob = s.Logprob;
            top = s.TopLogprobs;
        }
        else id = _sampler.Sample(_scratch, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history));
        Last = id;

        if (_stopTokens.Contains(id))
            return Finish(FinishReason.Stop, -1);
        _generated.Add(id);
        _history.Add(id);
        string text = _stops.Push(_decoder.Append(id));
        _text.Append(text);
        if (_stops.Stopped) return Finish(FinishReason.Stop, id, logprob, top, text);
        if (_generated.Count >= _options.MaxTokens || Cache.Length >= Cache.Context)
            return Finish(FinishReason.Length, id, logprob, top, text);
        var step = new GenerationStep(id, text, logprob, top);
        _logprobs?.Add(step);
        return step;
    }

    public GenerationStep Finish(FinishReason reason, int id, float? logprob = null, IReadOnlyList<TokenLogprob>? top = null, string text = "")
    {
        if (_t1 == 0) { _t0 = _t1 = Stopwatch.GetTimestamp(); }
        string rest = _stops.Stopped ? "" : _stops.Push(_decoder.Flush()) + _stops.Flush();
        _text.Append(rest);
        double promptSeconds = Stopwatch.GetElapsedTime(_t0, _t1).TotalSeconds;
        double genSeconds = Stopwatch.GetElapsedTime(_t1).TotalSeconds;
        var timings = new GenerationTimings(Prompt.Count - Reused, promptSeconds, _generated.Count, genSeconds);
        var step = new GenerationStep(id, text + rest, logprob, top, reason, timings);
        if (id >= 0) _logprobs?.Add(step);
        Result = new GenerationResult(Prompt, _generated.ToArray(), _text.ToString(), reason, timings, _logprobs);
        return step;
    }
}
