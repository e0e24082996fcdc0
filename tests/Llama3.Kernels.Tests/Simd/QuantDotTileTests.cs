using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The matrix-product tiles (<see cref="QuantType.DotTile"/>) give, for every weight row and token, exactly the bits of
/// <see cref="QuantType.DotMany"/> on that row, for every type of the table, with awkward row counts, token counts
/// 1..8, odd block counts and strided results.
/// </summary>
public class QuantDotTileTests
{
    public static TheoryData<string, int, int> Cases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (var q in QuantTable.All)
        {
            if (q.VecDotType == q.Type && q.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0)) continue; // activation-only types
            foreach (int blocks in q.BlockSize == 32 ? new[] { 1, 2, 7, 64 } : new[] { 1, 3 })
                foreach (int rows in new[] { 1, 5 })
                    data.Add(q.Name, blocks, rows);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void A_tile_gives_the_bits_of_DotMany_row_by_row(string name, int blocks, int rows)
    {
        QuantType q = QuantTable.All.Single(t => t.Name == name);
        int n = blocks * q.BlockSize;
        var rng = new Random(blocks * 131 + rows + (int)q.Type);
        int wb = (int)q.RowBytes(n);
        var w = new byte[rows * wb];
        for (int r = 0; r < rows; r++) QuantDotTests.RandomWeights(q, rng).Invoke(w.AsSpan(r * wb, wb));
        int ab = (int)q.ActivationRowBytes(n), stride = ab + 3;
        var a = new byte[8 * stride];
        var act = QuantTable.Get(q.VecDotType);
        for (int t = 0; t < 8; t++) q.QuantizeActivations(ActivationQuantTests.RandomActivations(rng, n), a.AsSpan(t * stride, ab));
        var many = q.DotMany;
        var tile = q.DotTile;
        int resultStride = rows + 2;
        for (int count = 1; count <= 8; count++)
        {
            var results = new float[count * resultStride];
            Array.Fill(results, float.NaN);
            tile(w, wb, rows, a, stride, count, n, results, resultStride);
            var expected = new float[8];
            for (int r = 0; r < rows; r++)
            {
                many(w.AsSpan(r * wb, wb), a, stride, count, n, expected);
                for (int t = 0; t < count; t++)
                    Assert.True(BitConverter.SingleToInt32Bits(expected[t]) == BitConverter.SingleToInt32Bits(results[t * resultStride + r]),
                        $"{name} blocks {blocks} count {count} row {r} token {t}: {results[t * resultStride + r]:R}, DotMany {expected[t]:R}");
            }
            for (int t = 0; t < count; t++)
                for (int r = rows; r < resultStride && t * resultStride + r < results.Length; r++)
                    Assert.True(float.IsNaN(results[t * resultStride + r]), "a tile wrote outside its rows");
        }
    }

    [Fact]
    public void Bad_shapes_are_refused()
    {
        var q = QuantTable.Get(GgmlType.Q4_0);
        var w = new byte[18 * 2];
        var a = new byte[34 * 4];
        var r = new float[8];
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DotTile(w, 18, 2, a, 34, 0, 32, r, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DotTile(w, 18, 2, a, 34, 9, 32, r, 2));
        Assert.Throws<ArgumentException>(() => q.DotTile(w, 18, 3, a, 34, 1, 32, r, 3));   // 3 rows in a 2-row span
        Assert.Throws<ArgumentException>(() => q.DotTile(w, 18, 2, a, 34, 4, 32, new float[3], 2)); // results too short
    }
}
