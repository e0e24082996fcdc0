using System.Threading.Channels;
using Llama3.Model;
using Llama3.Tokenization;

namespace Llama3.Generation;

/// <summary>How a <see cref="BatchScheduler"/> shares one model between requests.</summary>
public sealed record BatchSchedulerOptions
{
    /// <summary>Sequences generated at once, each in its own KV cache slot (llama-server's <c>--parallel</c>).</summary>
    public int Slots { get; init; } = 4;

    /// <summary>Positions of each slot's KV cache: the longest prompt plus answer one request may have.</summary>
    public int Context { get; init; } = 4096;

    /// <summary>Requests that may wait for a free slot; one more is refused with <see cref="SchedulerFullException"/>.</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>
    /// Most prompt tokens evaluated in one pass beside the running sequences' decode tokens, so a long new prompt
    /// delays the others' next token by one chunk at a time, not by its whole prefill. 0 means the model's batch size.
    /// </summary>
    public int PrefillChunk { get; init; }

    internal void Validate()
    {
        if (Slots < 1) throw new ArgumentOutOfRangeException(nameof(Slots), Slots, "at least one slot is needed");
        if (Context < 1) throw new ArgumentOutOfRangeException(nameof(Context), Context, "the context must be positive");
        if (MaxQueue < 0) throw new ArgumentOutOfRangeException(nameof(MaxQueue), MaxQueue, "the queue length must not be negative");
        if (PrefillChunk < 0) throw new ArgumentOutOfRangeException(nameof(PrefillChunk), PrefillChunk, "the prefill chunk must not be negative");
    }
}

/// <summary>Every slot is busy and the queue is full (a server answers 429).</summary>
public sealed class SchedulerFullException(int slots, int queue)
    : InvalidOperationException($"the server is busy: all {slots} slots are generating and {queue} requests are waiting")
{
}

/// <summary>What a <see cref="BatchScheduler"/> is doing.</summary>
/// <param name="Slots">Slots in all.</param>
/// <param name="Active">Sequences generating (or evaluating their prompts) now.</param>
/// <param name="Queued">Requests waiting for a slot.</param>
/// <param name="Passes">Forward passes run so far.</param>
/// <param name="TokensGenerated">Tokens generated so far, all requests together.</param>
/// <param name="PromptTokens">Prompt tokens evaluated so far (prefixes found in a slot's cache are not).</param>
/// <param name="KvCacheBytes">Memory taken by the slots' KV caches allocated so far.</param>
public sealed record SchedulerStats(int Slots, int Active, int Queued, long Passes, long TokensGenerated, long PromptTokens, long KvCacheBytes);

/// <summary>
/// Something that runs generations for several callers at once: the <see cref="BatchScheduler"/> over a model, or a
/// stand-in that replays scripted answers (to test the chat layer and the server on exact model outputs).
/// </summary>
public interface IGenerationScheduler
{
    /// <summary>The tokenizer.</summary>
    LlamaTokenizer Tokenizer { get; }

    /// <summary>Positions per request: prompt plus answer.</summary>
    int Context { get; }

    /// <summary>The model's configuration.</summary>
    LlamaConfig Config { get; }

    /// <summary>Slots, active sequences, queue and totals.</summary>
    SchedulerStats Stats { get; }

    /// <summary>Queues a generation; bad input and a full queue throw here, before anything is queued.</summary>
    ScheduledGeneration Submit(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default);
}

/// <summary>
/// Continuous batching: one model serves many requests at once. Each running sequence has a KV cache slot; every
/// forward pass carries the next token of every decoding sequence plus a chunk of a new prompt, so the weights are read
/// once per step for all of them (decoding is bound by memory bandwidth, so a batch of several tokens costs little more
/// than one). A request that finishes or is cancelled frees its slot at once for the next in the queue; a slot keeps
/// the tokens of its last sequence, and a new request goes to the free slot that shares the longest prefix with its
/// prompt (the next turn of a chat skips what is already evaluated), as llama-server's slots do.
/// </summary>
public sealed class BatchScheduler : IGenerationScheduler, IDisposable
{
    private readonly Transformer _model;
    private readonly BatchSchedulerOptions _options;
    private readonly Slot[] _slots;
    private readonly Queue<Request> _queue = new();
    private readonly List<Request> _running = [];
    private readonly object _lock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _loop;
    private readonly int _chunk;
    private readonly SamplingJob _sampling = new();
    private volatile bool _stopping;
    private long _passes, _generated, _promptTokens;
    private Exception? _fault;

