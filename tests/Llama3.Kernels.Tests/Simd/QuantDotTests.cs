using System.Buffers.Binary;
using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;
using Xunit.Abstractions;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// Every instruction-set path of every dot product against its scalar twin, at awkward lengths and odd offsets;
/// integer parts checked exactly on inputs where all float arithmetic is exact.
/// </summary>
public class QuantDotTests(ITestOutputHelper output)
{
    /// <summary>Awkward lengths, in blocks (values for F32, F16, BF16, whose blocks are single values).</summary>
    public static readonly int[] BlockCounts = [1, 7, 31, 32, 33, 255, 256, 257, 4097];

    /// <summary>
    /// The relative tolerance for the float-lane kernels (32-blocks, F16, BF16, F32) against their scalar twins, as a
    /// fraction of <c>M = sum |w_i a_i|</c> (plus <c>|m| sum |a_i|</c> per block for the types with a min). Both
    /// sides compute the same exact block terms (integer sums, exact products of halves), each rounded a few times,
    /// and add them in different orders; every rounding moves a partial sum by at most 2^-24 of itself and partial sums
    /// are at most M. Measured here, the worst difference is below 1e-7 M at every length (printed); 1e-5 M (about
    /// 170 roundings' worth) leaves room for other machines, yet is 25 times smaller than one wrong block in 4097
    /// (1/4097 M = 2.4e-4 M) and catches any wrong scale or quant outright at the shorter lengths.
    /// </summary>
    private const double Tolerance = 1e-5;

    private delegate float PathDot(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n, KernelPath path);

    /// <summary>The types whose kernel has instruction-set paths, with those paths; the K-quants give exactly the scalar bits.</summary>
    private static readonly Dictionary<GgmlType, PathDot> Kernels = new()
    {
        [GgmlType.Q8_0] = QuantDot.DotQ8_0,
        [GgmlType.Q4_0] = QuantDot.DotQ4_0,
        [GgmlType.Q4_1] = QuantDot.DotQ4_1,
        [GgmlType.Q5_0] = QuantDot.DotQ5_0,
        [GgmlType.Q5_1] = QuantDot.DotQ5_1,
        [GgmlType.Q2_K] = QuantDot.DotQ2_K,
        [GgmlType.Q3_K] = QuantDot.DotQ3_K,
        [GgmlType.Q4_K] = QuantDot.DotQ4_K,
        [GgmlType.Q5_K] = QuantDot.DotQ5_K,
        [GgmlType.Q6_K] = QuantDot.DotQ6_K,
        [GgmlType.F16] = QuantDot.DotF16,
        [GgmlType.BF16] = QuantDot.DotBF16,
        // F32 is TensorPrimitives.Dot on every vector path (the library chooses its own instructions).
        [GgmlType.F32] = QuantDot.DotF32,
    };

    private static bool IsKQuant(GgmlType type) => QuantTable.Get(type).BlockSize == 256;

    public static TheoryData<string, int> TypesAndLengths()
    {
        var data = new TheoryData<string, int>();
        foreach (GgmlType type in Kernels.Keys)
            foreach (int blocks in BlockCounts)
                data.Add(QuantTable.Get(type).Name, blocks);
        return data;
    }

