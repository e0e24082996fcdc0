using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The prompt kernels (<see cref="QuantType.DotPrompt"/>: Q4_0 and Q8_0 with 16 weight rows in the lanes, AVX-512)
/// give, for every weight row and token, exactly the bits of the type's scalar twin, for any token count, row counts
/// that leave partial groups of 16, odd block counts and strided results; elsewhere the table has no prompt kernel.
/// </summary>
public class QuantDotPromptTests
{
    public static TheoryData<string, int, int> Cases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (string name in new[] { "Q4_0", "Q8_0" })
            foreach (int blocks in new[] { 1, 7, 64 })
                foreach (int rows in new[] { 1, 5, 16, 17, 33 })
                    data.Add(name, blocks, rows);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_row_and_token_has_the_scalar_twins_bits(string name, int blocks, int rows)
    {
        QuantType q = QuantTable.All.Single(t => t.Name == name);
        if (!QuantDot.HasPromptKernels)
        {
            Assert.Null(q.DotPrompt);
            return;
        }
        var prompt = q.DotPrompt!;
        int n = blocks * 32;
        var rng = new Random(blocks * 7 + rows * 131 + (int)q.Type);
        int wb = (int)q.RowBytes(n), wStride = wb + 3;
        var w = new byte[rows * wStride];
        for (int r = 0; r < rows; r++) QuantDotTests.RandomWeights(q, rng).Invoke(w.AsSpan(r * wStride, wb));
        int ab = (int)q.ActivationRowBytes(n), stride = ab + 5;
        const int most = 70;
        var a = new byte[most * stride];
        for (int t = 0; t < most; t++) q.QuantizeActivations(ActivationQuantTests.RandomActivations(rng, n), a.AsSpan(t * stride, ab));
        int resultStride = rows + 2;
        foreach (int count in new[] { 1, 7, 8, 9, 17, 70 }) // 70: Q8_0 takes 64 tokens a call, then 6
        {
            var results = new float[count * resultStride];
            Array.Fill(results, float.NaN);
            prompt(w, wStride, rows, a, stride, count, n, results, resultStride);
            for (int t = 0; t < count; t++)
            {
                for (int r = 0; r < rows; r++)
                {
                    float expected = q.DotScalar(w.AsSpan(r * wStride, wb), a.AsSpan(t * stride, ab), n);
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(results[t * resultStride + r]),
                        $"{name} blocks {blocks} rows {rows} count {count} row {r} token {t}: {results[t * resultStride + r]:R}, scalar twin {expected:R}");
                }
                for (int r = rows; r < resultStride && t * resultStride + r < results.Length; r++)
                    Assert.True(float.IsNaN(results[t * resultStride + r]), "a prompt kernel wrote outside its rows");
            }
        }
    }

    [Fact]
    public void Only_Q4_0_and_Q8_0_have_prompt_kernels()
    {
        foreach (var q in QuantTable.All)
            Assert.Equal(QuantDot.HasPromptKernels && q.Type is GgmlType.Q4_0 or GgmlType.Q8_0, q.DotPrompt is not null);
    }

    [Fact]
    public void Bad_shapes_are_refused()
    {
        if (!QuantDot.HasPromptKernels) return;
        var prompt = QuantTable.Get(GgmlType.Q4_0).DotPrompt!;
        var w = new byte[18 * 2];
        var a = new byte[34 * 4];
        var r = new float[16];
        Assert.Throws<ArgumentOutOfRangeException>(() => prompt(w, 18, 2, a, 34, 0, 32, r, 2));
        Assert.Throws<ArgumentException>(() => prompt(w, 18, 2, a, 34, 1, 33, r, 2));
        Assert.Throws<ArgumentException>(() => prompt(w, 18, 3, a, 34, 1, 32, r, 3));
        Assert.Throws<ArgumentException>(() => prompt(w, 18, 2, a, 34, 5, 32, r, 2));
        Assert.Throws<ArgumentException>(() => prompt(w, 18, 2, a, 34, 4, 32, new float[7], 2));
        Assert.Throws<ArgumentException>(() => prompt(w, 17, 2, a, 34, 1, 32, r, 2));
    }
}
