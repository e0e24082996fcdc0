using System.Diagnostics;
using System.Globalization;
using Llama3.Formats.Gguf;
using Llama3.Kernels.Quant;
using Llama3.Model;
using Llama3.ModelMaker;

// bench/make-models OUT_DIR [--force] [--types F16,Q8_0,Q4_0,Q4_K_M] [--tokenizer-from FILE]
// Writes Llama 3.2 1B-shaped GGUF files with random weights for `llama3 bench` and llama.cpp's llama-bench.
const string Usage = "usage: make-models OUT_DIR [--force] [--types F16,Q8_0,Q4_0,Q4_K_M] [--tokenizer-from FILE]";
try
{
    string? outDir = null, tokenizerFrom = null;
    bool force = false;
    var variants = Variant.All.ToList();
    for (int i = 0; i < args.Length; i++)
    {
        string a = args[i];
        string Next() => i + 1 < args.Length ? args[++i] : throw new UsageException($"{a} needs a value");
        switch (a)
        {
            case "-h" or "--help": Console.WriteLine(Usage); return 0;
            case "--force": force = true; break;
            case "--tokenizer-from": tokenizerFrom = Next(); break;
            case "--types":
                var names = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                variants = names.Select(n => Variant.All.FirstOrDefault(v => v.Name.Equals(n, StringComparison.OrdinalIgnoreCase))
                    ?? throw new UsageException($"unknown type '{n}' (known: {string.Join(", ", Variant.All.Select(v => v.Name))})")).ToList();
                break;
            default:
                if (a.StartsWith('-')) throw new UsageException($"unknown option {a}");
                if (outDir is not null) throw new UsageException("give one OUT_DIR");
                outDir = a;
                break;
        }
    }
    if (outDir is null) throw new UsageException(Usage);

    string repo = RepositoryRoot();
    string target = Path.GetFullPath(outDir);
    RefuseInsideRepository(target, repo);
    tokenizerFrom ??= Path.Combine(repo, "..", "shared", "models", "tiny", "llama3-tiny-BF16.gguf");
    if (!File.Exists(tokenizerFrom))
        throw new UsageException($"{tokenizerFrom}: no such file (the Llama 3 vocabulary is copied from it; give --tokenizer-from)");
    Directory.CreateDirectory(target);

    using var vocab = GgufFile.Open(tokenizerFrom);
    if (vocab.GetArray<string>("tokenizer.ggml.tokens")?.Length != Llama32Shape.Vocab)
        throw new UsageException($"{tokenizerFrom}: its tokenizer.ggml.tokens is not the {Llama32Shape.Vocab}-token Llama 3 vocabulary");
    foreach (var v in variants)
    {
        string path = Path.Combine(target, v.FileName);
        long expected = Llama32Shape.Build(v, vocab, dry: true).Write(Stream.Null);
        if (!force && File.Exists(path) && new FileInfo(path).Length == expected)
        {
            Console.Error.WriteLine($"{path}: present with the expected size, kept (--force rewrites it)");
        }
        else
        {
            Console.Error.WriteLine($"writing {path} ({Gib(expected)}) ...");
            var clock = Stopwatch.StartNew();
            Llama32Shape.Build(v, vocab, dry: false).WriteFile(path);
            Console.Error.WriteLine($"  written in {clock.Elapsed.TotalSeconds:F1} s");
        }
        long size = new FileInfo(path).Length;
        if (size != expected) throw new InvalidOperationException($"{path}: {size} bytes, {expected} expected");
        Check(path, v);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{path}\t{size}\t{Gib(size)}"));
    }
    return 0;
}
catch (Exception e) when (e is UsageException or IOException or UnauthorizedAccessException or Llama3.Formats.ModelFormatException
                               or InvalidOperationException or ArgumentException)
{
    Console.Error.WriteLine($"make-models: error: {e.Message}");
    return 1;
}

