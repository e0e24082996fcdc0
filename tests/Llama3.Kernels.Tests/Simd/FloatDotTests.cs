using System.Buffers.Binary;
using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The fused F16/BF16 × float32 dot products (<see cref="FloatDot"/>): every instruction-set path against the scalar
/// twins (<see cref="FloatDotScalar"/>) within float summation-order error, and the multi-row variants bit for bit
/// against the single-row one of the same path, at awkward lengths and odd offsets.
/// </summary>
public class FloatDotTests
{
    private static readonly int[] LengthList = [1, 7, 31, 32, 33, 255, 256, 257, 4097];

    public static TheoryData<bool, int> TypesAndLengths()
    {
        var data = new TheoryData<bool, int>();
        foreach (bool bfloat in new[] { false, true })
            foreach (int n in LengthList)
                data.Add(bfloat, n);
        return data;
    }

    /// <summary>
    /// Random 16-bit weights at byte offset 1, every pattern but the top exponent bit (no infinities or NaNs; F16
    /// subnormals and signed zeros included), magnitudes below 2.
    /// </summary>
    private static byte[] Weights(int n, Random rng)
    {
        byte[] w = new byte[2 * n + 1];
        for (int i = 0; i < n; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(w.AsSpan(1 + 2 * i), (ushort)(rng.Next(65536) & 0xBFFF));
        return w;
    }

    /// <summary><paramref name="count"/> activation rows of <paramref name="n"/> floats at float offset 3.</summary>
    private static float[] Activations(int n, int count, Random rng)
    {
        var x = new float[3 + count * n];
        for (int i = 3; i < x.Length; i++) x[i] = (rng.NextSingle() - 0.5f) * 4;
        return x;
    }

    private static float Widened(ReadOnlySpan<byte> w, int i, bool bfloat)
    {
        ushort bits = BinaryPrimitives.ReadUInt16LittleEndian(w[(2 * i)..]);
        return bfloat ? Float16.BFloat16ToSingle(bits) : Float16.HalfToSingle(bits);
    }

    private static void AssertSameBits(float expected, float actual, string what) =>
        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
            $"{what}: {actual:R}, one row at a time {expected:R} (must be the same bits)");

    [Theory]
    [MemberData(nameof(TypesAndLengths))]
    public void Every_path_matches_the_scalar_twin_up_to_summation_order(bool bfloat, int n)
    {
        var rng = new Random(n * 7 + (bfloat ? 1 : 0));
        ReadOnlySpan<byte> w = Weights(n, rng).AsSpan(1);
        ReadOnlySpan<float> x = Activations(n, 1, rng).AsSpan(3);
        double magnitude = 0;
        for (int i = 0; i < n; i++) magnitude += Math.Abs((double)Widened(w, i, bfloat) * x[i]);
        float expected = bfloat ? FloatDotScalar.DotBF16(w, x) : FloatDotScalar.DotF16(w, x);
        foreach (KernelPath path in KernelPaths.Available())
        {
            float actual = FloatDot.Dot(w, x, bfloat, path);
            Assert.True(Math.Abs(actual - expected) <= 1e-5 * magnitude + 1e-30,
                $"{path} {(bfloat ? "BF16" : "F16")} n={n}: {actual:R}, scalar {expected:R}, Σ|w·x| = {magnitude}");
        }
    }

    [Theory]
    [MemberData(nameof(TypesAndLengths))]
    public void The_scalar_twin_is_the_float_loop_over_FloatRows(bool bfloat, int n)
    {
        var rng = new Random(n * 13 + (bfloat ? 1 : 0));
        ReadOnlySpan<byte> w = Weights(n, rng).AsSpan(1);
        ReadOnlySpan<float> x = Activations(n, 1, rng).AsSpan(3);
        var row = new float[n];
        if (bfloat) FloatRows.DequantizeBF16(w, row);
        else FloatRows.DequantizeF16(w, row);
        float sum = 0;
        for (int i = 0; i < n; i++) sum += row[i] * x[i];
        AssertSameBits(sum, bfloat ? FloatDotScalar.DotBF16(w, x) : FloatDotScalar.DotF16(w, x), "scalar twin");
    }

