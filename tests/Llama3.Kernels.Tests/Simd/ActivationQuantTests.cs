using System.Buffers.Binary;
using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>
/// The activation quantizers: hand-built rows whose bytes are worked out from ggml's code (quantize_row_q8_0 of
/// ggml-cpu/arch/x86/quants.c, quantize_row_q8_0_ref / q8_1_ref / q8_K_ref of ggml-quants.c), and every SIMD path
/// against its scalar twin byte for byte.
/// </summary>
public class ActivationQuantTests
{
    private const ushort F16One = 0x3C00;

    /// <summary>Awkward lengths, in blocks (the quantizers work on whole blocks).</summary>
    public static readonly int[] BlockCounts = [1, 7, 31, 32, 33, 255, 256, 257, 4097];

    [Fact]
    public void Q8_0_rounds_ties_to_even_as_ggml_cpu_on_x86_and_away_from_zero_as_the_reference()
    {
        // amax = 127 makes d = 1 and id = 1 in both quantizers, so x * id = x exactly and only the rounding differs.
        float[] x = new float[32];
        float[] values = [127, -127, 63.5f, 2.5f, -2.5f, 0.5f, -0.5f, 1.5f, -1.5f, 126.5f, 0.49999997f, 3];
        values.CopyTo(x, 0);
        sbyte[] even = [127, -127, 64, 2, -2, 0, 0, 2, -2, 126, 0, 3];
        sbyte[] away = [127, -127, 64, 3, -3, 1, -1, 2, -2, 127, 0, 3];

        byte[] cpu = Quantize(ActivationQuantScalar.QuantizeQ8_0, x, ActivationQuant.Q8_0Bytes);
        byte[] reference = Quantize(ActivationQuantScalar.QuantizeQ8_0Reference, x, ActivationQuant.Q8_0Bytes);
        Assert.Equal(F16One, BinaryPrimitives.ReadUInt16LittleEndian(cpu));
        Assert.Equal(F16One, BinaryPrimitives.ReadUInt16LittleEndian(reference));
        Assert.Equal(even, Quants(cpu, 2, values.Length));
        Assert.Equal(away, Quants(reference, 2, values.Length));
        Assert.All(Quants(cpu, 2 + values.Length, 32 - values.Length), q => Assert.Equal(0, q));
    }

    [Fact]
    public void Q8_0_on_x86_multiplies_by_127_over_amax_not_by_1_over_d()
    {
        // amax = 1.005f: 127 / amax = 126.36816f but 1 / (amax / 127) = 126.368164f (one ulp apart). For
        // x = 0.019783465f (bits 3CA210EF) the products are 2.5 exactly and 2.5000002: ggml-cpu's x86 code rounds the
        // first to even (2), the reference rounds the second away (3). (Found by a search over amax in 1.001..3.)
        float[] x = new float[32];
        x[0] = 1.005f;
        x[1] = BitConverter.Int32BitsToSingle(0x3CA210EF);
        Assert.Equal(2.5f, x[1] * (127f / 1.005f));
        Assert.NotEqual(127f / 1.005f, 1f / (1.005f / 127f));
        Assert.Equal(2, (sbyte)Quantize(ActivationQuantScalar.QuantizeQ8_0, x, ActivationQuant.Q8_0Bytes)[3]);
        Assert.Equal(3, (sbyte)Quantize(ActivationQuantScalar.QuantizeQ8_0Reference, x, ActivationQuant.Q8_0Bytes)[3]);
        foreach (var path in KernelPaths.Available())
            Assert.Equal(2, (sbyte)Quantize((v, d) => ActivationQuant.QuantizeQ8_0(v, d, path), x, ActivationQuant.Q8_0Bytes)[3]);
    }

    [Fact]
    public void Q8_0_stores_the_float_d_rounded_to_f16_but_divides_by_the_float_d()
    {
        // amax = 100: d = 100/127 = 0.78740157f, whose nearest half is 0.78759766 (0x3A4D). The quants use 127/100:
        // 100 -> 127, 50 -> 63.5 -> 64 (even), 1 -> 1.27 -> 1, -37 -> -46.99 -> -47.
        float[] x = new float[32];
        float[] values = [100, 50, 1, -37];
        values.CopyTo(x, 0);
        byte[] bytes = Quantize(ActivationQuantScalar.QuantizeQ8_0, x, ActivationQuant.Q8_0Bytes);
        Assert.Equal((ushort)0x3A4D, BinaryPrimitives.ReadUInt16LittleEndian(bytes));
        Assert.Equal(0.78759766f, Float16.ReadHalf(bytes));
        Assert.Equal(new sbyte[] { 127, 64, 1, -47 }, Quants(bytes, 2, 4));
    }

