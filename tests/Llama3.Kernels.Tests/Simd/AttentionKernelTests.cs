using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>The grouped attention kernels against their scalar twins, at awkward lengths and offsets.</summary>
public class AttentionKernelTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 8, 1 }, { 4, 64, 7 }, { 4, 64, 257 }, { 1, 64, 4097 }, { 8, 128, 33 }, { 2, 24, 31 }, { 3, 6, 5 }, { 4, 256, 32 },
        { 3, 128, 5 }, { 5, 64, 6 }, { 2, 128, 3 }, { 7, 64, 1 }, { 1, 128, 4 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ScoresAndWeightedSumMatchTheScalarTwins(int group, int hd, int positions)
    {
        var rng = new Random(group * 1000 + hd + positions);
        int kvHeads = 3, kvStride = kvHeads * hd, kvOffset = hd; // the middle KV head, to test the offset
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        var q = Rand(group * hd + 3)[3..];   // an odd start
        var keys = Rand(positions * kvStride);
        var values = Rand(positions * kvStride);
        int stride = positions + 2;
        var s1 = new float[group * stride];
        var s2 = new float[group * stride];
        AttentionKernel.Scores(q, group, hd, keys, kvStride, kvOffset, positions, MathF.Sqrt(hd), s1, stride);
        AttentionKernel.ScoresScalar(q, group, hd, keys, kvStride, kvOffset, positions, MathF.Sqrt(hd), s2, stride);
        // Float sums in another order: within a few ulps of the sum of |terms| (here at most hd / sqrt(hd)).
        float tol = 1e-6f * hd;
        for (int i = 0; i < s1.Length; i++) Assert.True(Math.Abs(s1[i] - s2[i]) <= tol, $"score {i}: {s1[i]} vs {s2[i]}");

        for (int g = 0; g < group; g++) Activations.SoftmaxScalar(s2.AsSpan(g * stride, positions));
        var o1 = new float[group * hd];
        var o2 = new float[group * hd];
        AttentionKernel.WeightedSum(s2, stride, group, values, kvStride, kvOffset, positions, hd, o1);
        AttentionKernel.WeightedSumScalar(s2, stride, group, values, kvStride, kvOffset, positions, hd, o2);
        for (int i = 0; i < o1.Length; i++) Assert.True(Math.Abs(o1[i] - o2[i]) <= 1e-5f, $"output {i}: {o1[i]} vs {o2[i]}");
    }

    /// <summary>
    /// The F16-cache kernels against the float kernels on the same keys and values widened: the same bits (on the
    /// vector paths and on the scalar twins), at lengths around the widened blocks' (64 and 32 positions) and every
    /// pattern of half but NaN (subnormals, zeros and infinities included; a NaN would make the comparison mean nothing).
    /// </summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    [InlineData(4, 64, 64)]
    [InlineData(4, 64, 65)]
    [InlineData(4, 64, 130)]
    [InlineData(2, 128, 95)]
    [InlineData(4, 128, 1000)]
    public void The_F16_cache_gives_the_bits_of_a_float_cache_holding_its_halves(int group, int hd, int positions)
    {
        var rng = new Random(group * 7919 + hd * 31 + positions);
        int kvHeads = 3, kvStride = kvHeads * hd, kvOffset = hd;
        Half RandomHalf()
        {
            // Most of the values as a cache holds them, some of every exponent (subnormals and infinities among them).
            if (rng.Next(8) > 0) return (Half)(rng.NextSingle() * 4 - 2);
            ushort bits;
            do bits = (ushort)rng.Next(65536); while ((bits & 0x7C00) == 0x7C00 && (bits & 0x03FF) != 0);
            return BitConverter.UInt16BitsToHalf(bits);
        }
        var keys16 = Enumerable.Range(0, positions * kvStride).Select(_ => RandomHalf()).ToArray();
        var values16 = Enumerable.Range(0, positions * kvStride).Select(_ => RandomHalf()).ToArray();
        float[] keys = keys16.Select(h => (float)h).ToArray(), values = values16.Select(h => (float)h).ToArray();
        var q = Enumerable.Range(0, group * hd).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        int stride = positions + 2;
        foreach (bool scalar in new[] { false, true })
        {
            var expected = new float[group * stride];
            var actual = new float[group * stride];
            if (scalar)
            {
                AttentionKernel.ScoresScalar(q, group, hd, keys, kvStride, kvOffset, positions, MathF.Sqrt(hd), expected, stride);
                AttentionKernel.ScoresScalar(q, group, hd, keys16, kvStride, kvOffset, positions, MathF.Sqrt(hd), actual, stride);
            }
            else
            {
                AttentionKernel.Scores(q, group, hd, keys, kvStride, kvOffset, positions, MathF.Sqrt(hd), expected, stride);
                AttentionKernel.Scores(q, group, hd, keys16, kvStride, kvOffset, positions, MathF.Sqrt(hd), actual, stride);
            }
            AssertSameBits(expected, actual, $"{(scalar ? "scalar " : "")}scores");

            // Weights as softmax leaves them (0 to 1), some of them zero.
            var weights = Enumerable.Range(0, group * stride).Select(_ => rng.Next(5) == 0 ? 0f : rng.NextSingle()).ToArray();
            var o1 = new float[group * hd];
            var o2 = new float[group * hd];
            Array.Fill(o2, float.NaN); // overwritten, never read
            if (scalar)
            {
                AttentionKernel.WeightedSumScalar(weights, stride, group, values, kvStride, kvOffset, positions, hd, o1);
                AttentionKernel.WeightedSumScalar(weights, stride, group, values16, kvStride, kvOffset, positions, hd, o2);
            }
            else
            {
                AttentionKernel.WeightedSum(weights, stride, group, values, kvStride, kvOffset, positions, hd, o1);
                AttentionKernel.WeightedSum(weights, stride, group, values16, kvStride, kvOffset, positions, hd, o2);
            }
            AssertSameBits(o1, o2, $"{(scalar ? "scalar " : "")}weighted sums");
        }
    }

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{what} [{i}]: F16 cache {actual[i]:R}, float cache {expected[i]:R} (must be the same bits)");
    }

    [Fact]
    public void ShapeErrorsAreClear()
    {
        Assert.Throws<ArgumentException>(() => AttentionKernel.Scores(new float[8], 1, 8, new float[8], 8, 0, 2, 1, new float[2], 2));
        Assert.Throws<ArgumentException>(() => AttentionKernel.WeightedSum(new float[2], 2, 1, new float[16], 8, 4, 2, 8, new float[8]));
        Assert.Throws<ArgumentException>(() => AttentionKernel.Scores(new float[8], 1, 8, new Half[8], 8, 0, 2, 1, new float[2], 2));
        Assert.Throws<ArgumentException>(() => AttentionKernel.WeightedSum(new float[2], 2, 1, new Half[16], 8, 4, 2, 8, new float[8]));
    }
}
