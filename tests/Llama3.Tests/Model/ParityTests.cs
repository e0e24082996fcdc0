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