static string Gib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1073741824.0:F2} GiB");

// The repository holding this program: the first folder above its binaries with Llama3.slnx.
static string RepositoryRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "Llama3.slnx"))) return dir.FullName;
    throw new UsageException($"no folder above {AppContext.BaseDirectory} holds Llama3.slnx; run make-models from the repository");
}

// The project holds no model files (STYLE.md): refuse the repository and any folder inside it, or inside any other
// checkout of it (an ancestor holding Llama3.slnx catches a path that reaches the repository through a link).
static void RefuseInsideRepository(string target, string repo)
{
    string root = Path.TrimEndingDirectorySeparator(repo);
    if (target == root || target.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        throw new UsageException($"{target} is inside the repository {root}; write the models outside it");
    for (var dir = new DirectoryInfo(target); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "Llama3.slnx")))
            throw new UsageException($"{target} is inside a checkout of this repository ({dir.FullName}); write the models outside it");
}

// Opens the file as the engine does and checks that it is the model it should be.
static void Check(string path, Variant v)
{
    using var files = ModelFiles.Open(path);
    var c = files.Config;
    void Expect(string what, object actual, object wanted)
    {
        if (!actual.Equals(wanted)) throw new InvalidOperationException($"{path}: {what} is {actual}, expected {wanted}");
    }
    Expect("dim", c.Dim, Llama32Shape.Dim);
    Expect("layers", c.Layers, Llama32Shape.Layers);
    Expect("heads", c.Heads, Llama32Shape.Heads);
    Expect("kv_heads", c.KvHeads, Llama32Shape.KvHeads);
    Expect("head_dim", c.HeadDim, Llama32Shape.HeadDim);
    Expect("ffn_dim", c.FfnDim, Llama32Shape.FfnDim);
    Expect("vocab_size", c.VocabSize, Llama32Shape.Vocab);
    Expect("context_length", c.ContextLength, Llama32Shape.Context);
    Expect("rope_theta", c.RopeTheta, 500000.0);
    Expect("norm_eps", c.NormEps, 1e-5);
    Expect("rope_freqs", c.HasRopeFreqsTensor, true);
    Expect("tied_embeddings", c.TiedEmbeddings, false);
    Expect("bos_id", c.BosId ?? -1, 128000);
    Expect("tokens of 'Hello, world!'", string.Join(",", files.Tokenizer!.EncodeToIds("Hello, world!", addBos: true)), "128000,9906,11,1917,0");
    Expect("token_embd type", files.Get("tok_embeddings.weight").Type, v.Embedding);
    Expect("output type", files.Get("output.weight").Type, v.Output);
    Expect("attn_q type", files.Get("layers.0.attention.wq.weight").Type, v.Weights);
    Expect("attn_v type", files.Get("layers.0.attention.wv.weight").Type, v.AttnV);
    Expect("ffn_down type", files.Get("layers.15.feed_forward.w2.weight").Type, v.FfnDown);
    // The weights read back as finite numbers of the intended size (one row of each kind of tensor).
    foreach (string name in new[] { "tok_embeddings.weight", "layers.0.attention.wq.weight", "layers.0.attention.wv.weight",
                 "layers.15.feed_forward.w2.weight", "output.weight" })
    {
        var t = files.Get(name);
        var row = new float[t.Columns];
        QuantTable.Dequantize(t.Type, t.Row(t.Rows - 1), row);
        double sd = Math.Sqrt(row.Sum(x => (double)x * x) / row.Length);
        if (!row.All(float.IsFinite) || !(sd > RandomBlocks.WeightSd / 4 && sd < RandomBlocks.WeightSd * 4))
            throw new InvalidOperationException($"{path}: tensor '{t.SourceName}' reads back with rms {sd} (or a non-finite value)");
    }
}

/// <summary>A bad command line or environment: one line, exit 1.</summary>
internal sealed class UsageException(string message) : Exception(message);
