using Llama3.Formats;
using Llama3.Formats.Gguf;
using Llama3.Tokenization;
using Llama3.Kernels.Quant;

namespace Llama3.Model;

/// <summary>How the files order the rows of <c>wq</c> and <c>wk</c> within each head.</summary>
public enum QkLayout
{
    /// <summary>Meta's and GGUF's order: RoPE rotates adjacent pairs (0,1), (2,3), ...</summary>
    Interleaved,

    /// <summary>
    /// Hugging Face's order: transformers' conversion permuted the rows so that RoPE rotates halves (i, i + head_dim/2).
    /// Row r of head h in this order is Meta's row <see cref="ModelFiles.MetaRowOfRotateHalfRow"/>. The engine applies
    /// RoPE to halves for such weights instead of copying them into Meta's order.
    /// </summary>
    RotateHalf,
}

/// <summary>
/// A model opened from any of the three formats: one <see cref="LlamaConfig"/>, its tokenizer, and its weights as
/// <see cref="WeightTensor"/> views under Meta's names, read in place from memory mappings.
/// </summary>
/// <remarks>
/// Meta's params.json says <c>use_scaled_rope</c> without the factor, and Meta's code hard-codes 8, which is wrong for
/// Llama 3.2. The rule here: a Meta checkpoint with <c>use_scaled_rope</c> whose output projection is tied (no
/// <c>output.weight</c>, or one byte-identical to <c>tok_embeddings.weight</c>, as only Llama 3.2 1B/3B have) gets
/// factor 32; otherwise 8. <see cref="ModelLoadOptions.RopeFactor"/> overrides it for every format.
/// </remarks>
public sealed class ModelFiles : IDisposable
{
    private readonly List<IDisposable> _owned;
    private readonly Dictionary<string, WeightTensor> _tensors;

