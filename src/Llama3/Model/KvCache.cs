namespace Llama3.Model;

/// <summary>
/// The key/value cache of one sequence: per layer, <c>Context</c> positions of <c>kv_heads × head_dim</c> floats
/// for K and for V (Meta's <c>cache_k</c>, <c>cache_v</c>), sized to the context the user asks for.
/// </summary>
public sealed class KvCache
{
    private readonly float[][] _k, _v;

    /// <summary>Allocates a cache for <paramref name="context"/> positions.</summary>
    public KvCache(LlamaConfig config, int context)
    {
        if (context <= 0) throw new ArgumentOutOfRangeException(nameof(context), context, "the context must be positive");
        Context = context;
        KvDim = config.KvHeads * config.HeadDim;
        _k = new float[config.Layers][];
        _v = new float[config.Layers][];
        for (int l = 0; l < config.Layers; l++)
        {
            _k[l] = new float[(long)context * KvDim];
            _v[l] = new float[(long)context * KvDim];
        }
    }

    /// <summary>Positions the cache holds.</summary>
    public int Context { get; }

    /// <summary>Floats per position per layer.</summary>
    public int KvDim { get; }

    /// <summary>Positions filled so far (the next position to write).</summary>
    public int Length { get; internal set; }

    /// <summary>Bytes the cache takes.</summary>
    public long Bytes => BytesFor(_k.Length, KvDim, Context);

    /// <summary>Bytes a cache of <paramref name="context"/> positions takes for a model of <paramref name="config"/>.</summary>
    public static long BytesFor(LlamaConfig config, int context) => BytesFor(config.Layers, config.KvHeads * config.HeadDim, context);

    private static long BytesFor(int layers, int kvDim, int context) => 2L * layers * context * kvDim * sizeof(float);

    /// <summary>Forgets everything after <paramref name="length"/> positions (to reuse a shared prefix).</summary>
    public void Truncate(int length) => Length = Math.Clamp(length, 0, Length);

    internal Span<float> K(int layer, int pos) => _k[layer].AsSpan(pos * KvDim, KvDim);

    internal Span<float> V(int layer, int pos) => _v[layer].AsSpan(pos * KvDim, KvDim);

    internal float[] KLayer(int layer) => _k[layer];

    internal float[] VLayer(int layer) => _v[layer];
}