    [Theory]
    [MemberData(nameof(TypesAndLengths))]
    public void Every_path_gives_the_bits_of_one_row_at_a_time(bool bfloat, int n)
    {
        var rng = new Random(n * 31 + (bfloat ? 1 : 0));
        ReadOnlySpan<byte> w = Weights(n, rng).AsSpan(1);
        ReadOnlySpan<float> x = Activations(n, FloatDot.MaxRows, rng).AsSpan(3);
        var results = new float[FloatDot.MaxRows + 1];
        foreach (KernelPath path in KernelPaths.Available())
            for (int count = 1; count <= FloatDot.MaxRows; count++)
            {
                Array.Fill(results, float.NaN);
                FloatDot.DotMany(w, x, n, count, results, bfloat, path);
                for (int r = 0; r < count; r++)
                    AssertSameBits(FloatDot.Dot(w, x.Slice(r * n, n), bfloat, path), results[r], $"{path} n={n} count={count} row {r}");
                Assert.True(float.IsNaN(results[count]), $"{path} count={count} wrote past its results");
            }
    }

    [Theory]
    [MemberData(nameof(TypesAndLengths))]
    public void The_public_kernels_take_the_best_path(bool bfloat, int n)
    {
        var rng = new Random(n * 5 + (bfloat ? 1 : 0));
        ReadOnlySpan<byte> w = Weights(n, rng).AsSpan(1);
        ReadOnlySpan<float> x = Activations(n, 3, rng).AsSpan(3);
        float one = bfloat ? FloatDot.DotBF16(w, x[..n]) : FloatDot.DotF16(w, x[..n]);
        AssertSameBits(FloatDot.Dot(w, x[..n], bfloat, KernelPaths.Best), one, "single row");
        var results = new float[3];
        if (bfloat) FloatDot.DotManyBF16(w, x, n, 3, results);
        else FloatDot.DotManyF16(w, x, n, 3, results);
        for (int r = 0; r < 3; r++)
            AssertSameBits(FloatDot.Dot(w, x.Slice(r * n, n), bfloat, KernelPaths.Best), results[r], $"row {r}");
    }

    [Fact]
    public void Special_values_widen_exactly()
    {
        // Infinities, NaN, subnormals, signed zeros and the extremes, each alone against x = 1 (one product, no sum).
        ushort[] f16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x3C00, 0xC000];
        ushort[] bf16 = [0x0000, 0x8000, 0x0001, 0x807F, 0x0080, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80, 0x3F80, 0xC000];
        foreach (KernelPath path in KernelPaths.Available())
            foreach (bool bfloat in new[] { false, true })
                foreach (ushort bits in bfloat ? bf16 : f16)
                {
                    // At lane 0 of a vector step (17 weights: one 16-wide step on AVX-512, the rest vector steps or tail).
                    for (int at = 0; at < 17; at++)
                    {
                        byte[] w = new byte[34];
                        BinaryPrimitives.WriteUInt16LittleEndian(w.AsSpan(2 * at), bits);
                        var x = new float[17];
                        x[at] = 1;
                        float expected = bfloat ? Float16.BFloat16ToSingle(bits) : Float16.HalfToSingle(bits);
                        float actual = FloatDot.Dot(w, x, bfloat, path);
                        AssertSameBits(expected + 0f, actual, $"{path} {(bfloat ? "BF16" : "F16")} 0x{bits:X4} at {at}");
                    }
                }
        var nan = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(nan, 0x7E00);
        foreach (KernelPath path in KernelPaths.Available())
            Assert.True(float.IsNaN(FloatDot.Dot(nan, [1f], bfloat: false, path)), $"{path} F16 NaN");
    }

    [Fact]
    public void Empty_rows_give_zero()
    {
        var results = new float[2];
        Assert.Equal(0f, FloatDot.DotF16([], []));
        Assert.Equal(0f, FloatDot.DotBF16([], []));
        FloatDot.DotManyF16([], [], 0, 2, results);
        Assert.Equal([0f, 0f], results);
    }

    [Fact]
    public void Bad_arguments_throw()
    {
        byte[] w = new byte[8];
        float[] x = new float[16];
        float[] results = new float[8];
        Assert.Throws<ArgumentException>(() => FloatDot.DotF16(w, x.AsSpan(0, 3)));
        Assert.Throws<ArgumentException>(() => FloatDotScalar.DotBF16(w, x.AsSpan(0, 5)));
        Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.DotManyF16(w, x, 4, 0, results));
        Assert.Throws<ArgumentOutOfRangeException>(() => FloatDot.DotManyBF16(w, x, 4, 9, results));
        Assert.Throws<ArgumentException>(() => FloatDot.DotManyF16(w, x, 5, 2, results));
        Assert.Throws<ArgumentException>(() => FloatDot.DotManyF16(w, x, 4, 5, results));
        Assert.Throws<ArgumentException>(() => FloatDot.DotManyBF16(w, x, 4, 2, results.AsSpan(0, 1)));
    }
}