    internal ModelFiles(string path, ModelFormat format, LlamaConfig config, LlamaTokenizer? tokenizer,
        IEnumerable<WeightTensor> tensors, QkLayout qkLayout, long fileBytes, IReadOnlyList<FileTensorInfo> fileTensors,
        List<IDisposable> owned)
    {
        Path = path;
        Format = format;
        Config = config;
        Tokenizer = tokenizer;
        QkLayout = qkLayout;
        FileBytes = fileBytes;
        FileTensors = fileTensors;
        _owned = owned;
        _tensors = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The path given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>Which format the files are.</summary>
    public ModelFormat Format { get; }

    /// <summary>The model's configuration.</summary>
    public LlamaConfig Config { get; }

    /// <summary>The tokenizer the files carry, or null when they carry none (then pass one explicitly).</summary>
    public LlamaTokenizer? Tokenizer { get; }

    /// <summary>Row order of wq/wk.</summary>
    public QkLayout QkLayout { get; }

    /// <summary>Total size of the model's files.</summary>
    public long FileBytes { get; }

    /// <summary>Every tensor in the files, as stored (for <c>llama3 info</c>).</summary>
    public IReadOnlyList<FileTensorInfo> FileTensors { get; }

    /// <summary>The weights by Meta's name.</summary>
    public IReadOnlyDictionary<string, WeightTensor> Tensors => _tensors;

    /// <summary>A weight by Meta's name; a missing one is an error naming it and the files.</summary>
    public WeightTensor Get(string name) =>
        _tensors.GetValueOrDefault(name) ?? throw new ModelFormatException(Path, $"tensor '{name}' is missing");

    /// <summary>A weight by Meta's name, or null.</summary>
    public WeightTensor? Find(string name) => _tensors.GetValueOrDefault(name);

    /// <summary>
    /// Opens a GGUF file, a Hugging Face directory (config.json + safetensors) or a Meta directory (params.json +
    /// consolidated.NN.pth).
    /// </summary>
    public static ModelFiles Open(string path, ModelLoadOptions? options = null)
    {
        options ??= new ModelLoadOptions();
        if (options.RopeFactor is double f && !(f > 0 && f < 1e6))
            throw new ArgumentException($"the rope factor must be positive (got {f})");
        if (Directory.Exists(path))
        {
            if (File.Exists(System.IO.Path.Combine(path, "config.json"))) return HuggingFaceModel.Open(path, options);
            if (File.Exists(System.IO.Path.Combine(path, "params.json"))) return MetaModel.Open(path, options);
            var ggufs = Directory.GetFiles(path, "*.gguf");
            if (ggufs.Length == 1) return GgufModel.Open(ggufs[0], options);
            throw new FileNotFoundException(
                $"{path}: not a model directory (no config.json for Hugging Face, no params.json for Meta, no single .gguf file)", path);
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file or directory", path);
        return GgufModel.Open(path, options);
    }

    /// <summary>
    /// For Hugging Face's q/k rows (<see cref="QkLayout.RotateHalf"/>): the Meta row that row <paramref name="row"/> holds.
    /// transformers permutes with <c>w.view(heads, head_dim/2, 2, in).transpose(1, 2)</c>, so within a head, row
    /// <c>half*(head_dim/2) + i</c> is Meta's row <c>2*i + half</c>.
    /// </summary>
    public static int MetaRowOfRotateHalfRow(int row, int headDim)
    {
        int head = row / headDim, r = row % headDim, halfDim = headDim / 2;
        int half = r / halfDim, i = r % halfDim;
        return head * headDim + 2 * i + half;
    }

    /// <summary>
    /// Reads every page of the weights once, so a cold file is loaded from disk now (with progress) rather than on
    /// the first token; the weights stay in the mapping (page cache), not in private memory.
    /// </summary>
    public unsafe void Prefetch(IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        long total = Math.Max(1, _tensors.Values.Sum(t => t.ByteSize)), done = 0, pages = 0;
        int sink = 0;
        foreach (var t in _tensors.Values.OrderBy(t => (nuint)t.Data))
        {
            for (long off = 0; off < t.ByteSize; off += 4096)
            {
                sink += System.Threading.Volatile.Read(ref t.Data[off]);
                if (++pages % 4096 == 0) // every 16 MiB
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    progress?.Report((double)(done + off) / total);
                }
            }
            done += t.ByteSize;
        }
        GC.KeepAlive(sink);
        progress?.Report(1.0);
    }

    /// <summary>
    /// Drops a tensor's pages from this process's resident memory where it lies in a file mapping and the system allows
    /// it (see <see cref="Formats.MappedPages.Release"/>): for a tensor the engine holds packed. The tensor stays
    /// readable. Returns whether pages were released. The range is <paramref name="bytes"/> of the tensor's bytes from
    /// <paramref name="offset"/>.
    /// </summary>
    internal unsafe bool ReleasePages(WeightTensor tensor, long offset, long bytes)
    {
        if (offset < 0 || bytes < 0 || offset > tensor.ByteSize - bytes) throw new ArgumentOutOfRangeException(nameof(offset));
        foreach (var owned in _owned)
            if (owned is Formats.IFileMapping file && file.Maps(tensor.Data, tensor.ByteSize))
                return Formats.MappedPages.Release(tensor.Data + offset, bytes);
        return false;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}

/// <summary>One tensor as stored in a model file: for reports.</summary>
/// <param name="Name">The name in the file.</param>
/// <param name="Type">Its type name (GGUF type, or safetensors/PyTorch dtype).</param>
/// <param name="Bytes">Bytes of data.</param>
public sealed record FileTensorInfo(string Name, string Type, long Bytes);

/// <summary>Native memory for tensors that cannot stay in the mapping (merged shards).</summary>
internal sealed unsafe class NativeBuffer(long bytes) : IDisposable
{
    public byte* Pointer { get; private set; } = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes), 64);

    public void Dispose()
    {
        if (Pointer == null) return;
        System.Runtime.InteropServices.NativeMemory.AlignedFree(Pointer);
        Pointer = null;
    }
}

/// <summary>Maps GGUF's tensor names to Meta's.</summary>
internal static class TensorNames
{
    /// <summary>Meta's name for a GGUF tensor name, or null for a tensor the engine does not use.</summary>
    public static string? FromGguf(string name)
    {
        switch (name)
        {
            case "token_embd.weight": return "tok_embeddings.weight";
            case "output_norm.weight": return "norm.weight";
            case "output.weight": return "output.weight";
            case "rope_freqs.weight": return "rope.freqs";
        }
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return null;
        int dot = name.IndexOf('.', 4);
        if (dot < 0 || !int.TryParse(name.AsSpan(4, dot - 4), out int layer)) return null;
        string part = name[(dot + 1)..] switch
        {
            "attn_q.weight" => "attention.wq.weight",
            "attn_k.weight" => "attention.wk.weight",
            "attn_v.weight" => "attention.wv.weight",
            "attn_output.weight" => "attention.wo.weight",
            "ffn_gate.weight" => "feed_forward.w1.weight",
            "ffn_down.weight" => "feed_forward.w2.weight",
            "ffn_up.weight" => "feed_forward.w3.weight",
            "attn_norm.weight" => "attention_norm.weight",
            "ffn_norm.weight" => "ffn_norm.weight",
            _ => "",
        };
        return part.Length == 0 ? null : $"layers.{layer}.{part}";
    }