    /// <summary>Starts the scheduler's loop over <paramref name="model"/>.</summary>
    public BatchScheduler(Transformer model, LlamaTokenizer tokenizer, BatchSchedulerOptions? options = null)
    {
        _options = options ?? new BatchSchedulerOptions();
        _options.Validate();
        _model = model;
        Tokenizer = tokenizer;
        Context = Math.Min(_options.Context, model.Config.ContextLength);
        _chunk = _options.PrefillChunk > 0 ? Math.Min(_options.PrefillChunk, model.MaxBatch) : model.MaxBatch;
        _slots = new Slot[_options.Slots];
        for (int i = 0; i < _slots.Length; i++) _slots[i] = new Slot();
        _loop = new Thread(Loop) { IsBackground = true, Name = "llama3 scheduler" };
        _loop.Start();
    }

    /// <summary>The tokenizer.</summary>
    public LlamaTokenizer Tokenizer { get; }

    /// <summary>Positions per slot.</summary>
    public int Context { get; }

    /// <summary>The model's configuration.</summary>
    public LlamaConfig Config => _model.Config;

    /// <summary>Slots, active sequences, queue and totals.</summary>
    public SchedulerStats Stats
    {
        get
        {
            lock (_lock)
                return new SchedulerStats(_slots.Length, _running.Count, _queue.Count, Interlocked.Read(ref _passes),
                    Interlocked.Read(ref _generated), Interlocked.Read(ref _promptTokens), _slots.Sum(s => s.Cache?.Bytes ?? 0));
        }
    }

    /// <summary>
    /// Queues a generation. Bad input (an empty prompt, a token outside the vocabulary, a prompt longer than
    /// <see cref="Context"/>, impossible options) throws here, before anything is queued; so does a full queue
    /// (<see cref="SchedulerFullException"/>). Cancelling <paramref name="cancellationToken"/> stops the generation and
    /// frees its slot; the stream then ends with <see cref="OperationCanceledException"/>.
    /// </summary>
    public ScheduledGeneration Submit(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (_stopping) throw new ObjectDisposedException(nameof(BatchScheduler));
        if (_fault is { } fault) throw new InvalidOperationException("the scheduler stopped after an error: " + fault.Message, fault);
        // The sequence is made here so its checks run on the caller's thread; its cache comes with the slot.
        var seq = new Sequence(Tokenizer, _model.Config.VocabSize, Context, prompt, options, 0, null, 0);
        var request = new Request(seq, prompt, cancellationToken);
        lock (_lock)
        {
            int free = _slots.Length - _running.Count;
            if (_queue.Count - free >= _options.MaxQueue)
                throw new SchedulerFullException(_slots.Length, _queue.Count);
            _queue.Enqueue(request);
        }
        if (cancellationToken.CanBeCanceled)
            request.Registration = cancellationToken.Register(static r => ((BatchScheduler)((object[])r!)[0]).Cancelled((Request)((object[])r)[1]),
                new object[] { this, request });
        _wake.Release();
        return new ScheduledGeneration(request.Steps.Reader, request.Done.Task);
    }

    /// <summary>Streams the continuation of <paramref name="prompt"/> (see <see cref="Submit"/>).</summary>
    public IAsyncEnumerable<GenerationStep> StreamAsync(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default) =>
        Submit(prompt, options, cancellationToken).ReadAllAsync(cancellationToken);

    /// <summary>Generates the whole continuation of <paramref name="prompt"/> (see <see cref="Submit"/>).</summary>
    public Task<GenerationResult> GenerateAsync(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default) =>
        Submit(prompt, options, cancellationToken).Result;

    private void Cancelled(Request request)
    {
        request.Cancel = true; // no lock: this may run inside the loop's disposal of the registration
        _wake.Release();
    }

