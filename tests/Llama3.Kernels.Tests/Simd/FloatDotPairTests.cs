using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The F16 pair kernel (<see cref="FloatDot.DotManyF16Pair"/>) gives, for each of its two weight rows and every
/// activation row, exactly the bits of <see cref="FloatDot.DotManyF16"/> on that weight row, on every path, at awkward
/// lengths, with halves of every kind (subnormals, infinities, NaN).
/// </summary>
public class FloatDotPairTests
{
    public static TheoryData<int> Lengths => new() { 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 255, 256, 257, 2048, 4097 };

    private static byte[] Halves(Random rng, int n)
    {
        var b = new byte[2 * n];
        for (int i = 0; i < n; i++)
        {
            ushort h = rng.Next(50) switch
            {
                0 => (ushort)rng.Next(1, 0x400),          // subnormal
                1 => 0x7C00,                              // infinity
                2 => (ushort)(0x7C00 | rng.Next(1, 0x400)), // NaN
                _ => BitConverter.HalfToUInt16Bits((Half)(rng.NextSingle() * 4 - 2)),
            };
            BitConverter.TryWriteBytes(b.AsSpan(2 * i), h);
        }
        return b;
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Each_row_of_the_pair_has_the_bits_of_DotManyF16(int n)
    {
        var rng = new Random(n);
        byte[] wa = Halves(rng, n), wb = Halves(rng, n);
        var x = Enumerable.Range(0, FloatDot.PairRows * n).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        foreach (KernelPath path in KernelPaths.Available())
            for (int count = 1; count <= FloatDot.PairRows; count++)
            {
                var pair = new float[2 * FloatDot.PairRows];
                FloatDot.DotManyF16PairOn(wa, wb, x, n, count, pair, path);
                var one = new float[FloatDot.MaxRows];
                foreach (var (w, offset) in new[] { (wa, 0), (wb, FloatDot.PairRows) })
                {
                    FloatDot.DotMany(w, x, n, count, one, bfloat: false, path);
                    for (int r = 0; r < count; r++)
                        Assert.True(BitConverter.SingleToInt32Bits(one[r]) == BitConverter.SingleToInt32Bits(pair[offset + r]),
                            $"{path} n {n} count {count} row {offset / FloatDot.PairRows} token {r}: {pair[offset + r]:R}, DotManyF16 {one[r]:R}");
                }
            }
    }

    [Fact]
    public void Bad_counts_and_shapes_are_refused()
    {
        var w = new byte[64];
        var x = new float[4 * 32];
        Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.DotManyF16Pair(w, w, x, 32, 0, new float[8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.DotManyF16Pair(w, w, x, 32, 5, new float[8]));
        Assert.Throws<ArgumentException>(() => FloatDot.DotManyF16Pair(w, w, x, 32, 4, new float[4]));
        Assert.ThrowsAny<ArgumentException>(() => FloatDot.DotManyF16Pair(w, new byte[62], x, 32, 4, new float[8]));
    }
}
