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
        using var model = new Transformer(files, precision: ActivationPrecision.Float32);
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
/// The main llama.cpp references, computed with llama.cpp's 8-bit activation rounding for quantized weights.
/// </summary>
public class LlamaCppArithmeticTests(ITestOutputHelper output)
{
    // The full activation-rounding effect reference/llamacpp/README.md measures (each quantized file against its
    // dequantized twin, max over 48 and 600 tokens). tiny-tied-Q8_0 has no twin: it is tiny-Q8_0 with the output tied to
    // token_embd, whose N(0,1) weights are 16x output.weight's N(0,1/256) (models/tiny/README.md), so 16x Q8_0's effect.
    public static TheoryData<string, double> Quantized => new()
    {
        { "Q8_0", 0.0428 }, { "Q4_0", 0.0455 }, { "Q4_1", 0.0519 }, { "Q5_0", 0.0457 }, { "Q5_1", 0.0431 }, { "Q2_K", 0.0672 },
        { "Q3_K", 0.0744 }, { "Q4_K", 0.0661 }, { "Q5_K", 0.0707 }, { "Q6_K", 0.0826 }, { "tied-Q8_0", 0.0428 * 16 },
    };

    /// <summary>
    /// Our default arithmetic is llama.cpp's: the first positions agree within 1e-4 (float summation order only) where an
    /// engine that skipped the 8-bit rounding is 0.04-0.08 off from position 0. Later, one activation can sit on a rounding
    /// boundary and round the other way (llama.cpp sums a few float terms in another order), and through the KV cache that
    /// moves every later logit by 1e-2 to 4e-2; measured here, the README's proposed 1e-2 for tolerance (b) does not cover
    /// it. So after the first flip we bound the difference by the whole rounding effect, which a flip cannot exceed.
    /// </summary>
    [Theory]
    [MemberData(nameof(Quantized))]
    public void QuantizedFilesMatchLlamaCppWithItsActivationRounding(string type, double effect)
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", $"tiny-{type}.gguf"));
        using var model = new Transformer(files);
        Assert.Equal(ActivationPrecision.Quantized, model.Precision);
        foreach (string suffix in new[] { "", ".long" })
        {
            var reference = LogitsReference.Load("reference", "llamacpp", $"tiny-{type}{suffix}.json");
            double max = reference.MaxDifference(model, 128, 1.25 * effect, out string worst, out double[] perPosition);
            int exact = perPosition.TakeWhile(d => d <= 1e-4).Count();
            output.WriteLine($"tiny-{type}{suffix} vs llama.cpp: positions 0..{exact - 1} within 1e-4 (max {perPosition.Take(exact).DefaultIfEmpty().Max():E1}); " +
                $"overall max |dlogit| {max:E2} (bound {1.25 * effect:F4})");
            // Flips come as early as position 2 on some files (measured: 2 to 149 exact positions before the first), so the
            // exact part is asserted for the first two positions; an engine without llama.cpp's rounding fails at 0.
            Assert.True(exact >= 2, $"only the first {exact} positions match llama.cpp within 1e-4");
            Assert.True(max <= 1.25 * effect, $"{max}: {worst}");
        }
    }

    /// <summary>
    /// F16 and BF16 weights meet float32 activations in our engine (exact with Meta's reference), while llama.cpp rounds
    /// the activations to F16/BF16. reference/llamacpp/README.md measures that effect: 0.0016 (F16), 0.0108 (BF16), and
    /// 0.0126 for llama3-tiny-BF16 against Meta; we must sit within 1.25x of it.
    /// </summary>
    [Theory]
    [InlineData("tiny-F16", 0.0016)]
    [InlineData("tiny-BF16", 0.0108)]
    [InlineData("llama3-tiny-BF16", 0.0126)]
    public void FloatFilesWithinLlamaCppsActivationRounding(string file, double effect)
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", $"{file}.gguf"));
        using var model = new Transformer(files);
        foreach (string suffix in file.StartsWith("llama3") ? new[] { "" } : new[] { "", ".long" })
        {
            var reference = LogitsReference.Load("reference", "llamacpp", $"{file}{suffix}.json");
            double max = reference.MaxDifference(model, 128, 1.25 * effect, out string worst);
            output.WriteLine($"{file}{suffix} vs llama.cpp: max |dlogit| {max:F4} (bound {1.25 * effect:F4})");
            Assert.True(max <= 1.25 * effect, $"{max}: {worst}");
        }
    }
}
