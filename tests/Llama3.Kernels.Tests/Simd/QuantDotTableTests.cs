using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>The dot-product columns of the quantization table, for every row (and every row added later).</summary>
public class QuantDotTableTests
{
    public static TheoryData<string> AllRows => new(QuantTable.All.Select(q => q.Name));

    /// <summary>ggml-cpu's <c>type_traits_cpu[..].vec_dot_type</c>, as ../shared/reference/llamacpp/README.md lists it.</summary>
    [Theory]
    [InlineData("F32", "F32")]
    [InlineData("F16", "F16")]
    [InlineData("BF16", "BF16")]
    [InlineData("Q8_0", "Q8_0")]
    [InlineData("Q4_0", "Q8_0")]
    [InlineData("Q5_0", "Q8_0")]
    [InlineData("Q4_1", "Q8_1")]
    [InlineData("Q5_1", "Q8_1")]
    [InlineData("Q2_K", "Q8_K")]
    [InlineData("Q3_K", "Q8_K")]
    [InlineData("Q4_K", "Q8_K")]
    [InlineData("Q5_K", "Q8_K")]
    [InlineData("Q6_K", "Q8_K")]
    [InlineData("Q8_1", "Q8_1")]
    [InlineData("Q8_K", "Q8_K")]
    public void Each_weight_type_takes_llama_cpps_activation_type(string weights, string activations)
    {
        Assert.Equal(activations, QuantTable.Get(Row(weights).VecDotType).Name);
    }

    [Theory]
    [MemberData(nameof(AllRows))]
    public void Activation_rows_quantize_to_the_same_bytes_on_every_path_and_fill_ActivationRowBytes(string name)
    {
        QuantType q = Row(name);
        QuantType activations = QuantTable.Get(q.VecDotType);
        Assert.Equal(q.BlockSize, activations.BlockSize); // a weight block meets exactly one activation block
        int n = 3 * Math.Max(q.BlockSize, 32);
        Assert.Equal(activations.RowBytes(n), q.ActivationRowBytes(n));
        float[] x = ActivationQuantTests.RandomActivations(new Random(23 + (int)q.Type), n);
        // One byte more than needed, to see that nothing past the row is written.
        byte[] fast = new byte[q.ActivationRowBytes(n) + 1], scalar = new byte[q.ActivationRowBytes(n) + 1];
        fast[^1] = scalar[^1] = 0xA5;
        q.QuantizeActivations(x, fast);
        q.QuantizeActivationsScalar(x, scalar);
        Assert.Equal(scalar, fast);
        Assert.Equal(0xA5, fast[^1]);
    }

    [Theory]
    [MemberData(nameof(AllRows))]
    public void Dot_and_DotScalar_agree_on_a_quantized_row(string name)
    {
        QuantType q = Row(name);
        int n = 5 * q.BlockSize * (q.BlockSize == 1 ? 37 : 1);
        var rng = new Random(29 + (int)q.Type);
        byte[] w = new byte[q.RowBytes(n)];
        // A row of the weight type written by quantizing floats where the type is also an activation type, else
        // random bytes with plausible scales.
        if (q.VecDotType == q.Type)
            q.QuantizeActivationsScalar(ActivationQuantTests.RandomActivations(rng, n), w);
        else
            QuantDotTests.RandomWeights(q, rng).Invoke(w);
        byte[] a = new byte[q.ActivationRowBytes(n)];
        q.QuantizeActivations(ActivationQuantTests.RandomActivations(rng, n), a);
        float fast = q.Dot(w, a, n), scalar = q.DotScalar(w, a, n);
        double magnitude = QuantDotTests.Magnitude(q, w, a, n);
        Assert.True(Math.Abs(fast - scalar) <= 1e-5 * magnitude, $"{name}: Dot {fast:R}, DotScalar {scalar:R}");
        // The dequantized rows give the same sum up to float rounding, except where a min meets Q8_1's s (see
        // QuantDotTinyModelTests, which accounts for that term).
        if (q.Type is not (GgmlType.Q4_1 or GgmlType.Q5_1))
        {
            double exact = QuantDotTests.DequantizedDot(q, w, a, n);
            Assert.True(Math.Abs(scalar - exact) <= 1e-5 * magnitude, $"{name}: DotScalar {scalar:R}, dequantized {exact:R}");
        }
    }

    private static QuantType Row(string name) => QuantTable.All.Single(q => q.Name == name);
}
