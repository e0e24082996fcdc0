using System.Buffers.Binary;
using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// F16 decode rows with the activations scaled by 2^112 (<see cref="FloatDot.DotRowsF16(ReadOnlySpan{byte}, long, int, ReadOnlySpan{float}, Span{float}, Span{float})"/>):
/// on every path, each row has the bits of <see cref="FloatDot.DotF16"/>'s kernel on that path (whose distance from the
/// scalar twin <see cref="FloatDotTests"/> bounds), over every finite half, subnormal activations and the largest that
/// scale; rows holding infinities or NaN and activations too large to scale fall back to it.
/// </summary>
public class FloatDotF16ScaledTests
{
    private static readonly int[] LengthList = [1, 7, 8, 15, 16, 17, 31, 32, 33, 255, 256, 257, 2048, 4097];

    public static TheoryData<int> Lengths()
    {
        var data = new TheoryData<int>();
        foreach (int n in LengthList) data.Add(n);
        return data;
    }

    /// <summary>
    /// <paramref name="rows"/> rows of random finite halves (every exponent but 31: subnormals, zeros, up to 65504),
    /// <paramref name="rowBytes"/> apart, from byte offset 1.
    /// </summary>
    private static byte[] Rows(int n, int rows, int rowBytes, Random rng)
    {
        byte[] w = new byte[1 + rows * rowBytes];
        rng.NextBytes(w);
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < n; i++)
            {
                ushort bits;
                do bits = (ushort)rng.Next(65536); while ((bits & 0x7C00) == 0x7C00);
                BinaryPrimitives.WriteUInt16LittleEndian(w.AsSpan(1 + r * rowBytes + 2 * i), bits);
            }
        return w;
    }

    /// <summary>Activations of every scale that the 2^112 factor keeps exact: subnormal floats up to just below 2^16.</summary>
    private static float[] Activations(int n, Random rng)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
            x[i] = (rng.Next(8)) switch
            {
                0 => BitConverter.Int32BitsToSingle(rng.Next(1, 0x007FFFFF)) * (rng.Next(2) * 2 - 1), // subnormal
                1 => 65535.996f * (rng.Next(2) * 2 - 1), // the largest float below 2^16
                2 => 0,
                _ => (rng.NextSingle() - 0.5f) * MathF.Pow(2, rng.Next(-30, 16)),
            };
        return x;
    }

    private static void AssertRowsAsDot(ReadOnlySpan<byte> w, int rowBytes, int rows, ReadOnlySpan<float> x, KernelPath path, string what)
    {
        int n = x.Length;
        var y = new float[rows + 1];
        Array.Fill(y, 12345f);
        var scratch = new float[n];
        FloatDot.DotRowsF16(w, rowBytes, rows, x, scratch, y.AsSpan(0, rows), path);
        for (int r = 0; r < rows; r++)
        {
            var row = w.Slice(r * rowBytes, 2 * n);
            float expected = path == KernelPath.Scalar ? FloatDotScalar.DotF16(row, x) : FloatDot.Dot(row, x, bfloat: false, path);
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[r]),
                $"{path} {what} n={n} row {r}: {y[r]:R}, DotF16 {expected:R} (must be the same bits)");
        }
        Assert.Equal(12345f, y[rows]);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Every_row_has_the_bits_of_DotF16_on_its_path(int n)
    {
        var rng = new Random(n);
        int rows = 5, rowBytes = 2 * n + 6;
        byte[] w = Rows(n, rows, rowBytes, rng);
        float[] x = Activations(n, rng);
        foreach (KernelPath path in KernelPaths.Available())
            AssertRowsAsDot(w.AsSpan(1), rowBytes, rows, x, path, "finite halves");
    }

    [Theory]
    [InlineData((ushort)0x7C00)]
    [InlineData((ushort)0xFC00)]
    [InlineData((ushort)0x7E00)]
    [InlineData((ushort)0x7C01)]
    [InlineData((ushort)0xFFFF)]
    public void Rows_with_an_infinity_or_NaN_give_DotF16s_bits(ushort special)
    {
        foreach (int n in new[] { 16, 33, 64, 300 })
            for (int at = 0; at < n; at += Math.Max(1, n / 7))
            {
                var rng = new Random(n * 1000 + at);
                int rows = 3, rowBytes = 2 * n;
                byte[] w = Rows(n, rows, rowBytes, rng);
                BinaryPrimitives.WriteUInt16LittleEndian(w.AsSpan(1 + rowBytes + 2 * at), special); // row 1 only
                float[] x = Activations(n, rng);
                foreach (KernelPath path in KernelPaths.Available())
                    AssertRowsAsDot(w.AsSpan(1), rowBytes, rows, x, path, $"0x{special:X4} at {at}");
            }
    }

    [Theory]
    [InlineData(65536f)]
    [InlineData(-1e30f)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NaN)]
    public void Activations_too_large_to_scale_give_DotF16s_bits(float large)
    {
        foreach (int n in new[] { 1, 40, 257 })
        {
            var rng = new Random(n);
            int rows = 4, rowBytes = 2 * n;
            byte[] w = Rows(n, rows, rowBytes, rng);
            float[] x = Activations(n, rng);
            x[n / 2] = large;
            foreach (KernelPath path in KernelPaths.Available())
                AssertRowsAsDot(w.AsSpan(1), rowBytes, rows, x, path, $"x = {large}");
        }
    }

    [Fact]
    public void The_public_kernel_takes_the_best_path_and_no_rows_write_nothing()
    {
        var rng = new Random(3);
        int n = 100, rows = 3;
        byte[] w = Rows(n, rows, 2 * n, rng);
        float[] x = Activations(n, rng);
        var y = new float[rows];
        FloatDot.DotRowsF16(w.AsSpan(1), 2 * n, rows, x, new float[n], y);
        for (int r = 0; r < rows; r++)
            Assert.Equal(BitConverter.SingleToInt32Bits(FloatDot.DotF16(w.AsSpan(1 + 2 * n * r, 2 * n), x)), BitConverter.SingleToInt32Bits(y[r]));
        var none = new float[1] { 7f };
        FloatDot.DotRowsF16([], 2 * n, 0, x, new float[n], none.AsSpan(0, 0));
        Assert.Equal(7f, none[0]);
    }

    [Fact]
    public void Bad_arguments_throw()
    {
        byte[] w = new byte[40];
        float[] x = new float[10], scratch = new float[10], y = new float[4];
        Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.DotRowsF16(w, 20, -1, x, scratch, y));
        Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.DotRowsF16(w, 19, 2, x, scratch, y));
        Assert.Throws<ArgumentException>(() => FloatDot.DotRowsF16(w, 20, 3, x, scratch, y));
        Assert.Throws<ArgumentException>(() => FloatDot.DotRowsF16(w, 20, 2, x, scratch, y.AsSpan(0, 1)));
        Assert.Throws<ArgumentException>(() => FloatDot.DotRowsF16(w, 20, 2, x, scratch.AsSpan(0, 9), y));
    }
}
