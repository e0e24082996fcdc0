using Llama3.Kernels.Quant;
using Llama3.Model;

namespace Llama3.Tests.Model;

/// <summary>
/// Matrices held packed (<see cref="QuantType.Packed"/>: Q4_0, Q8_0, Q4_K and Q6_K on AVX-512) are packed exactly where the table has a
/// layout and the arithmetic is the quantized one, and change no logit: a packed model gives the unpacked model's prompt
/// logits bit for bit, and its one-token steps give the bits of the same tokens run as one prompt.
/// </summary>
public class PackedWeightsTests
{
    private static readonly string[] Matrices =
        ["attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"];

    private static IEnumerable<WeightTensor> LinearWeights(ModelFiles files) =>
        Enumerable.Range(0, files.Config.Layers).SelectMany(l => Matrices.Select(m => files.Get($"layers.{l}.{m}.weight")))
            .Append(files.Get("output.weight"));

    [Theory]
    [InlineData("tiny-Q4_0")]
    [InlineData("tiny-Q8_0")]
    [InlineData("tiny-Q4_K")]
    [InlineData("tiny-Q6_K")]
    public void Matrices_are_packed_where_the_table_has_a_layout(string file)
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", $"{file}.gguf"));
        using var packed = new Transformer(files);
        using var unpacked = new Transformer(files, packWeights: false);
        using var float32 = new Transformer(files, precision: ActivationPrecision.Float32);
        foreach (var w in LinearWeights(files))
        {
            Assert.Equal(QuantTable.Get(w.Type).Packed is not null, packed.IsPacked(w));
            Assert.False(unpacked.IsPacked(w));
            Assert.False(float32.IsPacked(w), "the float32 arithmetic reads the rows in place");
        }
        Assert.Equal(Kernels.Simd.QuantDot.HasPromptKernels && file is "tiny-Q4_0" or "tiny-Q8_0" or "tiny-Q4_K" or "tiny-Q6_K", LinearWeights(files).Any(packed.IsPacked));
    }

    [Theory]
    [InlineData("tiny-Q4_0")]
    [InlineData("tiny-Q4_K")]
    [InlineData("tiny-Q6_K")]
    [InlineData("tiny-Q8_0")]
    public void Packing_changes_no_logit(string file)
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", $"{file}.gguf"));
        using var packed = new Transformer(files);
        using var unpacked = new Transformer(files, packWeights: false);
        // Where the kernels have packed layouts, this compares two arithmetic paths; elsewhere it cannot fail, and says so.
        Assert.Equal(Kernels.Simd.QuantDot.HasPromptKernels, LinearWeights(files).All(packed.IsPacked));
        int vocab = packed.Config.VocabSize;
        int[] tokens = [1, 403, 407, 261, 378, 300, 301, 42, 43, 44, 45, 46];
        int[] all = Enumerable.Range(0, tokens.Length).ToArray();
        var expected = new float[tokens.Length * vocab];
        unpacked.Forward(tokens, unpacked.CreateCache(32), all, expected);
        var actual = new float[tokens.Length * vocab];
        packed.Forward(tokens, packed.CreateCache(32), all, actual);
        Assert.Equal(expected, actual);

        // One token at a time through the packed model: each step's logits are the prompt's at that position.
        var cache = packed.CreateCache(32);
        var step = new float[vocab];
        for (int t = 0; t < tokens.Length; t++)
        {
            packed.Forward(tokens.AsSpan(t, 1), cache, step);
            Assert.Equal(expected.AsSpan(t * vocab, vocab).ToArray(), step);
        }
    }
}
