using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The packed Q4_0, Q8_0, Q4_K and Q6_K layouts (<see cref="QuantType.Packed"/>: 16 rows in the vector lanes, AVX-512): the packing
/// puts every byte of the rows where the layout says, slices packed apart make the same bytes as the whole, and the
/// packed product gives every row and token exactly the scalar twin's bits for any token count, including one; elsewhere
/// the table has no packed layout and the kernels refuse.
/// </summary>
public class QuantDotPackedTests
{
    public static TheoryData<string, int, int> Cases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (string name in new[] { "Q4_0", "Q8_0", "Q4_K", "Q6_K" })
            foreach (int blocks in name is "Q4_0" or "Q8_0" ? new[] { 1, 7, 64 } : new[] { 1, 3, 8 })
                foreach (int rows in new[] { 1, 5, 16, 17, 33 })
                    data.Add(name, blocks, rows);
        return data;
    }

    private static readonly QuantType Q4_0 = QuantTable.Get(GgmlType.Q4_0);

    // The type's pack, byte size and product, called directly (the table has them only on AVX-512).
    private static (PackRows Pack, Func<long, int, long> Bytes, DotPackedRows Dot) Kernels(QuantType q) => q.Type switch
    {
        GgmlType.Q4_0 => (QuantDot.PackQ4_0, QuantDot.PackedQ4_0Bytes, QuantDot.DotPackedQ4_0),
        GgmlType.Q8_0 => (QuantDot.PackQ8_0, QuantDot.PackedQ8_0Bytes, QuantDot.DotPackedQ8_0),
        GgmlType.Q4_K => (QuantDot.PackQ4_K, QuantDot.PackedQ4_KBytes, QuantDot.DotPackedQ4_K),
        _ => (QuantDot.PackQ6_K, QuantDot.PackedQ6_KBytes, QuantDot.DotPackedQ6_K),
    };

    private static byte[] RandomRows(QuantType q, Random rng, int rows, int wStride, int n)
    {
        int wb = (int)q.RowBytes(n);
        var w = new byte[rows * wStride];
        for (int r = 0; r < rows; r++) QuantDotTests.RandomWeights(q, rng).Invoke(w.AsSpan(r * wStride, wb));
        return w;
    }

    private static byte[] RandomRows(Random rng, int rows, int wStride, int n) => RandomRows(Q4_0, rng, rows, wStride, n);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_row_and_token_has_the_scalar_twins_bits(string name, int blocks, int rows)
    {
        QuantType q = QuantTable.All.Single(t => t.Name == name);
        var kernels = Kernels(q);
        int n = blocks * q.BlockSize, wb = (int)q.RowBytes(n), wStride = wb + 3;
        var rng = new Random(blocks * 7 + rows * 131 + (int)q.Type);
        var w = RandomRows(q, rng, rows, wStride, n);
        var packed = new byte[kernels.Bytes(rows, n)];
        Assert.Equal(((rows + 15) / 16) * 16L * wb, packed.Length); // the rows' size, the last group padded
        kernels.Pack(w, wStride, rows, n, packed);
        int ab = (int)q.ActivationRowBytes(n), stride = ab + 5;
        const int most = 19;
        var a = new byte[most * stride];
        for (int t = 0; t < most; t++) q.QuantizeActivations(ActivationQuantTests.RandomActivations(rng, n), a.AsSpan(t * stride, ab));
        int resultStride = rows + 2;
        foreach (int count in new[] { 1, 2, 4, 7, 8, 9, 19 })
        {
            var results = new float[count * resultStride];
            Array.Fill(results, float.NaN);
            if (!QuantDot.HasPromptKernels)
            {
                Assert.Null(q.Packed);
                Assert.Throws<PlatformNotSupportedException>(() => kernels.Dot(packed, rows, a, stride, count, n, results, resultStride));
                return;
            }
            q.Packed!.Dot(packed, rows, a, stride, count, n, results, resultStride);
            for (int t = 0; t < count; t++)
            {
                for (int r = 0; r < rows; r++)
                {
                    float expected = q.DotScalar(w.AsSpan(r * wStride, wb), a.AsSpan(t * stride, ab), n);
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(results[t * resultStride + r]),
                        $"{name} blocks {blocks} rows {rows} count {count} row {r} token {t}: {results[t * resultStride + r]:R}, scalar twin {expected:R}");
                }
                for (int r = rows; r < resultStride && t * resultStride + r < results.Length; r++)
                    Assert.True(float.IsNaN(results[t * resultStride + r]), "the packed kernel wrote outside its rows");
            }
        }
    }

    // Where byte j of a row's block b lies in its packed group, for the row in lane `lane` (the layouts as the kernels'
    // files describe them, written out independently of the packing code).
    private static int Where(QuantType q, int j, int b, int blocks, int lane)
    {
        // Blocks in pairs: each block's vectors (vectorBytes), then the pair's 2 x 32 bytes of scales; the scales of a
        // last, unpaired block follow its vectors.
        int Paired(int vectorBytes, int vectorByte, int scaleByte)
        {
            int pair = b / 2 * 2 * (vectorBytes + 32);
            if (scaleByte >= 0)
                return (b + 1 < blocks || b % 2 == 1 ? pair + 2 * vectorBytes + b % 2 * 32 : pair + vectorBytes) + lane * 2 + scaleByte;
            return pair + b % 2 * vectorBytes + vectorByte / 4 * 64 + lane * 4 + vectorByte % 4;
        }
        int Dword(int at, int k) => at + k / 4 * 64 + lane * 4 + k % 4; // dword k / 4 of every row, lane by lane
        return q.Type switch
        {
            GgmlType.Q4_0 or GgmlType.Q8_0 => j < 2 ? Paired((q.BytesPerBlock - 2) * 16, 0, j) : Paired((q.BytesPerBlock - 2) * 16, j - 2, -1),
            GgmlType.Q4_K => b * 2304 + (j < 2 ? 2240 + lane * 2 + j : j < 4 ? 2272 + lane * 2 + j - 2 : j < 16 ? Dword(2048, j - 4) : Dword(0, j - 16)),
            _ => j < 208 ? Paired(3328, j, -1) : Paired(3328, 0, j - 208), // Q6_K: ql, qh and the scales, then d
        };
    }

    [Theory]
    [InlineData("Q4_0")]
    [InlineData("Q8_0")]
    [InlineData("Q4_K")]
    [InlineData("Q6_K")]
    public void Every_byte_of_the_rows_is_where_the_layout_says(string name)
    {
        QuantType q = QuantTable.All.Single(t => t.Name == name);
        var kernels = Kernels(q);
        const int rows = 21, blocks = 3;
        int n = blocks * q.BlockSize, wb = blocks * q.BytesPerBlock;
        var w = RandomRows(q, new Random(5), rows, wb, n);
        var packed = new byte[kernels.Bytes(rows, n)];
        Assert.Equal(2 * 16 * wb, packed.Length); // two groups, the second padded, the size of the rows
        kernels.Pack(w, wb, rows, n, packed);
        var seen = new bool[packed.Length];
        for (int g = 0; g < 2; g++)
            for (int lane = 0; lane < 16; lane++)
            {
                int row = Math.Min(g * 16 + lane, rows - 1); // lanes past the last row repeat it
                for (int b = 0; b < blocks; b++)
                    for (int j = 0; j < q.BytesPerBlock; j++)
                    {
                        int at = g * 16 * wb + Where(q, j, b, blocks, lane);
                        Assert.Equal(w[row * wb + b * q.BytesPerBlock + j], packed[at]);
                        Assert.False(seen[at], $"{name}: two bytes packed to {at}");
                        seen[at] = true;
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
    public void Only_Q4_0_Q8_0_Q4_K_and_Q6_K_have_a_packed_layout_and_only_on_AVX_512()
    {
        foreach (var q in QuantTable.All)
            Assert.Equal(QuantDot.HasPromptKernels && q.Type is GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q6_K, q.Packed is not null);
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
        Assert.Throws<ArgumentException>(() => QuantDot.PackedQ4_KBytes(16, 288));
        Assert.Throws<ArgumentException>(() => QuantDot.PackQ4_K(new byte[144 * 2], 144, 2, 256, new byte[144 * 15]));
        Assert.Throws<ArgumentException>(() => QuantDot.PackQ4_K(new byte[144 * 2], 143, 2, 256, new byte[144 * 16]));
        var packed = new byte[18 * 16];
        var a = new byte[34 * 4];
        var r = new float[16];
        if (!QuantDot.HasPromptKernels)
        {
            Assert.Throws<PlatformNotSupportedException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 1, 32, r, 2));
            Assert.Throws<PlatformNotSupportedException>(() => QuantDot.DotPackedQ4_K(new byte[144 * 16], 2, new byte[292], 292, 1, 256, r, 2));
            Assert.Throws<PlatformNotSupportedException>(() => QuantDot.DotPackedQ6_K(new byte[210 * 16], 2, new byte[292], 292, 1, 256, r, 2));
            Assert.Throws<PlatformNotSupportedException>(() => QuantDot.DotPackedQ8_0(new byte[34 * 16], 2, a, 34, 1, 32, r, 2));
            return;
        }
        var pk = new byte[144 * 16];
        var ak = new byte[292 * 2];
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantDot.DotPackedQ4_K(pk, 2, ak, 292, 0, 256, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_K(pk, 17, ak, 292, 1, 256, r, 17));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_K(pk, 2, ak, 292, 3, 256, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_K(pk, 2, ak, 291, 1, 256, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_K(pk, 2, ak, 292, 2, 256, new float[3], 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ6_K(new byte[210 * 15], 2, ak, 292, 1, 256, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ6_K(new byte[210 * 16], 2, ak, 292, 3, 256, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ8_0(new byte[34 * 15], 2, a, 34, 1, 32, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ8_0(new byte[34 * 16], 2, a, 34, 5, 32, r, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 0, 32, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 1, 33, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_0(packed, 17, a, 34, 1, 32, r, 17));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 5, 32, r, 2));
        Assert.Throws<ArgumentException>(() => QuantDot.DotPackedQ4_0(packed, 2, a, 34, 4, 32, new float[7], 2));
    }
}
