using System.Text.Json;
using Llama3.Formats;
using Llama3.Formats.Pth;
using Llama3.Kernels.Quant;
using Llama3.Tokenization;

namespace Llama3.Model;

/// <summary>
/// Reads Meta's original checkpoint directory: params.json, consolidated.NN.pth (one per model-parallel rank) and
/// tokenizer.model. One shard is read in place from its mapping; several are merged the way Meta's model
/// parallelism split them (column-parallel <c>wq wk wv w1 w3 output</c> and <c>tok_embeddings</c> on dim 0,
/// row-parallel <c>wo w2</c> on dim 1, norms replicated) into one native buffer per tensor.
/// </summary>
internal static unsafe class MetaModel
{
    public static ModelFiles Open(string dir, ModelLoadOptions options)
    {
        string paramsPath = Path.Combine(dir, "params.json");
        using var doc = HuggingFaceModel.ParseJson(paramsPath);
        var p = doc.RootElement;
        var shardPaths = Directory.GetFiles(dir, "consolidated.*.pth").Order(StringComparer.Ordinal).ToArray();
        if (shardPaths.Length == 0) throw new FileNotFoundException($"{dir}: no consolidated.NN.pth checkpoint beside params.json", dir);
        var owned = new List<IDisposable>();
        try
        {
            var shards = new List<PthCheckpoint>();
            foreach (var s in shardPaths)
            {
                var c = PthCheckpoint.Open(s);
                owned.Add(c);
                shards.Add(c);
            }
            var tensors = shards.Count == 1 ? InPlace(shards[0]) : Merge(dir, shards, owned);
            var byName = tensors.ToDictionary(t => t.Name);

            LlamaTokenizer? tokenizer = File.Exists(Path.Combine(dir, "tokenizer.model")) ? LlamaTokenizer.FromFile(dir) : null;
            int Req(string key) => HuggingFaceModel.Int(p, key, paramsPath) ?? throw new ModelFormatException(paramsPath, $"{key} is missing");
            int dim = Req("dim"), heads = Req("n_heads");
            int vocab = HuggingFaceModel.Int(p, "vocab_size", paramsPath) is int v && v > 0 ? v
                : byName.TryGetValue("tok_embeddings.weight", out var emb) ? (int)emb.Rows : tokenizer?.VocabularySize ?? 0;
            bool scaled = p.TryGetProperty("use_scaled_rope", out var u) && u.ValueKind == JsonValueKind.True;

            // Llama 3.2 1B/3B tie the output to the embedding; Meta's files then have no output.weight or a copy of it.
            bool tied = !byName.TryGetValue("output.weight", out var output)
                || (byName.TryGetValue("tok_embeddings.weight", out var e) && SameBytes(output, e));
            if (tied) byName.Remove("output.weight");
            RopeScaling? scaling = scaled ? RopeScaling.Llama31(tied ? 32 : 8) : null;
            if (options.RopeFactor is double f) scaling = (scaling ?? RopeScaling.Llama31()) with { Factor = f };

            var config = new LlamaConfig
            {
                VocabSize = vocab,
                Dim = dim,
                Layers = Req("n_layers"),
                Heads = heads,
                KvHeads = HuggingFaceModel.Int(p, "n_kv_heads", paramsPath) ?? heads,
                HeadDim = heads > 0 ? dim / heads : 0,
                FfnDim = LlamaConfig.MetaFfnDim(dim, HuggingFaceModel.Int(p, "multiple_of", paramsPath) ?? 256,
                    HuggingFaceModel.Num(p, "ffn_dim_multiplier", paramsPath)),
                NormEps = HuggingFaceModel.Num(p, "norm_eps", paramsPath) ?? 1e-5,
                RopeTheta = HuggingFaceModel.Num(p, "rope_theta", paramsPath) ?? 500000, // Meta's ModelArgs default for Llama 3
                RopeScaling = scaling,
                ContextLength = scaled ? 131072 : 8192,
                TiedEmbeddings = tied,
                BosId = tokenizer?.BosId,
                EosIds = tokenizer?.EndOfGenerationIds ?? [],
            }.Validate(paramsPath);
            TensorNames.CheckComplete(dir, config, byName);
            var fileTensors = shards.SelectMany(s => s.Tensors.Select(t => new FileTensorInfo(t.Name, TypeName(t.DType), t.ByteSize))).ToList();
            return new ModelFiles(dir, ModelFormat.Meta, config, tokenizer, byName.Values, QkLayout.Interleaved,
                shards.Sum(s => s.FileLength), fileTensors, owned);
        }
        catch
        {
            foreach (var d in owned) d.Dispose();
            throw;
        }
    }

