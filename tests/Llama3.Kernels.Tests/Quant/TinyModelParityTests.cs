using Llama3.Formats.Gguf;
using Llama3.Kernels.Quant;
using Xunit.Abstractions;

namespace Llama3.Kernels.Tests.Quant;

/// <summary>The F32 tiny model, opened once for all parity tests.</summary>
public sealed class TinyF32Model : IDisposable
{
    /// <summary>Opens <c>models/tiny/tiny-F32.gguf</c> in the shared data.</summary>
    public TinyF32Model() => File = GgufFile.Open(TinyModelParityTests.TinyPath("F32"));

    /// <summary>The open file.</summary>
    public GgufFile File { get; }

    /// <summary>The original weights of a tensor.</summary>
    public float[] Weights(string name)
    {
        GgufTensorInfo info = File.FindTensor(name) ?? throw new InvalidOperationException($"tiny-F32 has no {name}");
        Assert.Equal(GgmlType.F32, info.Type);
        var values = new float[info.ElementCount];
        QuantTable.Dequantize(GgmlType.F32, File.GetTensorBytes(info), values);
        return values;
    }

    /// <inheritdoc />
    public void Dispose() => File.Dispose();
}

/// <summary>
/// Parity with llama.cpp's quantizer: the tiny models in ../shared/models/tiny were each made by
/// <c>llama-quantize --pure</c> from tiny-F32.gguf (see its README), so every quantized 2-D tensor, dequantized, must
/// lie near the F32 original, and for the simple types within the bound that the reference quantizer
/// (quantize_row_*_ref in ggml-quants.c, used when there is no importance matrix) guarantees.
/// </summary>
public class TinyModelParityTests(TinyF32Model f32, ITestOutputHelper output) : IClassFixture<TinyF32Model>
{
    /// <summary>token_embd, output, and 2 layers of attn_q/k/v/output and ffn_gate/up/down.</summary>
    private const int QuantizedTensorsPerFile = 2 + 2 * 7;

    internal static string TinyPath(string type) => SharedData.Path("models", "tiny", $"tiny-{type}.gguf");

    [Theory]
    [InlineData("F16")]
    [InlineData("BF16")]
    public void Half_types_are_the_F32_weights_rounded_to_nearest_even(string type)
    {
        // llama-quantize converts with ggml_fp32_to_fp16_row / ggml_fp32_to_bf16_row: round to nearest, ties to even.
        // So every dequantized weight must equal the original rounded that way, exactly.
        Func<float, float> round = type == "F16" ? v => (float)(Half)v : RoundToBFloat16;
        int tensors = 0;
        foreach (var (name, original, dequantized) in QuantizedTensors(type))
        {
            for (int i = 0; i < original.Length; i++)
                if (BitConverter.SingleToInt32Bits(round(original[i])) != BitConverter.SingleToInt32Bits(dequantized[i]))
                    Assert.Fail($"{type} {name}[{i}]: {dequantized[i]:R}, expected {round(original[i]):R} (from {original[i]:R})");
            Report(type, name, original, dequantized);
            tensors++;
        }
        Assert.Equal(QuantizedTensorsPerFile, tensors);
    }

