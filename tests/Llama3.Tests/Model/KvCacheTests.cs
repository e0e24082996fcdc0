using Llama3.Model;

namespace Llama3.Tests.Model;

/// <summary>
/// The KV cache's two storage types: an F16 cache holds each key and value rounded to the nearest half (ties to even,
/// as llama.cpp's conversion; beyond ±65504 infinite) and takes half the bytes of a float cache. Its attention against
/// Meta's logits is in <see cref="MoreParityTests"/>; its kernels against the float ones in the kernel tests.
/// </summary>
public class KvCacheTests
{
    private static LlamaConfig Config()
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", "tiny-F32.gguf"));
        return files.Config;
    }

    [Fact]
    public void An_F16_cache_holds_each_value_rounded_to_the_nearest_half()
    {
        var config = Config();
        var cache = new KvCache(config, 3, KvCacheType.F16);
        int kvDim = cache.KvDim;
        // Ties (1 + 2^-11 lies halfway between two halves: to even, 1), values past the largest half, subnormals, NaN.
        float[] special = [1 + MathF.Pow(2, -11), 1 + 3 * MathF.Pow(2, -11), 65504, 65520, -70000, 1e-7f, -3e-8f, float.NaN, -0f];
        var rng = new Random(5);
        var k = Enumerable.Range(0, kvDim).Select(i => i < special.Length ? special[i] : rng.NextSingle() * 8 - 4).ToArray();
        var v = Enumerable.Range(0, kvDim).Select(_ => (rng.NextSingle() - 0.5f) * 1e-3f).ToArray();
        cache.Store(1, 2, k, v);
        var keys = new Half[kvDim];
        var values = new Half[kvDim];
        int hd = config.HeadDim;
        for (int i = 0; i < kvDim; i++)
        {
            // Head h's position 2 starts at HeadStart(h) + 2 * head_dim.
            int at = cache.HeadStart(i / hd) + 2 * hd + i % hd;
            keys[i] = cache.KLayer16(1)[at];
            values[i] = cache.VLayer16(1)[at];
            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)k[i]), BitConverter.HalfToUInt16Bits(keys[i]));
            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)v[i]), BitConverter.HalfToUInt16Bits(values[i]));
        }
        Assert.Equal((Half)1, keys[0]);
        Assert.Equal(Half.PositiveInfinity, keys[3]);
        Assert.Equal(Half.NegativeInfinity, keys[4]);
        Assert.True(Half.IsNaN(keys[7]));
        // Each head's other positions, and the other layer, are untouched; the heads lie Context positions apart.
        Assert.Equal(3 * hd, cache.HeadStart(1));
        int written = cache.KLayer16(1).Count(h => h != (Half)0 || Half.IsNaN(h));
        Assert.Equal(kvDim - k.Count(x => x == 0), written);
        Assert.All(cache.KLayer16(0), h => Assert.Equal((Half)0, h));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Store(0, 3, k, v));
    }

    [Fact]
    public void A_float_cache_holds_the_values_as_given()
    {
        var config = Config();
        var cache = new KvCache(config, 2);
        Assert.Equal(KvCacheType.F32, cache.Type);
        var k = Enumerable.Range(0, cache.KvDim).Select(i => 1 + i * 1e-7f).ToArray();
        var v = Enumerable.Range(0, cache.KvDim).Select(i => -i * 3.3e-5f).ToArray();
        cache.Store(0, 1, k, v);
        int hd = config.HeadDim;
        for (int i = 0; i < cache.KvDim; i++)
        {
            Assert.Equal(k[i], cache.KLayer(0)[cache.HeadStart(i / hd) + hd + i % hd]);
            Assert.Equal(v[i], cache.VLayer(0)[cache.HeadStart(i / hd) + hd + i % hd]);
        }
    }

    [Fact]
    public void An_F16_cache_takes_half_the_bytes()
    {
        var config = Config();
        long f32 = KvCache.BytesFor(config, 100), f16 = KvCache.BytesFor(config, 100, KvCacheType.F16);
        Assert.Equal(2L * config.Layers * 100 * config.KvHeads * config.HeadDim * 4, f32);
        Assert.Equal(f32 / 2, f16);
        Assert.Equal(f16, new KvCache(config, 100, KvCacheType.F16).Bytes);
        Assert.Equal(f32, new KvCache(config, 100).Bytes);
    }

    [Fact]
    public void Bad_cache_types_are_refused()
    {
        var config = Config();
        Assert.Throws<ArgumentOutOfRangeException>(() => new KvCache(config, 4, (KvCacheType)7));
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", "tiny-F32.gguf"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Transformer(files, cacheType: (KvCacheType)(-1)));
    }
}