    private void Loop()
    {
        int vocab = _model.Config.VocabSize;
        var tokens = new List<int>();
        var caches = new List<KvCache>();
        var rows = new List<int>();
        var rowOwners = new List<Request>();
        float[] logits = [];
        try
        {
            while (!_stopping)
            {
                Admit();
                if (_running.Count == 0)
                {
                    _wake.Wait();
                    continue;
                }

                // One pass: a token for each decoding sequence, then prompt chunks up to the chunk budget.
                tokens.Clear(); caches.Clear(); rows.Clear(); rowOwners.Clear();
                foreach (var r in _running)
                {
                    if (r.PrefillAt < r.Prompt.Count) continue;
                    rows.Add(tokens.Count);
                    rowOwners.Add(r);
                    tokens.Add(r.Seq.Last);
                    caches.Add(r.Seq.Cache);
                }
                int budget = Math.Max(_chunk - tokens.Count, 1);
                foreach (var r in _running)
                {
                    if (r.PrefillAt >= r.Prompt.Count || budget == 0) continue;
                    if (r.PrefillAt == r.Seq.Reused) r.Seq.StartClock();
                    int n = Math.Min(budget, r.Prompt.Count - r.PrefillAt);
                    for (int k = 0; k < n; k++) { tokens.Add(r.Prompt[r.PrefillAt + k]); caches.Add(r.Seq.Cache); }
                    r.PrefillAt += n;
                    budget -= n;
                    Interlocked.Add(ref _promptTokens, n);
                    if (r.PrefillAt == r.Prompt.Count)
                    {
                        rows.Add(tokens.Count - 1);
                        rowOwners.Add(r);
                    }
                }
                // Logit rows must ascend: decode rows come first, then each finished prompt's last token, in order.
                if (logits.Length < rows.Count * vocab) logits = new float[rows.Count * vocab];
                _model.Forward(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(tokens),
                    System.Runtime.InteropServices.CollectionsMarshal.AsSpan(caches),
                    System.Runtime.InteropServices.CollectionsMarshal.AsSpan(rows), logits);
                Interlocked.Increment(ref _passes);

                // Each sequence samples its next token from its row, all on the model's workers at once (over a
                // 128K vocabulary a draw costs about as much as a small matrix product).
                for (int i = 0; i < rowOwners.Count; i++)
                {
                    var r = rowOwners[i];
                    if (r.PrefillAt == r.Prompt.Count && !r.Decoding) { r.Seq.PrefillDone(); r.Decoding = true; }
                }
                _sampling.Prepare(rowOwners, logits, vocab);
                _model.RunParallel(_sampling, rowOwners.Count);
                for (int i = 0; i < rowOwners.Count; i++)
                {
                    var r = rowOwners[i];
                    var step = _sampling.Steps[i]!;
                    if (step.Token >= 0) Interlocked.Increment(ref _generated);
                    r.Steps.Writer.TryWrite(step);
                    if (step.FinishReason is not null) Complete(r, null);
                }
            }
        }
        catch (Exception e)
        {
            _fault = e;
            lock (_lock)
            {
                foreach (var r in _running.Concat(_queue)) r.Fail(e);
                _running.Clear();
                _queue.Clear();
            }
        }
        finally
        {
            lock (_lock)
            {
                var stopped = new ObjectDisposedException(nameof(BatchScheduler));
                foreach (var r in _running.Concat(_queue)) r.Fail(stopped);
                _running.Clear();
                _queue.Clear();
            }
        }
    }

    // Drops cancelled requests, then gives free slots to waiting requests.
    private void Admit()
    {
        lock (_lock)
        {
            for (int i = _running.Count - 1; i >= 0; i--)
                if (_running[i].Cancel) Complete(_running[i], new OperationCanceledException(_running[i].CancellationToken));
            if (_queue.Count == 0) return;
            var waiting = _queue.ToArray();
            _queue.Clear();
            foreach (var r in waiting)
            {
                if (r.Cancel) { r.Fail(new OperationCanceledException(r.CancellationToken)); continue; }
                var slot = BestFreeSlot(r.Prompt);
                if (slot is null) { _queue.Enqueue(r); continue; }
                slot.Busy = true;
                slot.Cache ??= _model.CreateCache(Context);
                int common = 0, limit = Math.Min(Math.Min(slot.Tokens.Length, r.Prompt.Count - 1), slot.Cache.Length);
                while (common < limit && slot.Tokens[common] == r.Prompt[common]) common++;
                slot.Cache.Truncate(common);
                r.Attach(slot, common);
                _running.Add(r);
                if (r.Seq.Result is not null) Complete(r, null); // nothing to generate
            }
        }
    }

