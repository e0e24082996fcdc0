using System.Numerics.Tensors;

namespace Llama3.Model;

/// <summary>What a <see cref="KvCache"/> stores its keys and values as.</summary>
public enum KvCacheType
{
    /// <summary>Float32, as computed (Meta's reference code on the CPU; the parity references): exact.</summary>
    F32,

    /// <summary>
    /// IEEE halves, rounded to nearest even (llama.cpp's default cache type): half the memory and half the bytes read
    /// per token at depth; each key and value is off by at most 2^-11 of itself, and values beyond ±65504 become
    /// infinite, as in llama.cpp.
    /// </summary>
    F16,
}

/// <summary>
/// The key/value cache of one sequence: per layer, <c>Context</c> positions of <c>kv_heads × head_dim</c> values
/// for K and for V (Meta's <c>cache_k</c>, <c>cache_v</c>), sized to the context the user asks for, stored as
/// <see cref="Type"/> says.
/// </summary>
/// <remarks>
/// Each layer holds its KV heads one after another (<c>[kv_head, position, head_dim]</c>, where Meta's tensor is
/// <c>[position, kv_head, head_dim]</c>): attention reads one KV head for its group of query heads, and with the heads
/// apart that read is one contiguous stream instead of <c>head_dim</c> values out of every <c>kv_heads × head_dim</c>.
/// </remarks>
public sealed class KvCache
{
    private readonly float[][] _k = [], _v = [];
    private readonly Half[][] _k16 = [], _v16 = [];

    /// <summary>Allocates a cache for <paramref name="context"/> positions.</summary>
    public KvCache(LlamaConfig config, int context, KvCacheType type = KvCacheType.F32)
    {
        if (context <= 0) throw new ArgumentOutOfRangeException(nameof(context), context, "the context must be positive");
        if (!Enum.IsDefined(type)) throw new ArgumentOutOfRangeException(nameof(type), type, "not a cache type");
        Context = context;
        Type = type;
        KvDim = config.KvHeads * config.HeadDim;
        HeadDim = config.HeadDim;
        Layers = config.Layers;
        long size = (long)context * KvDim;
        if (type == KvCacheType.F16)
        {
            _k16 = new Half[config.Layers][];
            _v16 = new Half[config.Layers][];
            for (int l = 0; l < config.Layers; l++) { _k16[l] = new Half[size]; _v16[l] = new Half[size]; }
        }
        else
        {
            _k = new float[config.Layers][];
            _v = new float[config.Layers][];
            for (int l = 0; l < config.Layers; l++) { _k[l] = new float[size]; _v[l] = new float[size]; }
        }
    }

    /// <summary>Positions the cache holds.</summary>
    public int Context { get; }

    /// <summary>What the keys and values are stored as.</summary>
    public KvCacheType Type { get; }

    /// <summary>Values per position per layer.</summary>
    public int KvDim { get; }

    private int Layers { get; }

    private int HeadDim { get; }

    /// <summary>Positions filled so far (the next position to write).</summary>
    public int Length { get; internal set; }

    /// <summary>Bytes the cache takes.</summary>
    public long Bytes => BytesFor(Layers, KvDim, Context, Type);

    /// <summary>Bytes a cache of <paramref name="context"/> positions of <paramref name="type"/> takes for a model of <paramref name="config"/>.</summary>
    public static long BytesFor(LlamaConfig config, int context, KvCacheType type = KvCacheType.F32) =>
        BytesFor(config.Layers, config.KvHeads * config.HeadDim, context, type);

    private static long BytesFor(int layers, int kvDim, int context, KvCacheType type) =>
        2L * layers * context * kvDim * (type == KvCacheType.F16 ? 2 : sizeof(float));

    /// <summary>Forgets everything after <paramref name="length"/> positions (to reuse a shared prefix).</summary>
    public void Truncate(int length) => Length = Math.Clamp(length, 0, Length);

    /// <summary>Writes position <paramref name="pos"/>'s key and value of <paramref name="layer"/> (rounded to halves for F16).</summary>
    internal void Store(int layer, int pos, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        if ((uint)pos >= (uint)Context) throw new ArgumentOutOfRangeException(nameof(pos), pos, $"the cache holds {Context} positions");
        int hd = HeadDim;
        for (int h = 0; h * hd < KvDim; h++)
        {
            int at = HeadStart(h) + pos * hd;
            if (Type == KvCacheType.F16)
            {
                TensorPrimitives.ConvertToHalf(k.Slice(h * hd, hd), _k16[layer].AsSpan(at, hd));
                TensorPrimitives.ConvertToHalf(v.Slice(h * hd, hd), _v16[layer].AsSpan(at, hd));
            }
            else
            {
                k.Slice(h * hd, hd).CopyTo(_k[layer].AsSpan(at, hd));
                v.Slice(h * hd, hd).CopyTo(_v[layer].AsSpan(at, hd));
            }
        }
    }

    /// <summary>Where KV head <paramref name="head"/>'s positions start in a layer (each position <c>head_dim</c> values).</summary>
    internal int HeadStart(int head) => head * Context * HeadDim;

    /// <summary>A float cache's keys of <paramref name="layer"/>, KV head by KV head (see <see cref="HeadStart"/>).</summary>
    internal float[] KLayer(int layer) => _k[layer];

    /// <summary>A float cache's values of <paramref name="layer"/>.</summary>
    internal float[] VLayer(int layer) => _v[layer];

    /// <summary>An F16 cache's keys of <paramref name="layer"/>.</summary>
    internal Half[] KLayer16(int layer) => _k16[layer];

    /// <summary>An F16 cache's values of <paramref name="layer"/>.</summary>
    internal Half[] VLayer16(int layer) => _v16[layer];
}