    /// <summary>Meta's name for a Hugging Face (transformers LlamaForCausalLM) tensor name, or null.</summary>
    public static string? FromHuggingFace(string name)
    {
        switch (name)
        {
            case "model.embed_tokens.weight": return "tok_embeddings.weight";
            case "model.norm.weight": return "norm.weight";
            case "lm_head.weight": return "output.weight";
        }
        const string prefix = "model.layers.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return null;
        int dot = name.IndexOf('.', prefix.Length);
        if (dot < 0 || !int.TryParse(name.AsSpan(prefix.Length, dot - prefix.Length), out int layer)) return null;
        string part = name[(dot + 1)..] switch
        {
            "self_attn.q_proj.weight" => "attention.wq.weight",
            "self_attn.k_proj.weight" => "attention.wk.weight",
            "self_attn.v_proj.weight" => "attention.wv.weight",
            "self_attn.o_proj.weight" => "attention.wo.weight",
            "mlp.gate_proj.weight" => "feed_forward.w1.weight",
            "mlp.down_proj.weight" => "feed_forward.w2.weight",
            "mlp.up_proj.weight" => "feed_forward.w3.weight",
            "input_layernorm.weight" => "attention_norm.weight",
            "post_attention_layernorm.weight" => "ffn_norm.weight",
            _ => "",
        };
        return part.Length == 0 ? null : $"layers.{layer}.{part}";
    }

    /// <summary>Checks that every tensor a Llama of this config needs is present with the right shape.</summary>
    public static void CheckComplete(string source, LlamaConfig c, IReadOnlyDictionary<string, WeightTensor> t)
    {
        int q = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        void Expect(string name, params long[] shape)
        {
            if (!t.TryGetValue(name, out var w)) throw new ModelFormatException(source, $"tensor '{name}' is missing");
            if (!w.Shape.SequenceEqual(shape))
                throw new ModelFormatException(source, $"tensor '{w.SourceName}' has shape [{string.Join(", ", w.Shape)}], expected [{string.Join(", ", shape)}]");
        }
        Expect("tok_embeddings.weight", c.VocabSize, c.Dim);
        Expect("norm.weight", c.Dim);
        if (!c.TiedEmbeddings) Expect("output.weight", c.VocabSize, c.Dim);
        for (int i = 0; i < c.Layers; i++)
        {
            Expect($"layers.{i}.attention.wq.weight", q, c.Dim);
            Expect($"layers.{i}.attention.wk.weight", kv, c.Dim);
            Expect($"layers.{i}.attention.wv.weight", kv, c.Dim);
            Expect($"layers.{i}.attention.wo.weight", c.Dim, q);
            Expect($"layers.{i}.feed_forward.w1.weight", c.FfnDim, c.Dim);
            Expect($"layers.{i}.feed_forward.w2.weight", c.Dim, c.FfnDim);
            Expect($"layers.{i}.feed_forward.w3.weight", c.FfnDim, c.Dim);
            Expect($"layers.{i}.attention_norm.weight", c.Dim);
            Expect($"layers.{i}.ffn_norm.weight", c.Dim);
        }
        if (t.TryGetValue("rope.freqs", out var f) && f.ElementCount != c.HeadDim / 2)
            throw new ModelFormatException(source, $"tensor '{f.SourceName}' has {f.ElementCount} factors, expected head_dim/2 = {c.HeadDim / 2}");
        foreach (var w in t.Values)
            if (w.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16) && w.Shape.Length == 1)
                throw new ModelFormatException(source, $"tensor '{w.SourceName}' is a vector stored as {QuantTable.Get(w.Type).Name}; vectors must be float");
    }
}