    // The free slot whose cached tokens share the longest prefix with the prompt; else the one unused longest.
    private Slot? BestFreeSlot(IReadOnlyList<int> prompt)
    {
        Slot? best = null;
        int bestCommon = -1;
        foreach (var s in _slots)
        {
            if (s.Busy) continue;
            int common = 0, limit = Math.Min(s.Tokens.Length, prompt.Count);
            while (common < limit && s.Tokens[common] == prompt[common]) common++;
            if (common > bestCommon || (common == bestCommon && best is not null && s.LastUsed < best.LastUsed))
            {
                best = s;
                bestCommon = common;
            }
        }
        return best;
    }

    private void Complete(Request r, Exception? error)
    {
        lock (_lock)
        {
            if (!_running.Remove(r)) return;
            var slot = r.Slot!;
            slot.Tokens = r.Seq.CachedTokens();
            slot.LastUsed = Environment.TickCount64;
            slot.Busy = false;
        }
        if (error is null) r.Succeed();
        else r.Fail(error);
    }

    /// <summary>Stops the loop; requests still running or waiting end with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        _wake.Release();
        _loop.Join();
        _wake.Dispose();
    }

    // Sampling of every row of one pass, one sequence per item.
    private sealed class SamplingJob : Kernels.Threading.IParallelJob
    {
        private List<Request> _owners = [];
        private float[] _logits = [];
        private int _vocab;
        public GenerationStep?[] Steps = [];

        public void Prepare(List<Request> owners, float[] logits, int vocab)
        {
            _owners = owners;
            _logits = logits;
            _vocab = vocab;
            if (Steps.Length < owners.Count) Steps = new GenerationStep?[owners.Count];
        }

        public void Execute(int index, int worker) =>
            Steps[index] = _owners[index].Seq.Choose(_logits.AsSpan(index * _vocab, _vocab));
    }

    private sealed class Slot
    {
        public KvCache? Cache;
        public int[] Tokens = [];
        public bool Busy;
        public long LastUsed;
    }

    private sealed class Request(Sequence seq, IReadOnlyList<int> prompt, CancellationToken cancellationToken)
    {
        public readonly Sequence Seq = seq;
        public readonly IReadOnlyList<int> Prompt = prompt;
        public readonly CancellationToken CancellationToken = cancellationToken;
        public readonly Channel<GenerationStep> Steps = Channel.CreateUnbounded<GenerationStep>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });
        public readonly TaskCompletionSource<GenerationResult> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public CancellationTokenRegistration Registration;
        public Slot? Slot;
        public int PrefillAt;
        public volatile bool Cancel;
        public bool Decoding;

        public void Attach(Slot slot, int reused)
        {
            Slot = slot;
            Seq.Attach(slot.Cache!, reused);
            PrefillAt = reused;
            if (Seq.Options.MaxTokens == 0)
            {
                // Nothing to generate: finish without a pass (as Generator does).
                Steps.Writer.TryWrite(Seq.Finish(FinishReason.Length, -1));
                PrefillAt = Prompt.Count;
            }
        }

        public void Succeed()
        {
            Registration.Dispose();
            Steps.Writer.TryComplete();
            Done.TrySetResult(Seq.Result!);
        }

        public void Fail(Exception e)
        {
            Registration.Dispose();
            Steps.Writer.TryComplete(e);
            if (e is OperationCanceledException oce) Done.TrySetCanceled(oce.CancellationToken);
            else Done.TrySetException(e);
        }
    }
}

/// <summary>A queued or running generation of a <see cref="BatchScheduler"/>.</summary>
public sealed class ScheduledGeneration
{
    private readonly ChannelReader<GenerationStep> _steps;

    /// <summary>A generation whose steps arrive on <paramref name="steps"/> and whose whole result is <paramref name="result"/>.</summary>
    public ScheduledGeneration(ChannelReader<GenerationStep> steps, Task<GenerationResult> result)
    {
        _steps = steps;
        Result = result;
        result.ContinueWith(static t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted); // observed: callers may only stream
    }

    /// <summary>The whole generation, when it has finished.</summary>
    public Task<GenerationResult> Result { get; }

    /// <summary>The steps as they are generated; the last has the finish reason.</summary>
    public async IAsyncEnumerable<GenerationStep> ReadAllAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await _steps.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            while (_steps.TryRead(out var step))
                yield return step;
    }
}
