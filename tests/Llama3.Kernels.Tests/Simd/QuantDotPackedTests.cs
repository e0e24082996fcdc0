using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The packed Q4_0 layout (<see cref="QuantType.Packed"/>: 16 rows in the vector lanes, AVX-512): the packing puts every
/// byte of the rows where the layout says, slices packed apart make the same bytes as the whole, and the packed product
/// gives every row and token exactly the scalar twin's bits for any token count, including one; elsewhere the table has
/// no packed layout and the kernel refuses.
/// </summary>
public class QuantDotPackedTests
{
    public static TheoryData<int, int> Cases()
    {
        var data = new TheoryData<int, int>();
        foreach (int blocks in new[] { 1, 7, 64 })
            foreach (int rows in new[] { 1, 5, 16, 17, 33 })
                data.Add(blocks, rows);
        return data;
    }

    private static readonly QuantType Q4_0 = QuantTable.Get(GgmlType.Q4_0);

    private static byte[] RandomRows(Random rng, int rows, int wStride, int n)
    {
        int wb = (int)Q4_0.RowBytes(n);
        var w = new byte[rows * wStride];
        for (int r = 0; r < rows; r++) QuantDotTests.RandomWeights(Q4_0, rng).Invoke(w.AsSpan(r * wStride, wb));
        return w;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_row_and_token_has_the_scalar_twins_bits(int blocks, int rows)
    {
        int n = blocks * 32, wb = (int)Q4_0.RowBytes(n), wStride = wb + 3;
        var rng = new Random(blocks * 7 + rows * 131);
        var w = RandomRows(rng, rows, wStride, n);
        var packed = new byte[QuantDot.PackedQ4_0Bytes(rows, n)];
        QuantDot.PackQ4_0(w, wStride, rows, n, packed);
        int ab = (int)Q4_0.ActivationRowBytes(n), stride = ab + 5;
        const int most = 19;
        var a = new byte[most * stride];
        for (int t = 0; t < most; t++) Q4_0.QuantizeActivations(ActivationQuantTests.RandomActivations(rng, n), a.AsSpan(t * stride, ab));
        int resultStride = rows + 2;
        foreach (int count in new[] { 1, 2, 4, 7, 8, 9, 19 })
        {
            var results = new float[count * resultStride];
            Array.Fill(results, float.NaN);
            if (!QuantDot.HasPromptKernels)
            {
                Assert.Null(Q4_0.Packed);
                Assert.Throws<PlatformNotSupportedException>(() => QuantDot.DotPackedQ4_0(packed, rows, a, stride, count, n, results, resultStride));
                return;
            }
            Q4_0.Packed!.Dot(packed, rows, a, stride, count, n, results, resultStride);
            for (int t = 0; t < count; t++)
            {
                for (int r = 0; r < rows; r++)
                {
                    float expected = Q4_0.DotScalar(w.AsSpan(r * wStride, wb), a.AsSpan(t * stride, ab), n);
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(results[t * resultStride + r]),
                        $"blocks {blocks} rows {rows} count {count} row {r} token {t}: {results[t * resultStride + r]:R}, scalar twin {expected:R}");
                }
                for (int r = rows; r < resultStride && t * resultStride + r < results.Length; r++)
                    Assert.True(float.IsNaN(results[t * resultStride + r]), "the packed kernel wrote outside its rows");
            }
        }
    }

    [Fact]
    public void Every_byte_of_the_rows_is_where_the_layout_says()
    {
        const int rows = 21, blocks = 3, n = blocks * 32, wb = blocks * 18;
        var w = RandomRows(new Random(5), rows, wb, n);
        var packed = new byte[QuantDot.PackedQ4_0Bytes(rows, n)];
        Assert.Equal(2 * 16 * wb, packed.Length); // two groups, the second padded, the size of the rows
        QuantDot.PackQ4_0(w, wb, rows, n, packed);
        for (int g = 0; g < 2; g++)
            for (int lane = 0; lane < 16; lane++)
            {
                int row = Math.Min(g * 16 + lane, rows - 1); // lanes past the last row repeat it
                int group = g * 16 * wb;
                for (int b = 0; b < blocks; b++)
                {
                    int block = row * wb + b * 18;
                    // Pairs of blocks: 2 x 256 bytes of nibbles, then 2 x 32 of scales; the unpaired third block's scales
                    // follow its nibbles.
                    int pair = group + b / 2 * 576, nibbles = pair + b % 2 * 256;
                    int scale = (b < 2 ? pair + 512 + b % 2 * 32 : pair + 256) + lane * 2;
                    Assert.Equal(w[block], packed[scale]);
                    Assert.Equal(w[block + 1], packed[scale + 1]);
                    for (int k = 0; k < 4; k++)
                        for (int j = 0; j < 4; j++)
                            Assert.Equal(w[block + 2 + 4 * k + j], packed[nibbles + k * 64 + lane * 4 + j]);
                }
            }
    }

    [Fact]
    public void Slices_packed_apart_make_the_whole()
    {
        const int rows = 50, n = 64, wb = 36;
        var w = RandomRows(new Random(9), rows, wb, n);
        var whole = new byte[QuantDot.PackedQ4_0Bytes(rows, n)];
        QuantDot.PackQ4_0(w, wb, rows, n, whole);
        var sliced = new byte[whole.Length];
        long group = QuantDot.PackedQ4_0Bytes(16, n);
        QuantDot.PackQ4_0(w.AsSpan(0, 32 * wb), wb, 32, n, sliced.AsSpan(0, (int)(2 * group)));
        QuantDot.PackQ4_0(w.AsSpan(32 * wb), wb, rows - 32, n, sliced.AsSpan((int)(2 * group)));
        Assert.Equal(whole, sliced);
    }

    [Fact]
    public void Only_Q4_0_has_a_packed_layout_and_only_on_AVX_512()
    {
        foreach (var q in QuantTable.All)
            Assert.Equal(QuantDot.HasPromptKernels && q.Type == GgmlType.Q4_0, q.Packed is not null);
    }

    [Fact]
    public void Bad_shapes_are_refused()
    {
        var w = new byte[18 * 2];
        Assert.Throws<ArgumentException>(() => QuantDot.PackQ4_0(w, 18, 2, 32, new byte[18 * 15]));
        Assert.Throws<ArgumentException>(() => QuantDot.PackQ4_0(w, 18, 3, 32, new byte[18 * 16]));
        Assert.Throws<ArgumentException>(() => QuantDot.PackQ4_0(w, 17, 2, 32, new byte[18 * 16]));
        Assert.Throws<ArgumentException>(() => QuantDot.PackQ4_0(w, 18, 2, 33, new byte[18 * 16]));
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantDot.PackedQ4_0Bytes(-1, 32));
        var packed = new byte[18 * 16];
        var a = new byte[34 * 4];
        var r = new float[16];
        if (!QuantDot.HasPromptKernels)
        {
            Assert.Throws<PlatformNotSupportedException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 1, 32, r, 2));
            return;
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 0, 32, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 1, 33, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_0(packed, 17, a, 34, 1, 32, r, 17));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 5, 32, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 4, 32, new float[7], 2));
    }
}
