namespace Llama3.Model;

/// <summary>Llama 3.1's RoPE frequency scaling (Meta's <c>apply_scaling</c>; Hugging Face <c>rope_type: llama3</c>).</summary>
/// <param name="Factor">8 for Llama 3.1, 32 for Llama 3.2.</param>
/// <param name="LowFreqFactor">1 in every release.</param>
/// <param name="HighFreqFactor">4 in every release.</param>
/// <param name="OriginalContext">The pre-training context, 8192.</param>
public sealed record RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalContext)
{
    /// <summary>Llama 3.1's values with the given factor.</summary>
    public static RopeScaling Llama31(double factor = 8) => new(factor, 1, 4, 8192);
}

/// <summary>The source format of a model.</summary>
public enum ModelFormat
{
    /// <summary>llama.cpp's GGUF.</summary>
    Gguf,
    /// <summary>A Hugging Face directory (config.json + safetensors).</summary>
    HuggingFace,
    /// <summary>Meta's original download (params.json + consolidated.NN.pth).</summary>
    Meta,
}

/// <summary>
/// One validated description of a Llama model, whichever files it came from (names as Meta's <c>ModelArgs</c> where
/// they exist).
/// </summary>
public sealed record LlamaConfig
{
    /// <summary>Architecture name (GGUF <c>general.architecture</c>; "llama" for every Llama).</summary>
    public string Architecture { get; init; } = "llama";

    /// <summary>Vocabulary size (rows of the embedding).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Model dimension.</summary>
    public required int Dim { get; init; }

    /// <summary>Number of transformer blocks.</summary>
    public required int Layers { get; init; }

    /// <summary>Query heads.</summary>
    public required int Heads { get; init; }

    /// <summary>Key/value heads (grouped-query attention).</summary>
    public required int KvHeads { get; init; }

    /// <summary>Dimension per head (Dim / Heads unless the files say otherwise).</summary>
    public required int HeadDim { get; init; }

    /// <summary>Hidden size of the SwiGLU feed-forward.</summary>
    public required int FfnDim { get; init; }

    /// <summary>RMSNorm epsilon.</summary>
    public required double NormEps { get; init; }

    /// <summary>RoPE base frequency (500000 for Llama 3, 10000 for Llama 2).</summary>
    public required double RopeTheta { get; init; }

    /// <summary>Llama 3.1 frequency scaling, or null (none, or given as the <c>rope_freqs</c> tensor instead).</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>Whether the files carry explicit RoPE frequency factors (GGUF's <c>rope_freqs.weight</c>).</summary>
    public bool HasRopeFreqsTensor { get; init; }

    /// <summary>The context the model was trained for (131072 for Llama 3.1).</summary>
    public required int ContextLength { get; init; }

    /// <summary>Whether the output projection is the token embedding (Llama 3.2 1B/3B).</summary>
    public required bool TiedEmbeddings { get; init; }

    /// <summary>BOS id.</summary>
    public int? BosId { get; init; }

    /// <summary>Ids that end generation.</summary>
    public IReadOnlyList<int> EosIds { get; init; } = [];

    /// <summary>The chat template (Jinja) the files carry, if any.</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>Query heads per key/value head.</summary>
    public int GroupSize => Heads / KvHeads;

    /// <summary>Throws <see cref="Formats.ModelFormatException"/> naming the first impossible field.</summary>
    public LlamaConfig Validate(string source)
    {
        void Positive(string field, double v)
        {
            if (!(v > 0) || double.IsInfinity(v)) throw new Formats.ModelFormatException(source, $"{field} = {v} must be positive");
        }
        Positive("vocab_size", VocabSize);
        Positive("dim", Dim);
        Positive("layers", Layers);
        Positive("heads", Heads);
        Positive("kv_heads", KvHeads);
        Positive("head_dim", HeadDim);
        Positive("ffn_dim", FfnDim);
        Positive("norm_eps", NormEps);
        Positive("rope_theta", RopeTheta);
        Positive("context_length", ContextLength);
        if (Heads % KvHeads != 0)
            throw new Formats.ModelFormatException(source, $"heads = {Heads} is not a multiple of kv_heads = {KvHeads}");
        if (HeadDim % 2 != 0)
            throw new Formats.ModelFormatException(source, $"head_dim = {HeadDim} must be even for rotary embeddings");
        if (Layers > 1024 || Heads > 4096 || Dim > 1 << 17 || FfnDim > 1 << 20 || VocabSize > 1 << 24)
            throw new Formats.ModelFormatException(source, $"the dimensions are implausibly large (dim {Dim}, layers {Layers}, heads {Heads}, ffn {FfnDim}, vocab {VocabSize})");
        if (RopeScaling is { } s)
        {
            Positive("rope_scaling.factor", s.Factor);
            Positive("rope_scaling.low_freq_factor", s.LowFreqFactor);
            Positive("rope_scaling.high_freq_factor", s.HighFreqFactor);
            Positive("rope_scaling.original_context", s.OriginalContext);
            if (s.HighFreqFactor <= s.LowFreqFactor)
                throw new Formats.ModelFormatException(source, $"rope_scaling.high_freq_factor = {s.HighFreqFactor} must exceed low_freq_factor = {s.LowFreqFactor}");
        }
        foreach (int id in EosIds)
            if (id < 0 || id >= VocabSize) throw new Formats.ModelFormatException(source, $"eos id {id} is outside the vocabulary of {VocabSize}");
        if (BosId is int b && (b < 0 || b >= VocabSize)) throw new Formats.ModelFormatException(source, $"bos id {b} is outside the vocabulary of {VocabSize}");
        return this;
    }

    /// <summary>
    /// Meta's FFN size rule (<c>FeedForward.__init__</c> in model.py): 2/3 of 4·dim, times <c>ffn_dim_multiplier</c>,
    /// rounded up to a multiple of <c>multiple_of</c>.
    /// </summary>
    public static int MetaFfnDim(int dim, int multipleOf, double? ffnDimMultiplier)
    {
        int hidden = 4 * dim;
        hidden = (int)(2 * hidden / 3.0);
        if (ffnDimMultiplier is double m) hidden = (int)(m * hidden);
        return multipleOf * ((hidden + multipleOf - 1) / multipleOf);
    }
}
