using Llama3.Formats.Gguf;
using Llama3.Kernels.Quant;
using Llama3.Kernels.Tests.Quant;
using Xunit.Abstractions;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// End to end on the weights llama-quantize wrote (../shared/models/tiny/tiny-TYPE.gguf): for rows of every 2-D
/// tensor, the table's quantize-then-dot must agree with the dequantized weights dotted (in double) with the
/// dequantized activations, up to float rounding; and with the original activations, up to the activation rounding.
/// </summary>
public class QuantDotTinyModelTests(ITestOutputHelper output)
{
    /// <summary>
    /// Relative to <c>M = sum |w_i a_i|</c>: the kernel adds exact integer block sums times rounded scales in float,
    /// and the dequantized weights are themselves floats rounded once or twice (d * sc * q - dmin * m), so the two
    /// sides differ by a few float roundings of terms no larger than M; measured below 2e-7 M here. 1e-5 M is far under
    /// any real mistake: one wrong 32-block of a 256-row changes the sum by about 1/8 of M.
    /// </summary>
    private const double RoundingTolerance = 1e-5;

    public static TheoryData<string> Types() =>
        new("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K");

    [Theory]
    [MemberData(nameof(Types))]
    public void Quantized_dot_products_match_the_dequantized_weights(string name)
    {
        QuantType q = QuantTable.All.Single(t => t.Name == name);
        using GgufFile file = GgufFile.Open(TinyModelParityTests.TinyPath(name));
        var rng = new Random(17 + (int)q.Type);
        int rowsChecked = 0;
        double worstIdentity = 0, worstRounding = 0, boundUse = 0;
        foreach (GgufTensorInfo info in file.Tensors.Where(t => t.Dimensions.Length == 2))
        {
            Assert.Equal(q.Type, info.Type);
            int cols = checked((int)info.Dimensions[0]);
            long rows = info.ElementCount / cols;
            int rowBytes = checked((int)q.RowBytes(cols));
            ReadOnlySpan<byte> tensor = file.GetTensorBytes(info);
            float[] x = ActivationQuantTests.RandomActivations(rng, cols);
            byte[] a = new byte[q.ActivationRowBytes(cols)];
            q.QuantizeActivations(x, a);
            float[] av = new float[cols];
            QuantTable.Dequantize(q.VecDotType, a, av);
            double[] activationError = ActivationRoundingBound(q.VecDotType, x);
            foreach (long r in new[] { 0, 1, rows / 3, rows / 2, rows - 2, rows - 1 })
            {
                ReadOnlySpan<byte> row = tensor.Slice(checked((int)(r * rowBytes)), rowBytes);
                float[] wv = new float[cols];
                q.Dequantize(row, wv);
                double exact = 0, magnitude = 0, reference = 0, bound = 0;
                for (int i = 0; i < cols; i++)
                {
                    exact += (double)wv[i] * av[i];
                    magnitude += Math.Abs((double)wv[i] * av[i]);
                    reference += (double)wv[i] * x[i];
                    bound += Math.Abs(wv[i]) * activationError[i];
                }
                if (q.VecDotType == GgmlType.Q8_1)
                {
                    // Q4_1, Q5_1: the mins meet the activations through s = f16(d * sum q), not through the dequantized
                    // activations (sum over the block of m * q * f16(d)): ggml's dot product carries m * (s - f16(d) sum q).
                    (double term, double termBound) = MinsThroughS(q, row, a, x);
                    exact += term;
                    bound += termBound;
                }
                float dot = q.Dot(row, a, cols);
                float dotScalar = q.DotScalar(row, a, cols);
                foreach ((string what, float value) in new[] { ("Dot", dot), ("DotScalar", dotScalar) })
                {
                    double identity = Math.Abs(value - exact) / magnitude;
                    worstIdentity = Math.Max(worstIdentity, identity);
                    Assert.True(identity <= RoundingTolerance,
                        $"{name} {info.Name} row {r}: {what} {value:R} but the dequantized rows give {exact:R} ({identity:E2} M)");
                    // The activation rounding moves the result by sum w_i (a_i - x_i), at most sum |w_i| |a_i - x_i|.
                    double rounding = Math.Abs(value - reference);
                    Assert.True(rounding <= bound + RoundingTolerance * magnitude,
                        $"{name} {info.Name} row {r}: {what} {value:R}, with float activations {reference:R}: {rounding:G4} > bound {bound:G4}");
                    worstRounding = Math.Max(worstRounding, rounding);
                    if (bound > 0)
                        boundUse = Math.Max(boundUse, rounding / bound);
                }
                rowsChecked++;
            }
        }
        Assert.Equal(16 * 6, rowsChecked);
        output.WriteLine($"{name} (activations {q.VecDotType}): {rowsChecked} rows, worst |dot - dequantized| {worstIdentity:E2} M, " +
                         $"worst |dot - float activations| {worstRounding:E2} (at most {boundUse:P1} of its bound)");
    }