    [Theory]
    [MemberData(nameof(TypesAndLengths))]
    public void Every_path_matches_the_scalar_twin(string name, int blocks)
    {
        QuantType q = Row(name);
        int n = blocks * q.BlockSize;
        var rng = new Random(blocks * 7919 + (int)q.Type);
        // Odd offsets: neither row is aligned to anything.
        byte[] wBuffer = new byte[q.RowBytes(n) + 1];
        RandomWeights(q, rng).Invoke(wBuffer.AsSpan(1));
        ReadOnlySpan<byte> w = wBuffer.AsSpan(1);
        float[] x = ActivationQuantTests.RandomActivations(rng, n);
        byte[] aBuffer = new byte[q.ActivationRowBytes(n) + 3];
        q.QuantizeActivationsScalar(x, aBuffer.AsSpan(3));
        ReadOnlySpan<byte> a = aBuffer.AsSpan(3);

        float expected = q.DotScalar(w, a, n);
        double magnitude = Magnitude(q, w, a, n);
        Assert.True(double.IsFinite(expected) && magnitude > 0);
        double worst = 0;
        foreach (KernelPath path in KernelPaths.Available().Where(p => p != KernelPath.Scalar))
        {
            float actual = Kernels[q.Type](w, a, n, path);
            if (IsKQuant(q.Type))
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
                    $"{name} {path} at {blocks} blocks: {actual:R}, the scalar twin {expected:R} (must be the same bits)");
            else
            {
                double ratio = Math.Abs((double)actual - expected) / magnitude;
                worst = Math.Max(worst, ratio);
                Assert.True(ratio <= Tolerance,
                    $"{name} {path} at {blocks} blocks: {actual:R}, the scalar twin {expected:R}: difference {ratio:E2} M > {Tolerance:E0} M (M = {magnitude:G6})");
            }
        }
        Assert.Equal(Kernels[q.Type](w, a, n, KernelPaths.Best), q.Dot(w, a, n)); // the table's Dot is the best path
        output.WriteLine($"{name} {blocks} blocks: scalar {expected:R}, worst path difference {worst:E2} M, paths {string.Join(" ", KernelPaths.Available())}");
    }

    public static TheoryData<string> ExactCases() => new(Kernels.Keys.Select(t => QuantTable.Get(t).Name));

    [Theory]
    [MemberData(nameof(ExactCases))]
    public void Integer_parts_are_exact(string name)
    {
        // Scales are powers of two and the activation quants small enough that every product and partial sum is an
        // exact float (sum |terms| < 2^22 in units of 2^-2): then the scalar twin and every path must give exactly
        // the double-precision dot product of the dequantized rows, whatever their order of addition.
        QuantType q = Row(name);
        int[] counts = q.BlockSize switch { 1 => BlockCounts, 32 => [1, 7, 31, 32, 33, 255, 256], _ => [1, 2] };
        foreach (int blocks in counts)
        {
            int n = blocks * q.BlockSize;
            var rng = new Random(blocks + 1000 * (int)q.Type);
            int range = q.BlockSize switch { 1 => 8, 32 => Math.Min(q.VecDotType == GgmlType.Q8_1 ? 64 : 127, 256 / blocks), _ => 1 };
            byte[] w = new byte[q.RowBytes(n)];
            PowerOfTwoWeights(q, rng).Invoke(w);
            byte[] a = SmallActivations(QuantTable.Get(q.VecDotType), n, range, rng);
            double exact = DequantizedDot(q, w, a, n);
            Assert.Equal((float)exact, q.DotScalar(w, a, n));
            foreach (KernelPath path in KernelPaths.Available())
                Assert.True((float)exact == Kernels[q.Type](w, a, n, path), $"{name} {path} at {blocks} blocks: {Kernels[q.Type](w, a, n, path):R}, exactly {exact:R}");
        }
    }

    [Fact]
    public void Quants_of_minus_128_are_multiplied_exactly()
    {
        // ggml's AVX2 sign trick (_mm256_sign_epi8) would turn -(-128) into -128; the 16-bit products do not.
        foreach (KernelPath path in KernelPaths.Available())
        {
            // Q8_0: 33 blocks of -128 times -128 with d = 1: 33 * 32 * 16384.
            byte[] w = Blocks(33, 34, b => { BinaryPrimitives.WriteUInt16LittleEndian(b, 0x3C00); b[2..].Fill(0x80); });
            Assert.Equal(33 * 32 * 16384f, QuantDot.DotQ8_0(w, w, 33 * 32, path));
            // Q4_0 nibbles 0 (weight -8) times -128: 3 blocks * 32 * 1024.
            byte[] w4 = Blocks(3, 18, b => BinaryPrimitives.WriteUInt16LittleEndian(b, 0x3C00));
            byte[] a8 = Blocks(3, 34, b => { BinaryPrimitives.WriteUInt16LittleEndian(b, 0x3C00); b[2..].Fill(0x80); });
            Assert.Equal(3 * 32 * 1024f, QuantDot.DotQ4_0(w4, a8, 96, path));
            // Q5_0 nibbles 15 with all fifth bits (weight 15) times -128, and nibbles 0 without (weight -16).
            byte[] w5 = Blocks(3, 22, b => { BinaryPrimitives.WriteUInt16LittleEndian(b, 0x3C00); b[2..6].Fill(0xFF); b[6..].Fill(0xFF); });
            Assert.Equal(3 * 32 * 15 * -128f, QuantDot.DotQ5_0(w5, a8, 96, path));
            byte[] w5z = Blocks(3, 22, b => BinaryPrimitives.WriteUInt16LittleEndian(b, 0x3C00));
            Assert.Equal(3 * 32 * 16 * 128f, QuantDot.DotQ5_0(w5z, a8, 96, path));
        }
    }

    [Fact]
    public void Lengths_that_are_not_whole_blocks_or_rows_that_are_too_short_throw()
    {
        foreach (QuantType q in QuantTable.All)
        {
            int n = 2 * q.BlockSize;
            byte[] w = new byte[q.RowBytes(n)], a = new byte[q.ActivationRowBytes(n)];
            Assert.Equal(0f, q.Dot(w, a, n));
            Assert.Equal(0f, q.DotScalar(w, a, n));
            foreach (DotRow dot in new[] { q.Dot, q.DotScalar })
            {
                if (q.BlockSize > 1)
                    Assert.Equal("n", Assert.Throws<ArgumentException>(() => dot(w, a, n - 1)).ParamName);
                Assert.Equal("weightRow", Assert.Throws<ArgumentException>(() => dot(w.AsSpan(1), a, n)).ParamName);
                Assert.Equal("activationRow", Assert.Throws<ArgumentException>(() => dot(w, a.AsSpan(1), n)).ParamName);
                Assert.Contains(q.Name, Assert.Throws<ArgumentException>(() => dot(w.AsSpan(1), a, n)).Message);
            }
        }
    }

    /// <summary>
    /// Random bytes (every bit pattern of quants, sub-block scales and fifth bits) with the 16-bit float fields set to
    /// plausible scales, so that sums stay finite; F16, BF16 and F32 rows get plausible weights.
    /// </summary>
    internal static Action<Span<byte>> RandomWeights(QuantType q, Random rng) => row =>
    {
        rng.NextBytes(row);
        int blocks = row.Length / q.BytesPerBlock;
        for (int b = 0; b < blocks; b++)
        {
            Span<byte> block = row.Slice(b * q.BytesPerBlock, q.BytesPerBlock);
            foreach (int offset in HalfFields(q.Type))
                BinaryPrimitives.WriteUInt16LittleEndian(block[offset..], HalfBits(Signed(rng) * (0.001 + 0.03 * rng.NextDouble())));
            switch (q.Type)
            {
                case GgmlType.F32:
                    BinaryPrimitives.WriteSingleLittleEndian(block, (float)(0.1 * Normal(rng)));
                    break;
                case GgmlType.F16:
                    BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits(0.1 * Normal(rng)));
                    break;
                case GgmlType.BF16:
                    BinaryPrimitives.WriteUInt16LittleEndian(block, ActivationQuantScalar.RoundToBFloat16((float)(0.1 * Normal(rng))));
                    break;
            }
        }
    };

    /// <summary>
    /// Random quants with every 16-bit float scale (and min) ±2^-1, ±1 or ±2 (K-quants: ±2^-1 or ±1); F16, BF16 and F32
    /// rows small integers.
    /// </summary>
    private static Action<Span<byte>> PowerOfTwoWeights(QuantType q, Random rng) => row =>
    {
        rng.NextBytes(row);
        int blocks = row.Length / q.BytesPerBlock;
        for (int b = 0; b < blocks; b++)
        {
            Span<byte> block = row.Slice(b * q.BytesPerBlock, q.BytesPerBlock);
            foreach (int offset in HalfFields(q.Type))
                BinaryPrimitives.WriteUInt16LittleEndian(block[offset..],
                    HalfBits(Signed(rng) * Math.Pow(2, rng.Next(-1, IsKQuant(q.Type) ? 1 : 2))));
            int small = rng.Next(-8, 9);
            switch (q.Type)
            {
                case GgmlType.F32: BinaryPrimitives.WriteSingleLittleEndian(block, small); break;
                case GgmlType.F16: BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits(small)); break;
                case GgmlType.BF16: BinaryPrimitives.WriteUInt16LittleEndian(block, ActivationQuantScalar.RoundToBFloat16(small)); break;
            }
        }
    };

    /// <summary>
    /// An activation row of <paramref name="type"/> built by hand: scales 2^-1 or 1, quants in
    /// <c>-range .. range</c> (127 includes -128), Q8_1's <c>s</c> and Q8_K's block sums consistent with them.
    /// </summary>
    private static byte[] SmallActivations(QuantType type, int n, int range, Random rng)
    {
        byte[] row = new byte[type.RowBytes(n)];
        int lo = range == 127 ? -128 : -range;
        for (int b = 0; b < n / type.BlockSize; b++)
        {
            Span<byte> block = row.AsSpan(b * type.BytesPerBlock, type.BytesPerBlock);
            float d = rng.Next(2) == 0 ? 0.5f : 1f;
            switch (type.Type)
            {
                case GgmlType.Q8_0 or GgmlType.Q8_1:
                {
                    int start = type.Type == GgmlType.Q8_0 ? 2 : 4, sum = 0;
                    for (int j = 0; j < 32; j++)
                    {
                        int v = rng.Next(lo, range + 1);
                        block[start + j] = (byte)(sbyte)v;
                        sum += v;
                    }
                    BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits(d));
                    if (type.Type == GgmlType.Q8_1)
                        BinaryPrimitives.WriteUInt16LittleEndian(block[2..], HalfBits(d * sum)); // exact: |sum| <= 2048
                    break;
                }
                case GgmlType.Q8_K:
                    BinaryPrimitives.WriteSingleLittleEndian(block, d);
                    for (int k = 0; k < 16; k++)
                    {
                        int sum = 0;
                        for (int l = 0; l < 16; l++)
                        {
                            int v = rng.Next(lo, range + 1);
                            block[4 + 16 * k + l] = (byte)(sbyte)v;
                            sum += v;
                        }
                        BinaryPrimitives.WriteInt16LittleEndian(block[(260 + 2 * k)..], (short)sum);
                    }
                    break;
                case GgmlType.F32: BinaryPrimitives.WriteSingleLittleEndian(block, rng.Next(-range, range + 1)); break;
                case GgmlType.F16: BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits(rng.Next(-range, range + 1))); break;
                case GgmlType.BF16: BinaryPrimitives.WriteUInt16LittleEndian(block, ActivationQuantScalar.RoundToBFloat16(rng.Next(-range, range + 1))); break;
            }
        }
        return row;
    }

    /// <summary>sum_i w_i a_i over the dequantized rows, in double (exact when every value is a short binary fraction).</summary>
    internal static double DequantizedDot(QuantType q, ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n)
    {
        (float[] wv, float[] av) = Dequantized(q, w, a, n);
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += (double)wv[i] * av[i];
        return sum;
    }

    /// <summary>M: sum |w_i a_i|, plus |m| sum |a_i| per block for the types with a min (their terms cancel).</summary>
    internal static double Magnitude(QuantType q, ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n)
    {
        (float[] wv, float[] av) = Dequantized(q, w, a, n);
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += Math.Abs((double)wv[i] * av[i]);
        if (q.Type is GgmlType.Q4_1 or GgmlType.Q5_1)
            for (int b = 0; b < n / 32; b++)
            {
                double m = Math.Abs(Float16.ReadHalf(w[(b * q.BytesPerBlock + 2)..]));
                for (int j = 0; j < 32; j++)
                    sum += m * Math.Abs(av[32 * b + j]);
            }
        return sum;
    }

    private static (float[] Weights, float[] Activations) Dequantized(QuantType q, ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n)
    {
        var wv = new float[n];
        var av = new float[n];
        QuantTable.Dequantize(q.Type, w[..(int)q.RowBytes(n)], wv);
        QuantTable.Dequantize(q.VecDotType, a[..(int)q.ActivationRowBytes(n)], av);
        return (wv, av);
    }

    /// <summary>Offsets of the f16 scale and min fields in a block of <paramref name="type"/> (ggml-common.h).</summary>
    private static int[] HalfFields(GgmlType type) => type switch
    {
        GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 => [0],
        GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
        GgmlType.Q2_K => [80, 82],
        GgmlType.Q3_K => [108],
        GgmlType.Q6_K => [208],
        _ => [],
    };

    private static QuantType Row(string name) => QuantTable.All.Single(q => q.Name == name);

    private static byte[] Blocks(int count, int bytes, SpanAction fill)
    {
        var row = new byte[count * bytes];
        for (int b = 0; b < count; b++)
            fill(row.AsSpan(b * bytes, bytes));
        return row;
    }

    private delegate void SpanAction(Span<byte> block);

    private static ushort HalfBits(double value) => BitConverter.HalfToUInt16Bits((Half)value);

    private static int Signed(Random rng) => rng.Next(2) == 0 ? 1 : -1;

    private static double Normal(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}
