using System.Diagnostics;
using System.Runtime.CompilerServices;
using Llama3.Model;
using Llama3.Tokenization;

namespace Llama3.Generation;

/// <summary>
/// Generates text with a <see cref="Transformer"/>: prefill the prompt, then sample one token per forward pass through
/// the KV cache until an end-of-generation token, a stop string, the token limit or the end of the context (Meta's
/// <c>Llama.generate</c>). Streams tokens and text, supports cancellation, and runs several prompts in one batch.
/// One generation runs at a time per generator (the transformer owns one set of buffers).
/// </summary>
public sealed class Generator
{
    private readonly Transformer _model;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>A generator over <paramref name="model"/> with <paramref name="tokenizer"/>, each sequence in a KV cache of <paramref name="context"/> positions.</summary>
    public Generator(Transformer model, LlamaTokenizer tokenizer, int context)
    {
        if (context <= 0) throw new ArgumentOutOfRangeException(nameof(context), context, "the context must be positive");
        _model = model;
        Tokenizer = tokenizer;
        Context = Math.Min(context, model.Config.ContextLength);
        ChatFormat = ChatFormat.TryCreate(tokenizer);
    }

    /// <summary>The tokenizer.</summary>
    public LlamaTokenizer Tokenizer { get; }

    /// <summary>Positions per sequence.</summary>
    public int Context { get; }

    /// <summary>The Llama 3 chat format, when the vocabulary has its tokens.</summary>
    public ChatFormat? ChatFormat { get; }

    /// <summary>Streams the continuation of <paramref name="prompt"/>; the last step has the finish reason and timings.</summary>
    public IAsyncEnumerable<GenerationStep> StreamAsync(IReadOnlyList<int> prompt, GenerationOptions options,
        CancellationToken cancellationToken = default) => StreamCore(prompt, options, null, cancellationToken);

