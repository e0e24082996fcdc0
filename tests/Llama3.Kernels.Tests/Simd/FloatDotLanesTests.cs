using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The F16 lanes kernels (AVX-512): <see cref="FloatDot.WidenTransposeF16"/> puts every row's widened weight in its
/// lane, exactly as <see cref="Float16.HalfToSingle"/>, with halves of every kind (subnormals, infinities, quiet NaNs); <see cref="FloatDot.DotLanes"/> gives
/// for every (row, token) exactly the bits of one FMA per column, first to last, at awkward lengths and counts, with
/// one block of 16 rows or two.
/// </summary>
public class FloatDotLanesTests
{
    public static TheoryData<int, int> Shapes => new() { { 1, 1 }, { 15, 3 }, { 16, 16 }, { 17, 5 }, { 33, 16 }, { 100, 9 }, { 2048, 16 } };

    // The kernels are the AVX-512 path's (the engine calls them nowhere else); on other paths they must refuse.
    private static unsafe bool RefusedOffAvx512()
    {
        if (KernelPaths.Best == KernelPath.Avx512) return false;
        Assert.Throws<PlatformNotSupportedException>(() => FloatDot.DotLanes(new float[16], 1, new float[1], 1, 1, new float[1], 1));
        var w = new byte[2];
        fixed (byte* p = w)
        {
            byte* q = p;
            Assert.Throws<PlatformNotSupportedException>(() => FloatDot.WidenTransposeF16(q, 2, 1, 1, new float[16]));
        }
        return true;
    }

    private static byte[] Halves(Random rng, int n)
    {
        var b = new byte[2 * n];
        for (int i = 0; i < n; i++)
        {
            ushort h = rng.Next(40) switch
            {
                0 => (ushort)rng.Next(1, 0x400),
                1 => 0xFC00,
                2 => (ushort)(0x7E00 | rng.Next(0, 0x200)), // quiet NaN (the vector widening keeps a signaling NaN's bit, .NET's quiets it)
                _ => BitConverter.HalfToUInt16Bits((Half)(rng.NextSingle() * 4 - 2)),
            };
            BitConverter.TryWriteBytes(b.AsSpan(2 * i), h);
        }
        return b;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public unsafe void Widened_rows_land_in_their_lanes_exactly(int cols, int rows)
    {
        if (RefusedOffAvx512()) return;
        var rng = new Random(cols * 17 + rows);
        int rowBytes = 2 * cols + 6;
        var w = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++) Halves(rng, cols).CopyTo(w.AsSpan(r * rowBytes));
        var lanes = new float[FloatDot.LaneRows * cols];
        fixed (byte* p = w) FloatDot.WidenTransposeF16(p, rowBytes, rows, cols, lanes);
        for (int k = 0; k < cols; k++)
            for (int i = 0; i < FloatDot.LaneRows; i++)
            {
                int r = Math.Min(i, rows - 1);
                float expected = Float16.HalfToSingle(BitConverter.ToUInt16(w, r * rowBytes + 2 * k));
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(lanes[k * FloatDot.LaneRows + i]),
                    $"column {k} lane {i}: {BitConverter.SingleToInt32Bits(lanes[k * FloatDot.LaneRows + i]):X8}, expected {BitConverter.SingleToInt32Bits(expected):X8} half {BitConverter.ToUInt16(w, r * rowBytes + 2 * k):X4}");
            }
    }

    public static TheoryData<int, int> DotShapes => new() { { 1, 1 }, { 15, 3 }, { 16, 16 }, { 17, 17 }, { 33, 32 }, { 100, 9 }, { 2048, 16 }, { 2048, 31 } };

    // Rows past 16 are a second lane block, 16 * cols floats on.
    private static int Lane(int row, int k, int cols) =>
        row < FloatDot.LaneRows ? k * FloatDot.LaneRows + row : FloatDot.LaneRows * cols + k * FloatDot.LaneRows + row - FloatDot.LaneRows;

    [Theory]
    [MemberData(nameof(DotShapes))]
    public void Each_row_and_token_is_one_FMA_per_column(int cols, int rows)
    {
        if (RefusedOffAvx512()) return;
        var rng = new Random(cols * 29 + rows);
        var lanes = Enumerable.Range(0, 2 * FloatDot.LaneRows * cols).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        foreach (int count in new[] { 1, 3, 8, 9, 17 })
        {
            var x = Enumerable.Range(0, count * cols).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
            int stride = rows + 3;
            var y = new float[count * stride];
            Array.Fill(y, float.NaN);
            FloatDot.DotLanes(lanes, rows, x, cols, count, y, stride);
            for (int t = 0; t < count; t++)
            {
                for (int i = 0; i < rows; i++)
                {
                    float sum = 0;
                    for (int k = 0; k < cols; k++) sum = MathF.FusedMultiplyAdd(lanes[Lane(i, k, cols)], x[t * cols + k], sum);
                    Assert.True(BitConverter.SingleToInt32Bits(sum) == BitConverter.SingleToInt32Bits(y[t * stride + i]),
                        $"count {count} token {t} row {i}: {y[t * stride + i]:R}, one FMA per column {sum:R}");
                }
                for (int i = rows; i < stride; i++) Assert.True(float.IsNaN(y[t * stride + i]), "wrote past the rows");
            }
        }
    }

    [Fact]
    public unsafe void Bad_shapes_are_refused()
    {
        if (RefusedOffAvx512()) return;
        var w = new byte[64];
        fixed (byte* p = w)
        {
            byte* q = p;
            Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.WidenTransposeF16(q, 64, 0, 32, new float[16 * 32]));
            Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.WidenTransposeF16(q, 64, 17, 32, new float[16 * 32]));
            Assert.Throws<ArgumentException>(() => FloatDot.WidenTransposeF16(q, 62, 1, 32, new float[16 * 32]));
            Assert.Throws<ArgumentException>(() => FloatDot.WidenTransposeF16(q, 64, 1, 32, new float[16 * 31]));
        }
        Assert.Throws<ArgumentException>(() => FloatDot.DotLanes(new float[16 * 31], 16, new float[32], 32, 1, new float[16], 16));
        Assert.Throws<ArgumentException>(() => FloatDot.DotLanes(new float[16 * 32], 17, new float[32], 32, 1, new float[17], 17)); // two blocks needed
        Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.DotLanes(new float[64 * 32], 33, new float[32], 32, 1, new float[33], 33));
        Assert.Throws<ArgumentException>(() => FloatDot.DotLanes(new float[16 * 32], 16, new float[31], 32, 1, new float[16], 16));
        Assert.Throws<ArgumentException>(() => FloatDot.DotLanes(new float[16 * 32], 16, new float[64], 32, 2, new float[31], 16));
    }
}