    // The quantization table's names for the float types, so reports read alike for every format.
    private static string TypeName(PthDType d) => d switch
    {
        PthDType.BFloat16 => "BF16",
        PthDType.Float16 => "F16",
        PthDType.Float32 => "F32",
        _ => d.ToString(),
    };

    private static bool SameBytes(WeightTensor a, WeightTensor b) =>
        a.Type == b.Type && a.Shape.SequenceEqual(b.Shape) &&
        new ReadOnlySpan<byte>(a.Data, checked((int)a.ByteSize)).SequenceEqual(new ReadOnlySpan<byte>(b.Data, checked((int)b.ByteSize)));

    private static GgmlType TypeOf(PthCheckpoint c, PthTensor t) => t.DType switch
    {
        PthDType.BFloat16 => GgmlType.BF16,
        PthDType.Float16 => GgmlType.F16,
        PthDType.Float32 => GgmlType.F32,
        _ => throw new ModelFormatException(c.FilePath, $"tensor '{t.Name}' is {t.DType}; only bfloat16, float16 and float32 weights are supported"),
    };

    // Meta's names are the engine's names; "rope.freqs" in old checkpoints is a complex buffer, not weights.
    private static bool Wanted(string name) => name != "rope.freqs";

    private static List<WeightTensor> InPlace(PthCheckpoint c)
    {
        var list = new List<WeightTensor>();
        foreach (var t in c.Tensors)
        {
            if (!Wanted(t.Name)) continue;
            if (!t.IsContiguous) throw new ModelFormatException(c.FilePath, $"tensor '{t.Name}' is not contiguous");
            list.Add(new WeightTensor(t.Name, t.Name, TypeOf(c, t), t.Shape, c.GetPointer(t), t.ByteSize));
        }
        return list;
    }

    private static int SplitDim(string name)
    {
        if (name.EndsWith("attention.wo.weight", StringComparison.Ordinal) || name.EndsWith("feed_forward.w2.weight", StringComparison.Ordinal))
            return 1;
        if (name.EndsWith("norm.weight", StringComparison.Ordinal)) return -1; // replicated
        return 0;
    }

    private static List<WeightTensor> Merge(string dir, List<PthCheckpoint> shards, List<IDisposable> owned)
    {
        var list = new List<WeightTensor>();
        var first = shards[0];
        foreach (var t0 in first.Tensors)
        {
            if (!Wanted(t0.Name)) continue;
            var parts = shards.Select(s => s.Find(t0.Name)
                ?? throw new ModelFormatException(s.FilePath, $"tensor '{t0.Name}' is missing from this shard")).ToArray();
            var type = TypeOf(first, t0);
            for (int i = 0; i < parts.Length; i++)
            {
                if (parts[i].DType != t0.DType || parts[i].Shape.Length != t0.Shape.Length || !parts[i].IsContiguous)
                    throw new ModelFormatException(shards[i].FilePath, $"tensor '{t0.Name}' does not match the first shard's type and rank");
            }
            int split = SplitDim(t0.Name);
            if (split < 0 || t0.Shape.Length == 1)
            {
                list.Add(new WeightTensor(t0.Name, t0.Name, type, t0.Shape, first.GetPointer(t0), t0.ByteSize));
                continue;
            }
            var shape = (long[])t0.Shape.Clone();
            shape[split] = parts.Sum(x => x.Shape[split]);
            for (int d = 0; d < shape.Length; d++)
                if (d != split && parts.Any(x => x.Shape[d] != t0.Shape[d]))
                    throw new ModelFormatException(dir, $"tensor '{t0.Name}' has shards of different shapes along dim {d}");
            long total = parts.Sum(x => x.ByteSize);
            var buffer = new NativeBuffer(total);
            owned.Add(buffer);
            byte* dst = buffer.Pointer;
            if (split == 0)
            {
                for (int i = 0; i < parts.Length; i++)
                {
                    Buffer.MemoryCopy(shards[i].GetPointer(parts[i]), dst, parts[i].ByteSize, parts[i].ByteSize);
                    dst += parts[i].ByteSize;
                }
            }
            else
            {
                long rows = t0.Shape[0];
                for (long r = 0; r < rows; r++)
                {
                    for (int i = 0; i < parts.Length; i++)
                    {
                        long rowBytes = parts[i].ByteSize / rows;
                        Buffer.MemoryCopy(shards[i].GetPointer(parts[i]) + r * rowBytes, dst, rowBytes, rowBytes);
                        dst += rowBytes;
                    }
                }
            }
            list.Add(new WeightTensor(t0.Name, t0.Name, type, shape, buffer.Pointer, total));
        }
        return list;
    }
}