    /// <summary>
    /// Symmetric types, <c>x = d * q</c> with <c>q</c> in <c>-n .. n-1</c> (Q8_0: <c>d = amax / 127</c>; Q4_0, Q5_0:
    /// <c>d = max / -n</c> where <c>max</c> is the signed value of largest magnitude, n = 8 or 16).
    /// </summary>
    [Theory]
    [InlineData("Q8_0", 128)]
    [InlineData("Q4_0", 8)]
    [InlineData("Q5_0", 16)]
    public void Symmetric_32_blocks_are_within_half_a_step(string type, int n)
    {
        // quantize_row_q8_0_ref: d = amax/127, q = round(x/d): no clamping, so |x - q d| <= d/2.
        // quantize_row_q4_0_ref / q5_0_ref: d = max/-n, q = min(2n - 1, (int)(x/d + n + 0.5)) - n: rounding half up,
        // except that t = x/d above n - 0.5 (only weights of the opposite sign to max, near -max) is clamped to n - 1,
        // an error of (t - (n - 1)) |d| <= |d|.
        // Then d is stored as f16 (GGML_FP32_TO_FP16, round to nearest): q d16 differs from q d by at most
        // n * (half an f16 ulp of d). The slack covers float rounding of x/d (can move a tie by one step's millionth).
        CheckBlocks(type, block =>
        {
            float amax = 0, max = 0;
            foreach (float v in block)
                if (MathF.Abs(v) > amax)
                    (amax, max) = (MathF.Abs(v), v);
            double d = n == 128 ? amax / 127.0 : max / (double)-n;
            double ad = Math.Abs(d);
            double scaleRounding = n * F16Rounding(d);
            return x =>
            {
                double t = d == 0 ? 0 : x / d;
                double step = ad * Math.Max(0.5, t - (n - 1));
                return step + scaleRounding + 1e-4 * ad + 1e-6 * Math.Abs(x);
            };
        });
    }

    /// <summary>Affine types, <c>x = d * q + m</c> with <c>q</c> in <c>0 .. n</c> (Q4_1: n = 15, Q5_1: n = 31).</summary>
    [Theory]
    [InlineData("Q4_1", 15)]
    [InlineData("Q5_1", 31)]
    public void Affine_32_blocks_are_within_half_a_step(string type, int n)
    {
        // quantize_row_q4_1_ref / q5_1_ref: d = (max - min)/n, m = min, q = (int)((x - min)/d + 0.5) (min'd with n
        // for Q4_1, never reached): |x - (q d + min)| <= d/2. Storing d and m as f16 adds up to n half-ulps of d and
        // one half-ulp of m.
        CheckBlocks(type, block =>
        {
            float min = block.Min(), max = block.Max();
            double d = ((double)max - min) / n;
            double bound = d / 2 + n * F16Rounding(d) + F16Rounding(min) + 1e-4 * d + 1e-6 * Math.Max(-min, max);
            return _ => bound;
        });
    }

    /// <summary>
    /// K-quants: no simple per-weight bound (the sub-block scales come from a weighted least-squares search and are
    /// then themselves quantized), so two per-tensor statistics. The relative RMS error sqrt(sum (y - x)^2 / sum x^2)
    /// must be at most <paramref name="maxRelativeRms"/>, about 1.2x the worst of the 16 tensors measured (the
    /// weights are iid Gaussian, so every tensor lands within 1-2% of the others); a wrong scale unpacking breaks it
    /// (tried: dropping the high bits of Q4_K's 6-bit scales gives 1.37, swapping neighbouring sub-blocks' scales
    /// 0.57). And the correlation with the original must exceed 0.9 even for Q2_K (measured 0.957): a wrong nibble,
    /// bit-plane or sub-block order scrambles weights within blocks and drives it toward zero.
    /// </summary>
    // Measured on tiny-TYPE.gguf (llama.cpp de3ff815, llama-quantize --pure, no imatrix), worst tensor of 16:
    //   type   max rel RMS   min correlation   ceiling
    //   Q2_K   0.2983        0.9571            0.36
    //   Q3_K   0.1517        0.9886            0.18
    //   Q4_K   0.0717        0.9974            0.086
    //   Q5_K   0.0363        0.9993            0.044
    //   Q6_K   0.0178        0.99984           0.022
    [Theory]
    [InlineData("Q2_K", 0.36)]
    [InlineData("Q3_K", 0.18)]
    [InlineData("Q4_K", 0.086)]
    [InlineData("Q5_K", 0.044)]
    [InlineData("Q6_K", 0.022)]
    public void K_quants_are_close_to_the_F32_weights(string type, double maxRelativeRms)
    {
        int tensors = 0;
        foreach (var (name, original, dequantized) in QuantizedTensors(type))
        {
            var (relativeRms, correlation) = Report(type, name, original, dequantized);
            Assert.True(relativeRms <= maxRelativeRms, $"{type} {name}: relative RMS error {relativeRms:G4} > {maxRelativeRms}");
            Assert.True(correlation > 0.9, $"{type} {name}: correlation with the F32 weights {correlation:G4} <= 0.9");
            tensors++;
        }
        Assert.Equal(QuantizedTensorsPerFile, tensors);
    }

