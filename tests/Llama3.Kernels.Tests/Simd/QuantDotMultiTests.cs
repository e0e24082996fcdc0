using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The multi-row dot products (<see cref="QuantType.DotMany"/>) give, row for row, exactly the bits of the single-row
/// <see cref="QuantType.Dot"/> of the same instruction-set path, at awkward lengths, every count 1..8 and odd offsets.
/// </summary>
public class QuantDotMultiTests
{
    private delegate float PathDot(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n, KernelPath path);

    private delegate void PathDotMany(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRows, int activationRowBytes,
        int count, int n, Span<float> results, KernelPath path);

    /// <summary>The types with a multi-row kernel, with the single-row kernel it must match.</summary>
    private static readonly Dictionary<GgmlType, (PathDotMany Many, PathDot One)> Kernels = new()
    {
        [GgmlType.Q4_0] = (QuantDot.DotManyQ4_0, QuantDot.DotQ4_0),
        [GgmlType.Q8_0] = (QuantDot.DotManyQ8_0, QuantDot.DotQ8_0),
        [GgmlType.Q4_K] = (QuantDot.DotManyQ4_K, QuantDot.DotQ4_K),
        [GgmlType.Q6_K] = (QuantDot.DotManyQ6_K, QuantDot.DotQ6_K),
    };

    private static readonly int[] BlockCounts = [1, 7, 31, 32, 33, 255, 256, 257];

    public static TheoryData<string, int> TypesAndLengths()
    {
        var data = new TheoryData<string, int>();
        foreach (GgmlType type in Kernels.Keys)
            foreach (int blocks in BlockCounts)
                data.Add(QuantTable.Get(type).Name, blocks);
        return data;
    }

    /// <summary>A weight row at offset 1 and 8 activation rows <paramref name="gap"/> bytes apart beyond their length, at offset 3.</summary>
    private static (byte[] W, byte[] A, int Stride) Rows(QuantType q, int n, int gap, Random rng, bool rawActivations = false)
    {
        byte[] w = new byte[q.RowBytes(n) + 1];
        QuantDotTests.RandomWeights(q, rng).Invoke(w.AsSpan(1));
        int rowBytes = (int)q.ActivationRowBytes(n), stride = rowBytes + gap;
        byte[] a = new byte[3 + 8 * stride];
        for (int i = 0; i < 8; i++)
        {
            Span<byte> row = a.AsSpan(3 + i * stride, rowBytes);
            if (rawActivations)
            {
                // Every byte pattern of Q8_0 quants (-128 included), plausible scales.
                rng.NextBytes(row);
                for (int b = 0; b < n / 32; b++)
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(row[(34 * b)..], (ushort)BitConverter.HalfToUInt16Bits((Half)(0.001 + 0.05 * rng.NextDouble())));
            }
            else
                q.QuantizeActivationsScalar(ActivationQuantTests.RandomActivations(rng, n), row);
        }
        return (w, a, stride);
    }

    private static void AssertSameBits(float expected, float actual, string what) =>
        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
            $"{what}: {actual:R}, one row at a time {expected:R} (must be the same bits)");

    [Theory]
    [MemberData(nameof(TypesAndLengths))]
    public void Every_path_gives_the_bits_of_one_row_at_a_time(string name, int blocks)
    {
        QuantType q = QuantTable.All.Single(t => t.Name == name);
        int n = blocks * q.BlockSize;
        var rng = new Random(blocks * 31 + (int)q.Type);
        foreach (int gap in new[] { 0, 5 })
        foreach (bool raw in q.BlockSize == 32 ? new[] { false, true } : new[] { false })
        {
            (byte[] wBuffer, byte[] aBuffer, int stride) = Rows(q, n, gap, rng, raw);
            ReadOnlySpan<byte> w = wBuffer.AsSpan(1), a = aBuffer.AsSpan(3);
            var results = new float[9];
            foreach (KernelPath path in KernelPaths.Available())
                for (int count = 1; count <= 8; count++)
                {
                    Array.Fill(results, float.NaN);
                    Kernels[q.Type].Many(w, a, stride, count, n, results, path);
                    for (int i = 0; i < count; i++)
                        AssertSameBits(Kernels[q.Type].One(w, a.Slice(i * stride, stride), n, path), results[i],
                            $"{name} {path} at {blocks} blocks, count {count}, row {i}, gap {gap}, raw {raw}");
                    Assert.True(float.IsNaN(results[count]), "wrote past the count");
                }
            // The table's DotMany is the best path's, so it matches the table's Dot.
            for (int count = 1; count <= 8; count++)
            {
                q.DotMany(w, a, stride, count, n, results);
                for (int i = 0; i < count; i++)
                    AssertSameBits(q.Dot(w, a.Slice(i * stride, stride), n), results[i], $"{name} table at {blocks} blocks, count {count}, row {i}");
            }
        }
    }

    [Fact]
    public void Every_table_row_with_a_dot_product_has_a_DotMany_of_the_same_bits()
    {
        foreach (QuantType q in QuantTable.All)
        {
            int n = 7 * q.BlockSize;
            var rng = new Random((int)q.Type);
            (byte[] wBuffer, byte[] aBuffer, int stride) = Rows(q, n, 1, rng);
            ReadOnlySpan<byte> w = wBuffer.AsSpan(1), a = aBuffer.AsSpan(3);
            var results = new float[8];
            for (int count = 1; count <= 8; count++)
            {
                q.DotMany(w, a, stride, count, n, results);
                for (int i = 0; i < count; i++)
                    AssertSameBits(q.Dot(w, a.Slice(i * stride, stride), n), results[i], $"{q.Name} count {count} row {i}");
            }
        }
    }

    [Fact]
    public void Bad_counts_short_results_and_short_rows_throw()
    {
        foreach (QuantType q in QuantTable.All)
        {
            int n = 2 * q.BlockSize;
            int rowBytes = (int)q.ActivationRowBytes(n);
            byte[] w = new byte[q.RowBytes(n)], a = new byte[4 * rowBytes];
            var results = new float[4];
            q.DotMany(w, a, rowBytes, 4, n, results);
            Assert.All(results, r => Assert.Equal(0f, r));
            Assert.Throws<ArgumentOutOfRangeException>(() => q.DotMany(w, a, rowBytes, 0, n, new float[4]));
            Assert.Throws<ArgumentOutOfRangeException>(() => q.DotMany(w, a, rowBytes, 9, n, new float[9]));
            Assert.Equal("results", Assert.Throws<ArgumentException>(() => q.DotMany(w, a, rowBytes, 4, n, new float[3])).ParamName);
            Assert.Equal("weightRow", Assert.Throws<ArgumentException>(() => q.DotMany(w.AsSpan(1), a, rowBytes, 4, n, new float[4])).ParamName);
            Assert.Equal("activationRow", Assert.Throws<ArgumentException>(() => q.DotMany(w, a, rowBytes - 1, 4, n, new float[4])).ParamName);
            Assert.Throws<ArgumentOutOfRangeException>(() => q.DotMany(w, a.AsSpan(1), rowBytes, 4, n, new float[4]));
            if (q.BlockSize > 1)
                Assert.Equal("n", Assert.Throws<ArgumentException>(() => q.DotMany(w, a, rowBytes, 4, n - 1, new float[4])).ParamName);
        }
    }
}
