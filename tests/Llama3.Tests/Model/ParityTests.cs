using Llama3.Model;
using Xunit.Abstractions;

namespace Llama3.Tests.Model;

/// <summary>Logits parity with Meta's reference code and llama.cpp on the shared models.</summary>
public class ParityTests(ITestOutputHelper output)
{
    public static TheoryData<string> TinyTypes => new()
    {
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    };

    [Theory]
    [MemberData(nameof(TinyTypes))]
    public void TinyGgufMatchesLlamaCppOnItsDequantizedTwin(string type)
    {
        // Float32 activations: compare with llama.cpp on the all-F32 twin of the dequantized weights (tolerance (a) of
        // reference/llamacpp/README.md: 1e-4). F32 has no twin: its own file is the reference.
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", $"tiny-{type}.gguf"));
        var model = new Transformer(files);
        string dir = type == "F32" ? "" : "dequant";
        foreach (string suffix in new[] { "", ".long" })
        {
            var reference = LogitsReference.Load(["reference", "llamacpp", .. (dir == "" ? Array.Empty<string>() : [dir]), $"tiny-{type}{suffix}.json"]);
            double max = reference.MaxDifference(model, batch: suffix == "" ? 512 : 128, tolerance: 1e-4, out string worst);
            output.WriteLine($"tiny-{type}{suffix}: max |dlogit| {max:E2} ({worst})");
            Assert.True(max <= 1e-4, $"tiny-{type}{suffix}: {max:E3} > 1e-4; {worst}");
        }
    }
}

public class BatchedSequencesTests
{
    [Fact]
    public void SeveralSequencesInOnePassGiveEachSequencesOwnLogits()
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "stories260K.gguf"));
        var model = new Transformer(files);
        int vocab = model.Config.VocabSize;
        int[][] prompts = [[1, 403, 407, 261, 378], [1, 300, 301], [1, 42, 43, 44, 45, 46, 47]];

        // Alone: each prompt, then one more token.
        var alone = new List<float[]>();
        foreach (var p in prompts)
        {
            var cache = model.CreateCache(64);
            var l = new float[vocab];
            model.Forward(p, cache, l);
            model.Forward([LogitsReference.ArgMax(l)], cache, l);
            alone.Add(l);
        }

        // Together: all prompts in one pass (prefill), then one decode step for all three in one pass.
        var caches = prompts.Select(_ => model.CreateCache(64)).ToArray();
        var tokens = prompts.SelectMany(p => p).ToArray();
        var tokenCaches = prompts.SelectMany((p, i) => Enumerable.Repeat(caches[i], p.Length)).ToArray();
        int[] lastRows = [4, 7, 14];
        var prefill = new float[3 * vocab];
        model.Forward(tokens, tokenCaches, lastRows, prefill);
        var next = Enumerable.Range(0, 3).Select(i => LogitsReference.ArgMax(prefill.AsSpan(i * vocab, vocab))).ToArray();
        var step = new float[3 * vocab];
        model.Forward(next, caches, [0, 1, 2], step);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(prompts[i].Length + 1, caches[i].Length);
            for (int v = 0; v < vocab; v++)
                Assert.Equal(alone[i][v], step[i * vocab + v], 1e-5f);
        }
    }
}
