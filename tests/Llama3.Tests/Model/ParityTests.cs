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
        using var model = new Transformer(files);
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
        using var model = new Transformer(files);
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

/// <summary>
/// The main llama.cpp references (8-bit activation rounding inside llama.cpp) against our float32-activation engine.
/// reference/llamacpp/README.md measures that rounding effect: max |dlogit| between each quantized file and its
/// dequantized twin (48 / 600 tokens). A float32 engine must land within that effect; we allow 1.25x the larger of the
/// two measured values, so a wrong dequantizer (off by 0.15 to 2 on these models) still fails. This is the "looser
/// bound" the README allows until the kernels reproduce llama.cpp's activation rounding (tolerance (b)).
/// </summary>
public class ActivationRoundingBoundTests(ITestOutputHelper output)
{
    public static TheoryData<string, double> Measured => new()
    {
        { "F16", 0.0016 }, { "BF16", 0.0108 }, { "Q8_0", 0.0428 }, { "Q4_0", 0.0455 }, { "Q4_1", 0.0519 }, { "Q5_0", 0.0457 },
        { "Q5_1", 0.0431 }, { "Q2_K", 0.0672 }, { "Q3_K", 0.0744 }, { "Q4_K", 0.0661 }, { "Q5_K", 0.0707 }, { "Q6_K", 0.0826 },
        // tiny-tied-Q8_0 has no twin; it is tiny-Q8_0 with the output tied to the embedding. The rounding error of the
        // output matmul scales with its weights: token_embd is N(0,1), output.weight N(0,1/256) (models/tiny/README.md),
        // 16x smaller, so Q8_0's measured effect applies 16x over. (Its dequantizer is checked at 1e-4 on tiny-Q8_0.)
        { "tied-Q8_0", 0.0428 * 16 },
    };

    [Theory]
    [MemberData(nameof(Measured))]
    public void MainReferenceWithinTheMeasuredRoundingEffect(string type, double effect)
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", $"tiny-{type}.gguf"));
        using var model = new Transformer(files);
        double bound = 1.25 * effect;
        foreach (string suffix in new[] { "", ".long" })
        {
            var reference = LogitsReference.Load("reference", "llamacpp", $"tiny-{type}{suffix}.json");
            double max = reference.MaxDifference(model, 128, bound, out string worst);
            output.WriteLine($"tiny-{type}{suffix} vs llama.cpp (8-bit activations): max |dlogit| {max:F4} (bound {bound:F4})");
            Assert.True(max <= bound, $"{max} > {bound}: {worst}");
        }
    }

    [Fact]
    public void Llama3TinyWithinLlamaCppsBf16Rounding()
    {
        // reference/llamacpp/README.md: llama.cpp on llama3-tiny-BF16 differs from Meta's float32 reference by 0.0126
        // (its BF16 activation rounding); we match Meta to 2e-6, so we must sit within 1.25 x 0.0126 of llama.cpp.
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"));
        var reference = LogitsReference.Load("reference", "llamacpp", "llama3-tiny-BF16.json");
        using var model = new Transformer(files);
        double max = reference.MaxDifference(model, 64, 1.25 * 0.0126, out string worst);
        output.WriteLine($"llama3-tiny-BF16 vs llama.cpp: max |dlogit| {max:F4}");
        Assert.True(max <= 1.25 * 0.0126, worst);
    }
}
