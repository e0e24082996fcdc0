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

    /// <summary>
    /// Prompt attention in tiles of tokens against one head's contiguous cache: every token's scores and weighted sums
    /// have the bits of the one-token kernels over its own positions, for float and F16 caches, with the tokens'
    /// positions ending inside, at and across the 64- and 32-position blocks.
    /// </summary>
    [Theory]
    [InlineData(4, 64, new[] { 1, 2, 3, 63, 64, 65, 127, 128, 129, 200 })]
    [InlineData(2, 128, new[] { 5, 31, 32, 33, 95, 96, 97 })]
    [InlineData(3, 24, new[] { 1, 7, 40 })]
    [InlineData(1, 64, new[] { 300 })]
    public void Tiles_of_tokens_give_each_token_the_bits_of_its_own_call(int group, int hd, int[] positions)
    {
        var rng = new Random(group * 131 + hd + positions.Length);
        int most = positions.Max(), tokens = positions.Length;
        var keys = Enumerable.Range(0, most * hd).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        var values = Enumerable.Range(0, most * hd).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        Half[] keys16 = keys.Select(x => (Half)x).ToArray(), values16 = values.Select(x => (Half)x).ToArray();
        int qStride = group * hd + 5; // the tokens' rows apart, as in the model's q
        var q = Enumerable.Range(0, tokens * qStride).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        int scoresStride = most + 1, tokenStride = group * scoresStride + 3;
        foreach (bool f16 in new[] { false, true })
        {
            var scores = new float[tokens * tokenStride];
            if (f16) AttentionKernel.Scores(q, qStride, positions, group, hd, keys16, MathF.Sqrt(hd), scores, tokenStride, scoresStride);
            else AttentionKernel.Scores(q, qStride, positions, group, hd, keys, MathF.Sqrt(hd), scores, tokenStride, scoresStride);
            var weights = Enumerable.Range(0, tokens * tokenStride).Select(_ => rng.NextSingle()).ToArray();
            var output = new float[tokens * qStride];
            if (f16) AttentionKernel.WeightedSum(weights, tokenStride, scoresStride, positions, group, values16, hd, output, qStride);
            else AttentionKernel.WeightedSum(weights, tokenStride, scoresStride, positions, group, values, hd, output, qStride);
            for (int i = 0; i < tokens; i++)
            {
                int p = positions[i];
                var one = new float[group * scoresStride];
                var qi = q.AsSpan(i * qStride, group * hd);
                if (f16) AttentionKernel.Scores(qi, group, hd, keys16, hd, 0, p, MathF.Sqrt(hd), one, scoresStride);
                else AttentionKernel.Scores(qi, group, hd, keys, hd, 0, p, MathF.Sqrt(hd), one, scoresStride);
                for (int g = 0; g < group; g++)
                    AssertSameBits(one.AsSpan(g * scoresStride, p).ToArray(), scores.AsSpan(i * tokenStride + g * scoresStride, p).ToArray(),
                        $"{(f16 ? "F16" : "float")} token {i} ({p} positions) head {g} scores");
                var o = new float[group * hd];
                var wi = weights.AsSpan(i * tokenStride);
                if (f16) AttentionKernel.WeightedSum(wi, scoresStride, group, values16, hd, 0, p, hd, o);
                else AttentionKernel.WeightedSum(wi, scoresStride, group, values, hd, 0, p, hd, o);
                AssertSameBits(o, output.AsSpan(i * qStride, group * hd).ToArray(), $"{(f16 ? "F16" : "float")} token {i} ({p} positions) outputs");
            }
        }
    }

    /// <summary>Query heads taken four at a time give each head's scores alone, bit for bit (groups of 4, 5 and 8).</summary>
    [Theory]
    [InlineData(4, 64, 37)]
    [InlineData(5, 128, 9)]
    [InlineData(8, 64, 130)]
    public void Heads_scored_together_give_each_heads_bits_alone(int group, int hd, int positions)
    {
        var rng = new Random(group + hd + positions);
        var keys = Enumerable.Range(0, positions * hd).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        var q = Enumerable.Range(0, group * hd).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        var together = new float[group * positions];
        AttentionKernel.Scores(q, group, hd, keys, hd, 0, positions, MathF.Sqrt(hd), together, positions);
        for (int g = 0; g < group; g++)
        {
            var alone = new float[positions];
            AttentionKernel.Scores(q.AsSpan(g * hd, hd), 1, hd, keys, hd, 0, positions, MathF.Sqrt(hd), alone, positions);
            AssertSameBits(alone, together.AsSpan(g * positions, positions).ToArray(), $"head {g} of {group}");
        }
    }

    [Fact]
    public void Tile_shape_errors_are_clear()
    {
        Assert.Throws<ArgumentException>(() => AttentionKernel.Scores(new float[16], 8, [2, 0], 1, 8, new float[16], 1, new float[8], 4, 2));
        Assert.Throws<ArgumentException>(() => AttentionKernel.Scores(new float[16], 8, [2, 3], 1, 8, new float[16], 1, new float[8], 4, 3));
        Assert.Throws<ArgumentException>(() => AttentionKernel.WeightedSum(new float[8], 4, 2, [1, 2], 1, new Half[16], 8, new float[12], 8));
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