    /// <summary>
    /// For weights with a min and Q8_1 activations: <c>sum_b m_b (s_b - f16(d_b) sum_j q_j)</c>, the part of ggml's
    /// dot product (<c>... + m * s</c>) that the dequantized activations do not give, and a bound on its size from the
    /// float activations alone: <c>|m| (2^-11 d Q + |d - f16(d)| Q)</c> with <c>Q = sum |x_j| / d + 16 &gt;= sum |q_j|</c>.
    /// </summary>
    private static (double Term, double Bound) MinsThroughS(QuantType q, ReadOnlySpan<byte> weights, byte[] activations, float[] x)
    {
        double term = 0, bound = 0;
        for (int b = 0; b < x.Length / 32; b++)
        {
            double m = Float16.ReadHalf(weights[(b * q.BytesPerBlock + 2)..]);
            ReadOnlySpan<byte> block = activations.AsSpan(b * 36, 36);
            double d16 = Float16.ReadHalf(block), s = Float16.ReadHalf(block[2..]);
            int sum = 0;
            double amax = 0, sumAbs = 0;
            for (int j = 0; j < 32; j++)
            {
                sum += (sbyte)block[4 + j];
                amax = Math.Max(amax, Math.Abs(x[32 * b + j]));
                sumAbs += Math.Abs(x[32 * b + j]);
            }
            term += m * (s - d16 * sum);
            double d = amax / 127, quants = d > 0 ? sumAbs / d + 16 : 0;
            bound += Math.Abs(m) * (Math.Pow(2, -11) * d * quants + Math.Abs(d - (float)(Half)(float)d) * quants) * (1 + 1e-6);
        }
        return (term, bound);
    }

    /// <summary>
    /// For each value, the most that converting the row to <paramref name="type"/> can move it, from the row alone:
    /// Q8_0, Q8_1: <c>d/2 + 127 |f16(d) - d|</c> with <c>d = amax / 127</c> of its block; Q8_K: <c>d/2</c> (f32 d);
    /// F16: half an f16 ulp; BF16: half a bfloat16 ulp; F32: nothing. Each with 1e-4 d or a few float ulps of slack for
    /// the roundings of <c>id</c>, <c>x * id</c> and <c>q * d</c>.
    /// </summary>
    private static double[] ActivationRoundingBound(GgmlType type, float[] x)
    {
        var bound = new double[x.Length];
        int blockSize = QuantTable.Get(type).BlockSize;
        for (int start = 0; start < x.Length; start += blockSize)
        {
            double amax = 0;
            for (int j = start; j < start + blockSize; j++)
                amax = Math.Max(amax, Math.Abs(x[j]));
            double d = amax / 127;
            double d16 = (float)(Half)(float)d;
            for (int j = start; j < start + blockSize; j++)
                bound[j] = type switch
                {
                    GgmlType.Q8_0 or GgmlType.Q8_1 => d / 2 + 127 * Math.Abs(d16 - d) + 1e-4 * d,
                    GgmlType.Q8_K => d / 2 + 1e-4 * d,
                    GgmlType.F16 => Math.Abs(x[j]) * Math.Pow(2, -11) * (1 + 1e-6) + Math.Pow(2, -25),
                    GgmlType.BF16 => Math.Abs(x[j]) * Math.Pow(2, -8) * (1 + 1e-6),
                    _ => 0,
                };
        }
        return bound;
    }
}