    [Fact]
    public void A_zero_block_has_d_0_and_zero_quants()
    {
        foreach (var (quantize, bytes) in new (QuantizeActivationRow, int)[]
                 {
                     (ActivationQuantScalar.QuantizeQ8_0, 34), (ActivationQuantScalar.QuantizeQ8_0Reference, 34),
                     (ActivationQuantScalar.QuantizeQ8_1, 36), (ActivationQuantScalar.QuantizeQ8_1Reference, 36),
                 })
            Assert.All(Quantize(quantize, new float[32], bytes), b => Assert.Equal(0, b));
        Assert.All(Quantize(ActivationQuantScalar.QuantizeQ8_K, new float[256], ActivationQuant.Q8_KBytes), b => Assert.Equal(0, b));
        foreach (var path in KernelPaths.Available())
        {
            Assert.All(Quantize((v, d) => ActivationQuant.QuantizeQ8_0(v, d, path), new float[32], 34), b => Assert.Equal(0, b));
            Assert.All(Quantize((v, d) => ActivationQuant.QuantizeQ8_K(v, d, path), new float[256], 292), b => Assert.Equal(0, b));
        }
    }

    [Fact]
    public void Q8_1_sum_is_the_float_d_times_the_quant_sum_as_f16()
    {
        // amax = 127: d = 1, the quants are the values; s = f16(1 * (127 + 3 + 2 + (-5))) = 127.
        float[] x = new float[32];
        float[] values = [127, 3, 2.5f, -5];
        values.CopyTo(x, 0);
        byte[] bytes = Quantize(ActivationQuantScalar.QuantizeQ8_1, x, ActivationQuant.Q8_1Bytes);
        Assert.Equal(F16One, BinaryPrimitives.ReadUInt16LittleEndian(bytes));
        Assert.Equal(127f, Float16.ReadHalf(bytes.AsSpan(2)));
        Assert.Equal(new sbyte[] { 127, 3, 2, -5 }, Quants(bytes, 4, 4));
        // amax = 100: d = 0.78740157f (not its f16 0.78759766), sum 127 + 1 = 128: s = f16(100.7874) = 100.8125
        // (halves are 1/16 apart there).
        float[] y = new float[32];
        y[0] = 100;
        y[1] = 1;
        byte[] b2 = Quantize(ActivationQuantScalar.QuantizeQ8_1, y, ActivationQuant.Q8_1Bytes);
        Assert.Equal((float)(Half)(100f / 127f * 128), Float16.ReadHalf(b2.AsSpan(2)));
        Assert.Equal(100.8125f, Float16.ReadHalf(b2.AsSpan(2)));
    }

    [Fact]
    public void Q8_K_scales_by_minus_127_over_the_first_value_of_largest_magnitude()
    {
        // max = -254 (first of largest magnitude; +254 comes later): iscale = -127 / -254 = 0.5, d = 1 / 0.5 = 2.
        // nearest_int rounds half to even: 3 -> 1.5 -> 2, 5 -> 2.5 -> 2, -7 -> -3.5 -> -4, 1 -> 0.5 -> 0.
        float[] x = new float[256];
        float[] values = [3, 5, -7, 1, -254, 254, 100];
        values.CopyTo(x, 0);
        x[16] = 9; // second group of 16: 4.5 -> 4
        x[255] = -1; // last group: -0.5 -> 0
        byte[] bytes = Quantize(ActivationQuantScalar.QuantizeQ8_K, x, ActivationQuant.Q8_KBytes);
        Assert.Equal(2f, BinaryPrimitives.ReadSingleLittleEndian(bytes));
        Assert.Equal(new sbyte[] { 2, 2, -4, 0, -127, 127, 50 }, Quants(bytes, 4, 7));
        Assert.Equal(4, (sbyte)bytes[4 + 16]);
        Assert.Equal(0, (sbyte)bytes[4 + 255]);
        short[] bsums = BlockSums(bytes);
        Assert.Equal(2 + 2 - 4 + 0 - 127 + 127 + 50, bsums[0]);
        Assert.Equal(4, bsums[1]);
        Assert.All(bsums[2..], s => Assert.Equal(0, s));

        // The sign of d follows the first extreme: +10 before -10 gives d = -10/127 and quants -127, 127.
        float[] z = new float[256];
        z[0] = 10;
        z[1] = -10;
        byte[] zb = Quantize(ActivationQuantScalar.QuantizeQ8_K, z, ActivationQuant.Q8_KBytes);
        Assert.Equal(1 / (-127f / 10), BinaryPrimitives.ReadSingleLittleEndian(zb));
        Assert.Equal(new sbyte[] { -127, 127 }, Quants(zb, 4, 2));
        foreach (var path in KernelPaths.Available())
        {
            Assert.Equal(bytes, Quantize((v, d) => ActivationQuant.QuantizeQ8_K(v, d, path), x, ActivationQuant.Q8_KBytes));
            Assert.Equal(zb, Quantize((v, d) => ActivationQuant.QuantizeQ8_K(v, d, path), z, ActivationQuant.Q8_KBytes));
        }
    }