    /// <summary>Checks every weight of every tensor of a 32-block type against the bound its block gives.</summary>
    private void CheckBlocks(string type, Func<float[], Func<float, double>> boundForBlock)
    {
        int tensors = 0;
        double worstRatio = 0;
        foreach (var (name, original, dequantized) in QuantizedTensors(type))
        {
            for (int start = 0; start < original.Length; start += 32)
            {
                float[] block = original[start..(start + 32)];
                Func<float, double> bound = boundForBlock(block);
                for (int k = 0; k < 32; k++)
                {
                    double error = Math.Abs((double)dequantized[start + k] - block[k]);
                    double allowed = bound(block[k]);
                    worstRatio = Math.Max(worstRatio, error / allowed);
                    if (error > allowed)
                        Assert.Fail($"{type} {name}[{start + k}]: {dequantized[start + k]:R} vs original {block[k]:R}, " +
                                    $"error {error:G4} > bound {allowed:G4}");
                }
            }
            Report(type, name, original, dequantized);
            tensors++;
        }
        output.WriteLine($"{type}: worst error / bound = {worstRatio:F3}");
        Assert.Equal(QuantizedTensorsPerFile, tensors);
    }

    /// <summary>Every 2-D tensor stored as <paramref name="type"/>, with its F32 original and its dequantized values.</summary>
    private IEnumerable<(string Name, float[] Original, float[] Dequantized)> QuantizedTensors(string type)
    {
        GgmlType ggmlType = QuantTable.All.Single(q => q.Name == type).Type;
        using GgufFile file = GgufFile.Open(TinyPath(type));
        foreach (GgufTensorInfo info in file.Tensors.Where(t => t.Dimensions.Length == 2))
        {
            Assert.Equal(ggmlType, info.Type); // --pure: every 2-D tensor has the file's type
            GgufTensorInfo? source = f32.File.FindTensor(info.Name);
            Assert.NotNull(source);
            Assert.Equal(source.Dimensions, info.Dimensions);
            var dequantized = new float[info.ElementCount];
            QuantTable.Dequantize(info.Type, file.GetTensorBytes(info), dequantized);
            yield return (info.Name, f32.Weights(info.Name), dequantized);
        }
    }

    private (double RelativeRms, double Correlation) Report(string type, string name, float[] x, float[] y)
    {
        double sxx = 0, syy = 0, sxy = 0, sx = 0, sy = 0, see = 0;
        for (int i = 0; i < x.Length; i++)
        {
            sx += x[i];
            sy += y[i];
            sxx += (double)x[i] * x[i];
            syy += (double)y[i] * y[i];
            sxy += (double)x[i] * y[i];
            see += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        }
        int count = x.Length;
        double relativeRms = Math.Sqrt(see / sxx);
        double covariance = sxy - sx * sy / count;
        double correlation = covariance / Math.Sqrt((sxx - sx * sx / count) * (syy - sy * sy / count));
        output.WriteLine($"{type} {name,-24} rel RMS {relativeRms:E3}  correlation {correlation:F6}");
        return (relativeRms, correlation);
    }

    /// <summary>Half an f16 ulp at <paramref name="v"/>: the most that rounding <paramref name="v"/> to f16 moves it.</summary>
    private static double F16Rounding(double v) => Math.Max(Math.Abs(v) * Math.Pow(2, -11), Math.Pow(2, -25));

    /// <summary>Float to bfloat16 by round to nearest, ties to even (ggml_compute_fp32_to_bf16 for non-NaN values).</summary>
    private static float RoundToBFloat16(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        uint rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000;
        return BitConverter.UInt32BitsToSingle(rounded);
    }
}
