using Llama3.Formats;
using Llama3.Formats.Gguf;
using Llama3.Kernels.Quant;
using Llama3.Tokenization;

namespace Llama3.Model;

/// <summary>Reads a llama-architecture GGUF file (llama.cpp's metadata keys, <c>llama.*</c>).</summary>
internal static unsafe class GgufModel
{
    public static ModelFiles Open(string path, ModelLoadOptions options)
    {
        var gguf = GgufFile.Open(path);
        try
        {
            return Build(gguf, options);
        }
        catch
        {
            gguf.Dispose();
            throw;
        }
    }

    private static ModelFiles Build(GgufFile g, ModelLoadOptions options)
    {
        string path = g.FilePath;
        string arch = g.GetString("general.architecture") ?? throw new ModelFormatException(path, "general.architecture is missing");
        if (arch != "llama")
            throw new ModelFormatException(path, $"architecture '{arch}' is not supported (only 'llama')");
        int Req(string key) => checked((int)(g.GetInt64($"{arch}.{key}") ?? throw new ModelFormatException(path, $"{arch}.{key} is missing")));
        int? Opt(string key) => g.GetInt64($"{arch}.{key}") is long v ? checked((int)v) : null;

        var tensors = new List<WeightTensor>();
        foreach (var t in g.Tensors)
        {
            string? meta = TensorNames.FromGguf(t.Name);
            if (meta is null) continue;
            var shape = t.Dimensions.Reverse().ToArray(); // ggml's ne0 is the innermost (row) dimension
            tensors.Add(new WeightTensor(meta, t.Name, t.Type, shape, g.GetTensorPointer(t), t.ByteSize));
        }
        var byName = tensors.ToDictionary(t => t.Name);

        var tokenizer = g.Find("tokenizer.ggml.model") is null ? null : TokenizerLoader.FromGguf(g);
        int dim = Req("embedding_length");
        int heads = Req("attention.head_count");
        int vocab = Opt("vocab_size") ?? tokenizer?.VocabularySize
            ?? (byName.TryGetValue("tok_embeddings.weight", out var emb) ? (int)emb.Rows : 0);
        bool hasFreqs = byName.ContainsKey("rope.freqs");
        RopeScaling? scaling = null;
        if (options.RopeFactor is double f)
        {
            scaling = RopeScaling.Llama31(f);
            hasFreqs = false;
            byName.Remove("rope.freqs");
            tensors.RemoveAll(t => t.Name == "rope.freqs");
        }
        var config = new LlamaConfig
        {
            Architecture = arch,
            VocabSize = vocab,
            Dim = dim,
            Layers = Req("block_count"),
            Heads = heads,
            KvHeads = Opt("attention.head_count_kv") ?? heads,
            HeadDim = Opt("attention.key_length") ?? Opt("rope.dimension_count") ?? (heads > 0 ? dim / heads : 0),
            FfnDim = Req("feed_forward_length"),
            NormEps = g.GetDouble($"{arch}.attention.layer_norm_rms_epsilon") ?? throw new ModelFormatException(path, $"{arch}.attention.layer_norm_rms_epsilon is missing"),
            RopeTheta = g.GetDouble($"{arch}.rope.freq_base") ?? 10000.0, // llama.cpp's default (Llama 2)
            RopeScaling = scaling,
            HasRopeFreqsTensor = hasFreqs,
            ContextLength = Opt("context_length") ?? 2048,
            TiedEmbeddings = !byName.ContainsKey("output.weight"),
            BosId = tokenizer?.BosId,
            EosIds = tokenizer?.EndOfGenerationIds ?? [],
            ChatTemplate = g.GetString("tokenizer.chat_template"),
        }.Validate(path);
        TensorNames.CheckComplete(path, config, byName);
        var fileTensors = g.Tensors.Select(t => new FileTensorInfo(t.Name, QuantTable.Get(t.Type).Name, t.ByteSize)).ToList();
        return new ModelFiles(path, ModelFormat.Gguf, config, tokenizer, tensors, QkLayout.Interleaved, g.FileLength, fileTensors, [g]);
    }
}