    [Fact]
    public void Q8_K_block_sums_are_the_sums_of_each_16_quants()
    {
        var rng = new Random(5);
        float[] x = RandomActivations(rng, 33 * 256);
        foreach (var path in KernelPaths.Available())
        {
            byte[] bytes = Quantize((v, d) => ActivationQuant.QuantizeQ8_K(v, d, path), x, 33 * ActivationQuant.Q8_KBytes);
            for (int b = 0; b < 33; b++)
            {
                byte[] block = bytes[(b * 292)..((b + 1) * 292)];
                short[] bsums = BlockSums(block);
                for (int k = 0; k < 16; k++)
                    Assert.Equal(Quants(block, 4 + 16 * k, 16).Sum(q => (int)q), bsums[k]);
            }
        }
    }

    public static TheoryData<string, int> Quantizers()
    {
        var data = new TheoryData<string, int>();
        foreach (string name in new[] { "Q8_0", "Q8_1", "Q8_K", "BF16" })
            foreach (int blocks in BlockCounts)
                data.Add(name, blocks);
        return data;
    }

    [Theory]
    [MemberData(nameof(Quantizers))]
    public void Every_SIMD_path_gives_the_scalar_twins_bytes(string name, int blocks)
    {
        int blockSize = name == "Q8_K" ? 256 : name == "BF16" ? 1 : 32;
        int bytesPerBlock = name switch { "Q8_0" => 34, "Q8_1" => 36, "Q8_K" => 292, _ => 2 };
        if (name == "BF16")
            blocks = blocks * 32 + 3; // values, not blocks: exercise every tail length
        var rng = new Random(blocks * 31 + name.Length);
        // An odd offset for both spans, so no load or store is aligned.
        float[] buffer = new float[blocks * blockSize + 3];
        RandomActivations(rng, blocks * blockSize).CopyTo(buffer, 3);
        if (name != "BF16")
            AddTies(buffer.AsSpan(3), blockSize, rng);
        ReadOnlySpan<float> x = buffer.AsSpan(3, blocks * blockSize);
        byte[] expected = new byte[blocks * bytesPerBlock + 1];
        Scalar(name)(x, expected.AsSpan(1));
        foreach (var path in KernelPaths.Available())
        {
            byte[] actual = new byte[blocks * bytesPerBlock + 1];
            Path(name, path)(x, actual.AsSpan(1));
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{name} {path} at {blocks}: first difference at byte {FirstDifference(expected, actual)}");
        }
    }

