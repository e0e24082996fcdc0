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

    [Fact]
    public void ShapeErrorsAreClear()
    {
        Assert.Throws<ArgumentException>(() => AttentionKernel.Scores(new float[8], 1, 8, new float[8], 8, 0, 2, 1, new float[2], 2));
        Assert.Throws<ArgumentException>(() => AttentionKernel.WeightedSum(new float[2], 2, 1, new float[16], 8, 4, 2, 8, new float[8]));
    }
}
