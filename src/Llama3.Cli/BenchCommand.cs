using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text.Json.Nodes;
using Llama3.Model;

namespace Llama3.Cli;

/// <summary>
/// <c>llama3 bench</c>: prompt-processing and decode speed, as llama.cpp's <c>llama-bench</c> measures them, with the
/// load time, peak memory and a memory-bandwidth probe that tells how fast decode could be if it only streamed the
/// weights.
/// </summary>
/// <remarks>
/// As llama-bench: an untimed warm-up (the whole prompt and one decode step; here repeated for at least a second, so
/// the JIT's optimized code is in place), then <c>-r</c> repetitions, each from an empty KV cache; prompt tokens are
/// random ids (after BOS when the model adds one) from a fixed seed; speeds are the mean and sample standard deviation
/// of the per-repetition tokens per second. Unlike llama-bench's separate <c>tg</c> test, decode here continues after
/// the prompt in the same cache (llama-bench's <c>tg N @ d P</c>).
/// </remarks>
internal static class BenchCommand
{
    private const int PromptSeed = 1234;

    /// <summary>
    /// The probe reads 1 GiB: many times any usual last-level cache (tens of MiB; only AMD's 3D V-Cache EPYCs come near
    /// it, summed over all their dies), so the figure is the machine's main-memory bandwidth, whatever the model.
    /// </summary>
    private const long ProbeBytes = 1L << 30;

    private const int ProbeRuns = 5;

    private const double WarmupSeconds = 1.0;