    private async IAsyncEnumerable<GenerationStep> StreamCore(IReadOnlyList<int> prompt, GenerationOptions options,
        StrongBox<GenerationResult?>? result, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        options.Validate();
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        Sequence seq;
        try { seq = NewSequence(prompt, options, 0, ReuseCache(prompt)); }
        catch { _gate.Release(); throw; }
        try
        {
            if (options.MaxTokens == 0)
            {
                yield return seq.Finish(FinishReason.Length, -1);
                yield break;
            }
            var logits = new float[_model.Config.VocabSize];
            Sequence[] one = [seq];
            Action decode = () => Decode(one, logits); // made once: the loop below allocates only its Task per token
            await Task.Run(() => Prefill(one, logits), cancellationToken).ConfigureAwait(false);
            while (true)
            {
                var step = seq.Choose(logits);
                yield return step;
                if (step.FinishReason is not null) yield break;
                cancellationToken.ThrowIfCancellationRequested();
                await Task.Run(decode, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _cachedTokens = seq.CachedTokens();
            if (result is not null) result.Value = seq.Result;
            _gate.Release();
        }
    }

    /// <summary>Generates the whole continuation of <paramref name="prompt"/>.</summary>
    public async Task<GenerationResult> GenerateAsync(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        var result = new StrongBox<GenerationResult?>();
        await foreach (var _ in StreamCore(prompt, options, result, cancellationToken).ConfigureAwait(false)) { }
        return result.Value!;
    }

    // The single-sequence cache and the tokens it holds: a prompt that starts with them (the next turn of a chat)
    // only evaluates what is new, as llama.cpp's prompt cache does.
    private KvCache? _cache;
    private int[] _cachedTokens = [];

    private (KvCache Cache, int Reused) ReuseCache(IReadOnlyList<int> prompt)
    {
        _cache ??= _model.CreateCache(Context);
        int common = 0;
        int limit = Math.Min(Math.Min(_cachedTokens.Length, prompt.Count - 1), _cache.Length); // the last prompt token is always run, for its logits
        while (common < limit && _cachedTokens[common] == prompt[common]) common++;
        _cache.Truncate(common);
        return (_cache, common);
    }

    /// <summary>
    /// Generates continuations of several prompts together: one prefill pass for all prompts, then one decode pass per
    /// step for every sequence still running. Sequence i samples with seed <c>Seed + i</c> when a seed is given.
    /// </summary>
    public async Task<IReadOnlyList<GenerationResult>> GenerateBatchAsync(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
        CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (prompts.Count == 0) return [];
        var seqs = prompts.Select((p, i) => NewSequence(p, options, i, null)).ToArray();
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await Task.Run(() =>
            {
                int vocab = _model.Config.VocabSize;
                if (options.MaxTokens == 0)
                {
                    foreach (var s in seqs) s.Finish(FinishReason.Length, -1);
                    return seqs.Select(s => s.Result!).ToList();
                }
                var logits = new float[seqs.Length * vocab];
                Prefill(seqs, logits);
                var active = new List<Sequence>(seqs);
                for (int i = 0; i < active.Count; i++) active[i].Choose(logits.AsSpan(i * vocab, vocab));
                while (true)
                {
                    active.RemoveAll(s => s.Result is not null);
                    if (active.Count == 0) break;
                    cancellationToken.ThrowIfCancellationRequested();
                    Decode(active.ToArray(), logits);
                    for (int i = 0; i < active.Count; i++) active[i].Choose(logits.AsSpan(i * vocab, vocab));
                }
                return (IReadOnlyList<GenerationResult>)seqs.Select(s => s.Result!).ToList();
            }, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Meta's <c>text_completion</c>: the prompt is encoded with BOS when the model's files say so; with
    /// <paramref name="echo"/> the result's text starts with the prompt's (decoded from the prompt's ids, as Meta does).
    /// </summary>
    public async Task<GenerationResult> TextCompletionAsync(string prompt, GenerationOptions options, bool echo = false,
        CancellationToken cancellationToken = default)
    {
        var ids = Tokenizer.EncodeToIds(prompt, addBos: Tokenizer.AddBos && Tokenizer.BosId is not null);
        var r = await GenerateAsync(ids, options, cancellationToken).ConfigureAwait(false);
        if (!echo) return r;
        return r with { Text = Tokenizer.Decode(ids.Concat(r.Tokens)), };
    }

    /// <summary>Meta's <c>chat_completion</c>: the dialog in the Llama 3 chat format; the answer is the assistant's message.</summary>
    public Task<GenerationResult> ChatCompletionAsync(IEnumerable<ChatMessage> dialog, GenerationOptions options,
        CancellationToken cancellationToken = default)
    {
        var chat = ChatFormat ?? throw new InvalidOperationException($"{Tokenizer.Source}: the vocabulary has no Llama 3 chat tokens");
        return GenerateAsync(chat.EncodeDialogPrompt(dialog), options, cancellationToken);
    }

    private Sequence NewSequence(IReadOnlyList<int> prompt, GenerationOptions options, int index, (KvCache, int)? reuse) =>
        new(Tokenizer, _model.Config.VocabSize, Context, prompt, options, index, reuse?.Item1 ?? _model.CreateCache(Context), reuse?.Item2 ?? 0);

    // All prompts in one pass; each sequence's last-token logits into its slice of logits.
    private void Prefill(IReadOnlyList<Sequence> seqs, Span<float> logits)
    {
        int total = seqs.Sum(s => s.Prompt.Count - s.Reused);
        var tokens = new int[total];
        var caches = new KvCache[total];
        var rows = new int[seqs.Count];
        int at = 0;
        for (int i = 0; i < seqs.Count; i++)
        {
            var s = seqs[i];
            s.StartClock();
            for (int k = s.Reused; k < s.Prompt.Count; k++) { tokens[at] = s.Prompt[k]; caches[at] = s.Cache; at++; }
            rows[i] = at - 1;
        }
        _model.Forward(tokens, caches, rows, logits);
        foreach (var s in seqs) s.PrefillDone();
    }

    private KvCache[] _decodeCaches = [];

    // One token per sequence in one pass.
    private void Decode(IReadOnlyList<Sequence> seqs, Span<float> logits)
    {
        Span<int> tokens = stackalloc int[seqs.Count];
        if (_decodeCaches.Length < seqs.Count) _decodeCaches = new KvCache[seqs.Count];
        var caches = _decodeCaches.AsSpan(0, seqs.Count); // reused: one generation runs at a time (the gate)
        Span<int> rows = stackalloc int[seqs.Count];
        for (int i = 0; i < seqs.Count; i++)
        {
            tokens[i] = seqs[i].Last;
            caches[i] = seqs[i].Cache;
            rows[i] = i;
        }
        _model.Forward(tokens, caches, rows, logits);
    }
}