    [Fact]
    public void F16_conversion_is_round_to_nearest_even_as_the_scalar_twin()
    {
        // Random bit patterns cover subnormals, overflow to infinity, halfway cases and NaN.
        var rng = new Random(11);
        float[] x = new float[4099];
        for (int i = 0; i < x.Length; i++)
            x[i] = BitConverter.Int32BitsToSingle(rng.Next() ^ (rng.Next(2) << 31));
        for (int i = 0; i < 64; i++)
            x[i] = (float)BitConverter.UInt16BitsToHalf((ushort)rng.Next(65536)) + 0.5f * (float)Math.Pow(2, -24); // near ties
        byte[] expected = new byte[2 * x.Length], actual = new byte[2 * x.Length];
        ActivationQuantScalar.ToF16(x, expected);
        ActivationQuant.ToF16(x, actual);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void BF16_rounds_to_nearest_even_and_keeps_NaN_quiet()
    {
        Assert.Equal(0x3F80, ActivationQuantScalar.RoundToBFloat16(1f));
        Assert.Equal(0x3F80, ActivationQuantScalar.RoundToBFloat16(BitConverter.Int32BitsToSingle(0x3F808000))); // tie -> even
        Assert.Equal(0x3F82, ActivationQuantScalar.RoundToBFloat16(BitConverter.Int32BitsToSingle(0x3F818000))); // tie -> even (up)
        Assert.Equal(0x3F81, ActivationQuantScalar.RoundToBFloat16(BitConverter.Int32BitsToSingle(0x3F808001)));
        Assert.Equal(0x7FC1, ActivationQuantScalar.RoundToBFloat16(BitConverter.Int32BitsToSingle(0x7F81FFFF))); // signalling NaN made quiet
        Assert.Equal(0x7F80, ActivationQuantScalar.RoundToBFloat16(float.PositiveInfinity));
        Assert.Equal(0x7F80, ActivationQuantScalar.RoundToBFloat16(float.MaxValue)); // rounds up to infinity
    }

    [Fact]
    public void Rows_that_are_not_whole_blocks_or_do_not_fit_throw()
    {
        var ex = Assert.Throws<ArgumentException>(() => ActivationQuant.QuantizeQ8_0(new float[33], new byte[68]));
        Assert.Equal("x", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => ActivationQuant.QuantizeQ8_K(new float[256], new byte[291]));
        Assert.Equal("destination", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => ActivationQuantScalar.QuantizeQ8_1(new float[64], new byte[71]));
        Assert.Equal("destination", ex.ParamName);
        Assert.Throws<ArgumentException>(() => ActivationQuant.ToF16(new float[4], new byte[7]));
    }

    [Fact]
    public void Quantized_activations_dequantize_to_within_half_a_step_of_the_values()
    {
        // |q d16 - x| <= |q d - x| + |q| |d16 - d| <= d/2 + 127 |d16 - d|, plus the roundings of id, x * id and
        // q * d16 (each one float ulp, at most 127 * 2^-24 d together): slack 1e-4 d.
        var rng = new Random(3);
        float[] x = RandomActivations(rng, 8 * 256);
        foreach (var (type, bytes) in new[] { (GgmlType.Q8_0, 34), (GgmlType.Q8_1, 36), (GgmlType.Q8_K, 292) })
        {
            QuantType row = QuantTable.Get(type);
            byte[] q = new byte[row.RowBytes(x.Length)];
            row.QuantizeActivations(x, q);
            float[] y = new float[x.Length];
            QuantTable.Dequantize(type, q, y);
            for (int b = 0; b < x.Length / row.BlockSize; b++)
            {
                var block = x.AsSpan(b * row.BlockSize, row.BlockSize);
                double amax = 0;
                foreach (float v in block)
                    amax = Math.Max(amax, Math.Abs(v));
                double d = amax / 127, d16 = type == GgmlType.Q8_K ? d : (double)(float)(Half)(float)d;
                double bound = d / 2 + 127 * Math.Abs(d16 - d) + 1e-4 * d;
                for (int j = 0; j < row.BlockSize; j++)
                    Assert.True(Math.Abs(y[b * row.BlockSize + j] - block[j]) <= bound, $"{type} block {b} value {j}");
            }
            Assert.Equal(bytes, row.BytesPerBlock);
        }
    }

    /// <summary>Roughly the activations of a transformer: normal values with a few outliers.</summary>
    internal static float[] RandomActivations(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            x[i] = (float)(rng.Next(50) == 0 ? 20 * g : g);
        }
        return x;
    }

    /// <summary>
    /// Makes every fourth block one whose values are integers and halves with amax 127 (d = 1, id = 1), so that
    /// x * id lands exactly on ties: the rounding rule shows.
    /// </summary>
    private static void AddTies(Span<float> x, int blockSize, Random rng)
    {
        for (int b = 0; b < x.Length / blockSize; b += 4)
        {
            Span<float> block = x.Slice(b * blockSize, blockSize);
            for (int j = 0; j < blockSize; j++)
                block[j] = rng.Next(-253, 254) / 2f;
            block[rng.Next(blockSize)] = rng.Next(2) == 0 ? 127 : -127;
        }
    }

    private static QuantizeActivationRow Scalar(string name) => name switch
    {
        "Q8_0" => ActivationQuantScalar.QuantizeQ8_0,
        "Q8_1" => ActivationQuantScalar.QuantizeQ8_1,
        "Q8_K" => ActivationQuantScalar.QuantizeQ8_K,
        _ => ActivationQuantScalar.ToBF16,
    };

    private static QuantizeActivationRow Path(string name, KernelPath path) => name switch
    {
        "Q8_0" => (x, d) => ActivationQuant.QuantizeQ8_0(x, d, path),
        "Q8_1" => (x, d) => ActivationQuant.QuantizeQ8_1(x, d, path),
        "Q8_K" => (x, d) => ActivationQuant.QuantizeQ8_K(x, d, path),
        _ => (x, d) => ActivationQuant.ToBF16(x, d, path),
    };

    private static byte[] Quantize(QuantizeActivationRow quantize, float[] x, int bytes)
    {
        var result = new byte[bytes];
        quantize(x, result);
        return result;
    }

    private static sbyte[] Quants(byte[] bytes, int offset, int count) =>
        bytes.AsSpan(offset, count).ToArray().Select(b => (sbyte)b).ToArray();

    private static short[] BlockSums(byte[] block) =>
        Enumerable.Range(0, 16).Select(k => BinaryPrimitives.ReadInt16LittleEndian(block.AsSpan(4 + 256 + 2 * k))).ToArray();

    private static int FirstDifference(byte[] a, byte[] b)
    {
        for (int i = 0; i < a.Length; i++)
            if (a[i] != b[i])
                return i;
        return -1;
    }
}