    public static Command Create()
    {
        var model = ModelOptions.Model();
        var ropeFactor = ModelOptions.RopeFactor();
        var cacheType = ModelOptions.CacheType();
        var prompt = new Option<int>("--n-prompt", "-p") { Description = "Prompt tokens in one forward pass (0: no prompt test)", DefaultValueFactory = _ => 512 };
        var gen = new Option<int>("--n-gen", "-n") { Description = "Tokens decoded one at a time after the prompt (0: no decode test)", DefaultValueFactory = _ => 128 };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads (0: one per core)" };
        var reps = new Option<int>("--repetitions", "-r") { Description = "Timed repetitions, after an untimed warm-up", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var noRepack = new Option<bool>("--no-repack")
        {
            Description = "Read every matrix in the file's layout: no packed copy of the Q4_0, Q8_0, Q4_K and Q6_K matrices for the AVX-512 kernels (as llama.cpp's --no-repack)",
        };
        var cmd = new Command("bench", "Measure prompt and decode speed, load time, peak memory and memory bandwidth")
        {
            model, ropeFactor, prompt, gen, threads, reps, json, noRepack, cacheType,
        };
        cmd.SetAction(p =>
        {
            int nPrompt = p.GetValue(prompt), nGen = p.GetValue(gen), nThreads = p.GetValue(threads), nReps = p.GetValue(reps);
            if (nPrompt < 0) throw new Cli.UsageException($"--n-prompt must not be negative (got {nPrompt})");
            if (nGen < 0) throw new Cli.UsageException($"--n-gen must not be negative (got {nGen})");
            if (nThreads < 0) throw new Cli.UsageException($"--threads must not be negative (got {nThreads})");
            if (nReps < 1) throw new Cli.UsageException($"--repetitions must be at least 1 (got {nReps})");

            // Load time: what a user waits for before the first token (open and map, read every page, build).
            string path = p.GetValue(model)!;
            var load = Stopwatch.StartNew();
            using var files = ModelFiles.Open(path, new ModelLoadOptions { RopeFactor = p.GetValue(ropeFactor) });
            var c = files.Config;
            if ((long)nPrompt + nGen > c.ContextLength)
                throw new Cli.UsageException($"-p {nPrompt} + -n {nGen} = {(long)nPrompt + nGen} tokens exceed the model's context of {c.ContextLength}");
            using (var bar = new ProgressBar($"loading {Path.GetFileName(Path.TrimEndingDirectorySeparator(path))}"))
                files.Prefetch(bar);
            using var transformer = new Transformer(files, Math.Max(1, nPrompt), nThreads, packWeights: !p.GetValue(noRepack), cacheType: p.GetValue(cacheType));
            double loadSeconds = load.Elapsed.TotalSeconds;

            var run = new Runner(transformer, files, nPrompt, nGen);
            // Warm-up, as llama-bench's (the prompt and one decode step), repeated for a second so that .NET's tiered
            // JIT has replaced the first, unoptimized code of a small model's short passes before anything is timed.
            var warm = Stopwatch.StartNew();
            if (nPrompt + nGen > 0)
            {
                do run.Once(Math.Min(nGen, 1), out _, out _);
                while (warm.Elapsed.TotalSeconds < WarmupSeconds);
            }
            var pp = new List<double>();
            var tg = new List<double>();
            for (int r = 0; r < nReps; r++)
            {
                run.Once(nGen, out double ppSeconds, out double tgSeconds);
                // (A floor of a nanosecond keeps a pass below the timer's resolution finite, so the JSON stays valid.)
                if (nPrompt > 0) pp.Add(nPrompt / Math.Max(ppSeconds, 1e-9));
                if (nGen > 0) tg.Add(nGen / Math.Max(tgSeconds, 1e-9));
            }

            // Memory before the probe allocates its buffer, so the figures are the model's run alone.
            var memory = MemoryFigures.Read();
            var weights = WeightBytes(files);
            var bandwidth = BandwidthProbe.Measure(transformer.Workers, ProbeBytes, ProbeRuns);
            double floor = bandwidth.BytesPerSecond / weights.PerToken;

            var report = new JsonObject
            {
                ["model"] = path,
                ["threads"] = transformer.Workers,
                ["prompt_tokens"] = nPrompt,
                ["gen_tokens"] = nGen,
                ["pp_tps"] = Stats(pp),
                ["tg_tps"] = Stats(tg),
                ["load_s"] = loadSeconds,
                ["peak_rss_bytes"] = memory.PeakRss,
                ["private_bytes"] = memory.Private,
                ["bandwidth_gbps"] = bandwidth.BytesPerSecond / 1e9,
                ["weight_bytes_per_token"] = weights.PerToken,
                ["decode_floor_tps"] = floor,
                ["repetitions"] = nReps,
                ["packed_matrices"] = files.Tensors.Values.Count(transformer.IsPacked),
                ["cache_type"] = transformer.CacheType.ToString().ToLowerInvariant(),
                ["kv_cache_bytes"] = run.CacheBytes,
                ["model_bytes"] = weights.Total,
                ["params"] = weights.Parameters,
                ["bandwidth_buffer_bytes"] = bandwidth.Bytes,
                ["pp_samples_tps"] = new JsonArray(pp.Select(v => (JsonNode)v).ToArray()),
                ["tg_samples_tps"] = new JsonArray(tg.Select(v => (JsonNode)v).ToArray()),
            };
            using var stdout = Cli.OpenStdout();
            if (p.GetValue(json)) stdout.WriteLine(report.ToJsonString());
            else WriteTable(stdout, Path.GetFileName(Path.TrimEndingDirectorySeparator(path)), report, weights, bandwidth);
            stdout.Flush();
            return 0;
        });
        return cmd;
    }

    /// <summary>Runs the prompt and decode tests once from an empty cache.</summary>
    private sealed class Runner
    {
        private readonly Transformer _t;
        private readonly KvCache _cache;
        private readonly int[] _prompt;
        private readonly int _firstToken;
        private readonly float[] _logits;

        public Runner(Transformer t, ModelFiles files, int nPrompt, int nGen)
        {
            _t = t;
            int vocab = files.Config.VocabSize;
            // llama-bench's tokens: BOS first when the model adds one, then random ids (here from a fixed seed).
            var random = new Random(PromptSeed);
            int? bos = files.Tokenizer is { AddBos: true, BosId: int b } ? b : null;
            _prompt = new int[nPrompt];
            for (int i = 0; i < nPrompt; i++) _prompt[i] = i == 0 && bos is int first ? first : random.Next(vocab);
            _firstToken = bos ?? random.Next(vocab);
            _cache = t.CreateCache(Math.Max(1, nPrompt + nGen));
            _logits = new float[vocab];
        }

        /// <summary>Bytes of the cache the runs fill.</summary>
        public long CacheBytes => _cache.Bytes;

        public void Once(int gen, out double promptSeconds, out double genSeconds)
        {
            // A fresh cache each time: positions from 0, as llama-bench clears its KV memory between repetitions.
            _cache.Truncate(0);
            promptSeconds = genSeconds = 0;
            long start = Stopwatch.GetTimestamp();
            if (_prompt.Length > 0)
            {
                _t.Forward(_prompt, _cache, _logits);
                promptSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            }
            // Greedy decoding: the argmax costs microseconds next to a forward pass, so no sampler shows in the figure.
            Span<int> token = [_prompt.Length > 0 ? TensorPrimitives.IndexOfMax(_logits) : _firstToken];
            start = Stopwatch.GetTimestamp();
            for (int i = 0; i < gen; i++)
            {
                _t.Forward(token, _cache, _logits);
                token[0] = TensorPrimitives.IndexOfMax(_logits);
            }
            genSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
    }

    /// <summary>Mean and sample standard deviation (llama-bench's <c>stdev</c>: 0 for one sample), or null without samples.</summary>
    private static JsonObject? Stats(List<double> samples)
    {
        if (samples.Count == 0) return null;
        double mean = samples.Average();
        double sd = samples.Count < 2 ? 0 : Math.Sqrt(samples.Sum(v => (v - mean) * (v - mean)) / (samples.Count - 1));
        return new JsonObject { ["mean"] = mean, ["sd"] = sd };
    }

    private sealed record Weights(long Total, long Parameters, long PerToken);

    /// <summary>
    /// The bytes one decode step reads: every weight matrix and norm once, except the token embedding, of which only
    /// one row is gathered; the output projection is read whole, and when it is tied to the embedding that table
    /// counts once, as the output. (rope.freqs is read once, when the model is built.)
    /// </summary>
    private static Weights WeightBytes(ModelFiles files)
    {
        long total = 0, parameters = 0, perToken = 0;
        foreach (var t in files.Tensors.Values)
        {
            total += t.ByteSize;
            parameters += t.ElementCount;
            if (t.Name is not ("tok_embeddings.weight" or "rope.freqs")) perToken += t.ByteSize;
        }
        if (files.Config.TiedEmbeddings) perToken += files.Get("tok_embeddings.weight").ByteSize;
        return new Weights(total, parameters, perToken);
    }

    /// <summary>A table like llama-bench's markdown, then the load, memory and bandwidth lines.</summary>
    private static void WriteTable(TextWriter w, string name, JsonObject report, Weights weights, BandwidthProbe.Result bandwidth)
    {
        var inv = CultureInfo.InvariantCulture;
        // llama-bench's units: MiB below 1 GiB, else GiB; parameters in M below a billion, else B.
        string size = weights.Total < 1L << 30
            ? string.Format(inv, "{0:F2} MiB", weights.Total / 1048576.0)
            : string.Format(inv, "{0:F2} GiB", weights.Total / 1073741824.0);
        string parameters = weights.Parameters < 1_000_000_000
            ? string.Format(inv, "{0:F2} M", weights.Parameters / 1e6)
            : string.Format(inv, "{0:F2} B", weights.Parameters / 1e9);
        int threads = (int)report["threads"]!, nPrompt = (int)report["prompt_tokens"]!, nGen = (int)report["gen_tokens"]!;
        var rows = new List<(string Test, string Speed)>();
        string Speed(JsonNode? s) => s is null ? "-" : string.Format(inv, "{0:F2} ± {1:F2}", (double)s["mean"]!, (double)s["sd"]!);
        if (nPrompt > 0) rows.Add(($"pp{nPrompt}", Speed(report["pp_tps"])));
        if (nGen > 0) rows.Add((nPrompt > 0 ? $"tg{nGen} @ d{nPrompt}" : $"tg{nGen}", Speed(report["tg_tps"])));

        int mw = Math.Max(5, name.Length), tw = Math.Max(4, rows.Count == 0 ? 0 : rows.Max(r => r.Test.Length));
        int sw = Math.Max(14, rows.Count == 0 ? 0 : rows.Max(r => r.Speed.Length));
        w.WriteLine($"| {"model".PadRight(mw)} | {"size",10} | {"params",10} | threads | {"test".PadLeft(tw)} | {"t/s".PadLeft(sw)} |");
        w.WriteLine($"| {new string('-', mw)} | ---------: | ---------: | ------: | {new string('-', tw - 1)}: | {new string('-', sw - 1)}: |");
        foreach (var (test, speed) in rows)
            w.WriteLine($"| {name.PadRight(mw)} | {size,10} | {parameters,10} | {threads,7} | {test.PadLeft(tw)} | {speed.PadLeft(sw)} |");
        w.WriteLine();

        string Bytes(long? b) => b is long v
            ? v >= 1L << 30 ? string.Format(inv, "{0:F2} GiB", v / 1073741824.0) : string.Format(inv, "{0:F1} MiB", v / 1048576.0)
            : "n/a";
        int packed = (int)report["packed_matrices"]!;
        w.WriteLine(string.Format(inv, "load {0:F2} s (open, prefetch, {1}build); peak RSS {2}; private {3}; KV cache {4} {5}",
            (double)report["load_s"]!, packed > 0 ? $"pack {packed} matrices, " : "", Bytes((long?)report["peak_rss_bytes"]),
            Bytes((long?)report["private_bytes"]), (string)report["cache_type"]!, Bytes((long?)report["kv_cache_bytes"])));
        w.WriteLine(string.Format(inv,
            "memory bandwidth {0:F1} GB/s ({1} read by {2} threads, best of {3}); weights read per token {4}; decode floor {5:F2} t/s",
            (double)report["bandwidth_gbps"]!, Bytes(bandwidth.Bytes), threads, ProbeRuns, Bytes(weights.PerToken),
            (double)report["decode_floor_tps"]!));
    }

    /// <summary>Peak and private resident memory of this process.</summary>
    private sealed record MemoryFigures(long PeakRss, long? Private)
    {
        /// <summary>
        /// Linux: VmHWM (peak resident set, the mapped weights' pages included) and RssAnon (private, anonymous pages)
        /// from /proc/self/status; elsewhere the peak working set and, on Windows, the private bytes.
        /// </summary>
        public static MemoryFigures Read()
        {
            using var self = Process.GetCurrentProcess();
            long? hwm = null, anon = null;
            if (OperatingSystem.IsLinux() && File.Exists("/proc/self/status"))
            {
                foreach (string line in File.ReadLines("/proc/self/status"))
                {
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) hwm = Kilobytes(line);
                    else if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) anon = Kilobytes(line);
                }
            }
            long? priv = anon ?? (OperatingSystem.IsWindows() ? self.PrivateMemorySize64 : null);
            return new MemoryFigures(hwm ?? self.PeakWorkingSet64, priv);
        }

        // "VmHWM:	  123456 kB"
        private static long? Kilobytes(string line)
        {
            var parts = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            return parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long kb)
                ? kb * 1024 : null;
        }
    }

    /// <summary>
    /// Read bandwidth of main memory with the benchmark's thread count: each thread sums its own slice of one buffer
    /// with the widest vector loads the machine has; the best of a few runs.
    /// </summary>
    /// <remarks>
    /// The buffer is anonymous memory of a fixed size rather than the model's weights, so the figure is a property of
    /// the machine, the same for every model and comparable with other tools (STREAM-like), and reading it measures
    /// neither page faults nor the file's readahead; its pages are faulted in before timing. For a model whose
    /// weights fit in the caches decode is not bound by this figure, and the floor beside it means little.
    /// </remarks>
    internal static class BandwidthProbe
    {
        public sealed record Result(long Bytes, double BytesPerSecond);

        private const int Unit = 4096;

        public static Result Measure(int threads, long bytes, int runs)
        {
            // Not more than an eighth of the memory the process may use, for small machines and containers.
            long limit = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 8;
            if (limit > 0) bytes = Math.Min(bytes, limit);
            int slice = (int)Math.Max(Unit, bytes / threads / Unit * Unit);
            bytes = (long)slice * threads;
            // A pinned array, started at a 4 KiB boundary, so every slice begins on a page and a cache line.
            var array = GC.AllocateUninitializedArray<byte>(checked((int)(bytes + Unit)), pinned: true);
            var handle = GCHandle.Alloc(array, GCHandleType.Pinned);
            try
            {
                int offset = (int)((Unit - handle.AddrOfPinnedObject() % Unit) % Unit);
                var sums = new ulong[threads];
                using var barrier = new Barrier(threads + 1);
                var workers = new Thread[threads];
                for (int i = 0; i < threads; i++)
                {
                    int start = offset + i * slice, index = i;
                    workers[i] = new Thread(() =>
                    {
                        for (int r = 0; r <= runs; r++)
                        {
                            barrier.SignalAndWait();
                            if (r == 0) FaultIn(array.AsSpan(start, slice));
                            else sums[index] += Sum(array.AsSpan(start, slice));
                            barrier.SignalAndWait();
                        }
                    }) { IsBackground = true, Name = $"llama3 bandwidth {i}" };
                    workers[i].Start();
                }
                double best = double.MaxValue;
                for (int r = 0; r <= runs; r++)
                {
                    barrier.SignalAndWait(); // every thread is waiting; all start now
                    long t0 = Stopwatch.GetTimestamp();
                    barrier.SignalAndWait(); // every thread has finished its slice
                    double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                    if (r > 0) best = Math.Min(best, seconds);
                }
                foreach (var t in workers) t.Join();
                GC.KeepAlive(sums);
                return new Result(bytes, bytes / best);
            }
            finally
            {
                handle.Free();
            }
        }

        // Writes every page once, from the thread that will read it (so it is placed near it on NUMA machines), and
        // gives each page different bytes so that no page-merging (KSM, a hypervisor's) can fold them into one.
        private static void FaultIn(Span<byte> slice)
        {
            slice.Fill(1);
            for (int page = 0; page < slice.Length / Unit; page++)
                MemoryMarshal.Write(slice[(page * Unit)..], (long)page);
        }

        // Sums 64-bit lanes with four independent accumulators so several loads are in flight; the length is a
        // multiple of 4096 bytes.
        private static ulong Sum(ReadOnlySpan<byte> bytes)
        {
            ref ulong p = ref Unsafe.As<byte, ulong>(ref MemoryMarshal.GetReference(bytes));
            nuint n = (nuint)(bytes.Length / sizeof(ulong));
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<ulong> a = default, b = default, c = default, d = default;
                for (nuint i = 0; i < n; i += 32)
                {
                    a += Vector512.LoadUnsafe(ref p, i);
                    b += Vector512.LoadUnsafe(ref p, i + 8);
                    c += Vector512.LoadUnsafe(ref p, i + 16);
                    d += Vector512.LoadUnsafe(ref p, i + 24);
                }
                return Vector512.Sum(a + b + c + d);
            }
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<ulong> a = default, b = default, c = default, d = default;
                for (nuint i = 0; i < n; i += 16)
                {
                    a += Vector256.LoadUnsafe(ref p, i);
                    b += Vector256.LoadUnsafe(ref p, i + 4);
                    c += Vector256.LoadUnsafe(ref p, i + 8);
                    d += Vector256.LoadUnsafe(ref p, i + 12);
                }
                return Vector256.Sum(a + b + c + d);
            }
            if (Vector128.IsHardwareAccelerated)
            {
                Vector128<ulong> a = default, b = default, c = default, d = default;
                for (nuint i = 0; i < n; i += 8)
                {
                    a += Vector128.LoadUnsafe(ref p, i);
                    b += Vector128.LoadUnsafe(ref p, i + 2);
                    c += Vector128.LoadUnsafe(ref p, i + 4);
                    d += Vector128.LoadUnsafe(ref p, i + 6);
                }
                return Vector128.Sum(a + b + c + d);
            }
            ulong s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (nuint i = 0; i < n; i += 4)
            {
                s0 += Unsafe.Add(ref p, i);
                s1 += Unsafe.Add(ref p, i + 1);
                s2 += Unsafe.Add(ref p, i + 2);
                s3 += Unsafe.Add(ref p, i + 3);
            }
            return s0 + s1 + s2 + s3;
        }
    }
}
