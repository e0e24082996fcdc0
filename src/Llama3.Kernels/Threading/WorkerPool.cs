namespace Llama3.Kernels.Threading;

/// <summary>A unit of parallel work: <see cref="Execute"/> runs once per index, on any worker.</summary>
public interface IParallelJob
{
    /// <summary>Runs item <paramref name="index"/>; <paramref name="worker"/> (0..Threads-1) selects per-worker scratch.</summary>
    void Execute(int index, int worker);
}

/// <summary>
/// One pool of workers that stay hot between the many small parallel steps of a token (a forward pass has a dozen
/// matrix products per layer): no <c>Task</c> per call and no allocation. The caller works as worker 0; the others
/// spin briefly for the next step and then sleep. Items are handed out one at a time from a shared counter, so a
/// slower core simply takes fewer of them and all finish together.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    private const int SpinIterations = 2_000;
    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim _go = new(false);
    private IParallelJob? _job;
    private int _count;
    private int _next;
    private int _active;
    private long _generation;
    private volatile bool _stopping;
    private Exception? _error;

    /// <summary>A pool of <paramref name="threads"/> workers in all (the caller counts as one).</summary>
    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "at least one thread");
        Threads = threads;
        _threads = new Thread[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _threads[i] = new Thread(() => Loop(worker)) { IsBackground = true, Name = $"llama3 worker {worker}" };
            _threads[i].Start();
        }
    }

    /// <summary>Workers, the caller included.</summary>
    public int Threads { get; }

    /// <summary>Runs <c>job.Execute(i, worker)</c> for every i in [0, count) and returns when all are done.</summary>
    public void Run(IParallelJob job, int count)
    {
        if (count <= 0) return;
        if (Threads == 1 || count == 1)
        {
            for (int i = 0; i < count; i++) job.Execute(i, 0);
            return;
        }
        _job = job;
        _count = count;
        _next = 0;
        _error = null;
        Volatile.Write(ref _active, _threads.Length);
        Interlocked.Increment(ref _generation);
        _go.Set();
        Work(0);
        var spin = new SpinWait();
        while (Volatile.Read(ref _active) > 0) spin.SpinOnce(sleep1Threshold: -1);
        _go.Reset();
        _job = null;
        if (_error is { } e) throw new AggregateException("a parallel step failed", e);
    }

    private void Work(int worker)
    {
        var job = _job!;
        int i;
        while ((i = Interlocked.Increment(ref _next) - 1) < _count)
        {
            try { job.Execute(i, worker); }
            catch (Exception e) { _error ??= e; }
        }
    }

    private void Loop(int worker)
    {
        long seen = 0;
        while (true)
        {
            // Spin for the next step (steps follow each other within microseconds during a token), then sleep.
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && !_stopping)
            {
                if (++spins < SpinIterations) Thread.SpinWait(20);
                else _go.Wait();
            }
            if (_stopping) return;
            seen = Volatile.Read(ref _generation);
            Work(worker);
            Interlocked.Decrement(ref _active);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _stopping = true;
        _go.Set();
        foreach (var t in _threads) t.Join();
        _go.Dispose();
    }
}
