using Llama3.Model;

namespace Llama3.Tests.Model;

/// <summary>Tests that count the process's allocations, so that nothing else runs beside them.</summary>
[CollectionDefinition(nameof(AllocationCounting), DisableParallelization = true)]
public class AllocationCounting;

/// <summary>
/// Decode allocates nothing per token once warm: the attention scratch grows by doubling, not token by token. The
/// workers allocate too, so the count is the process's, with no other test running.
/// </summary>
[Collection(nameof(AllocationCounting))]
public class DecodeAllocationTests
{
    [Theory]
    [InlineData(KvCacheType.F32)]
    [InlineData(KvCacheType.F16)]
    public void A_thousand_decode_steps_allocate_almost_nothing(KvCacheType type)
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", "tiny-Q8_0.gguf"));
        using var model = new Transformer(files, maxBatch: 8, threads: 2, cacheType: type);
        var cache = model.CreateCache(1200);
        var logits = new float[model.Config.VocabSize];
        int[] token = [1];
        for (int i = 0; i < 100; i++) model.Forward(token, cache, logits); // warm: JIT, scratch
        long before = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < 1000; i++)
        {
            token[0] = 1 + i % 300;
            model.Forward(token, cache, logits);
        }
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        // The scores (group x positions floats per worker) double a few times from 100 to 1,100 positions; growing them
        // token by token would take megabytes.
        Assert.True(allocated < 256 * 1024, $"{allocated:N0} bytes allocated over 1,000 decode steps");
        Assert.Equal(1100, cache.Length);
    }
}
