using System.Buffers.Binary;
using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Tests.Quant;

/// <summary>
/// Blocks built by hand with known values. The 32-blocks are written out byte by byte; the K-quants are packed by
/// loops that follow ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c), the opposite direction of
/// the code under test. Every expected value is a small integer times a power of two, so equality is exact.
/// </summary>
public class HandBuiltBlockTests
{
    private const ushort F16One = 0x3C00, F16Half = 0x3800, F16Quarter = 0x3400, F16Two = 0x4000, F16MinusOne = 0xBC00;

    [Fact]
    public void Q4_0_low_nibbles_are_elements_0_to_15_high_nibbles_16_to_31()
    {
        // d = 1.0; byte j = (15 - j) << 4 | j: element j is j - 8, element 16 + j is 7 - j.
        var block = new byte[18];
        WriteHalf(block, 0, F16One);
        for (int j = 0; j < 16; j++)
            block[2 + j] = (byte)(j | (15 - j) << 4);
        var expected = new float[32];
        for (int j = 0; j < 16; j++)
        {
            expected[j] = j - 8;
            expected[16 + j] = 7 - j;
        }
        Assert.Equal(expected, Dequantize(GgmlType.Q4_0, block));
    }

    [Fact]
    public void Q4_0_uses_each_blocks_own_scale()
    {
        var blocks = new byte[36];
        WriteHalf(blocks, 0, F16One);
        WriteHalf(blocks, 18, F16Half);
        Array.Fill(blocks, (byte)0xF0, 2, 16);  // element j: 0 - 8, element 16 + j: 15 - 8
        Array.Fill(blocks, (byte)0xF0, 20, 16);
        float[] y = Dequantize(GgmlType.Q4_0, blocks);
        Assert.Equal([-8f, 7f, -4f, 3.5f], [y[0], y[16], y[32], y[48]]);
    }

    [Fact]
    public void Q4_1_is_nibble_times_d_plus_m()
    {
        var block = new byte[20];
        WriteHalf(block, 0, F16Half);
        WriteHalf(block, 2, F16MinusOne);
        for (int j = 0; j < 16; j++)
            block[4 + j] = (byte)(j | (15 - j) << 4);
        var expected = new float[32];
        for (int j = 0; j < 16; j++)
        {
            expected[j] = 0.5f * j - 1;
            expected[16 + j] = 0.5f * (15 - j) - 1;
        }
        Assert.Equal(expected, Dequantize(GgmlType.Q4_1, block));
    }

    [Fact]
    public void Q5_0_fifth_bit_k_of_qh_belongs_to_element_k()
    {
        // d = 2.0; nibbles as Q4_0; qh = 0xA5A5_5A5A (bits set at mixed places in both halves).
        const uint qh = 0xA5A5_5A5A;
        var block = new byte[22];
        WriteHalf(block, 0, F16Two);
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(2), qh);
        for (int j = 0; j < 16; j++)
            block[6 + j] = (byte)(j | (15 - j) << 4);
        var expected = new float[32];
        for (int k = 0; k < 32; k++)
        {
            int nibble = k < 16 ? k : 15 - (k - 16);
            int q = nibble | (int)((qh >> k) & 1) << 4;
            expected[k] = 2f * (q - 16);
        }
        Assert.Equal(expected, Dequantize(GgmlType.Q5_0, block));
    }

    [Fact]
    public void Q5_1_is_five_bits_times_d_plus_m()
    {
        // d = 0.25, m = 0.5, all low nibbles 3, high nibbles 12; fifth bits set for elements 0..15 only.
        var block = new byte[24];
        WriteHalf(block, 0, F16Quarter);
        WriteHalf(block, 2, F16Half);
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(4), 0x0000_FFFF);
        Array.Fill(block, (byte)0xC3, 8, 16);
        var expected = new float[32];
        for (int k = 0; k < 16; k++)
        {
            expected[k] = 0.25f * (16 + 3) + 0.5f;
            expected[16 + k] = 0.25f * 12 + 0.5f;
        }
        Assert.Equal(expected, Dequantize(GgmlType.Q5_1, block));
    }

    [Fact]
    public void Q8_0_is_signed_byte_times_d()
    {
        var block = new byte[34];
        WriteHalf(block, 0, F16Half);
        for (int k = 0; k < 32; k++)
            block[2 + k] = (byte)(sbyte)(8 * k - 128);
        float[] expected = Enumerable.Range(0, 32).Select(k => 0.5f * (8 * k - 128)).ToArray();
        Assert.Equal(expected, Dequantize(GgmlType.Q8_0, block));
    }

    [Fact]
    public void Q8_1_is_signed_byte_times_d_and_ignores_the_sum()
    {
        // s (the stored d * sum) is a NaN here: it must play no part in the values.
        var block = new byte[36];
        WriteHalf(block, 0, F16Quarter);
        WriteHalf(block, 2, 0x7E00);
        for (int k = 0; k < 32; k++)
            block[4 + k] = (byte)(sbyte)(127 - 8 * k);
        float[] expected = Enumerable.Range(0, 32).Select(k => 0.25f * (127 - 8 * k)).ToArray();
        Assert.Equal(expected, Dequantize(GgmlType.Q8_1, block));
    }

    [Fact]
    public void Q8_K_is_signed_byte_times_the_f32_scale()
    {
        var block = new byte[292];
        BinaryPrimitives.WriteSingleLittleEndian(block, 0.125f);
        for (int k = 0; k < 256; k++)
            block[4 + k] = (byte)(k - 128);
        block.AsSpan(260).Fill(0x7F); // bsums: not part of the values
        float[] expected = Enumerable.Range(0, 256).Select(k => 0.125f * (sbyte)(byte)(k - 128)).ToArray();
        Assert.Equal(expected, Dequantize(GgmlType.Q8_K, block));
    }

    [Fact]
    public void Q2_K_matches_a_block_packed_as_quantize_row_q2_K_ref()
    {
        // Sub-block g of 16: 4-bit scale g, 4-bit min 15 - g; d = 1, dmin = 0.25; quants L[e] in 0..3.
        var L = new int[256];
        for (int e = 0; e < 256; e++)
            L[e] = (e + e / 16 + e / 64) % 4;
        var block = new byte[84];
        for (int g = 0; g < 16; g++)
            block[g] = (byte)(g | (15 - g) << 4);
        PackTwoBits(L, block.AsSpan(16, 64));
        WriteHalf(block, 80, F16One);
        WriteHalf(block, 82, F16Quarter);
        float[] expected = Enumerable.Range(0, 256).Select(e => 1f * (e / 16) * L[e] - 0.25f * (15 - e / 16)).ToArray();
        Assert.Equal(expected, Dequantize(GgmlType.Q2_K, block));
    }

    [Fact]
    public void Q3_K_matches_a_block_packed_as_quantize_row_q3_K_ref()
    {
        // Signed 6-bit scales sc[g] in -32..31 (all 6 bits exercised), d = 0.5, quants L[e] in -4..3.
        var sc = new int[16];
        for (int g = 0; g < 16; g++)
            sc[g] = (g * 11 + 5) % 64 - 32;
        var L = new int[256];
        for (int e = 0; e < 256; e++)
            L[e] = (e * 3 + e / 16) % 8 - 4;

        var block = new byte[110];
        Span<byte> hmask = block.AsSpan(0, 32), scales = block.AsSpan(96, 12);
        for (int g = 0; g < 16; g++)
        {
            int l = sc[g] + 32;
            if (g < 8)
                scales[g] = (byte)(l & 0xF);
            else
                scales[g - 8] |= (byte)((l & 0xF) << 4);
            scales[8 + g % 4] |= (byte)((l >> 4) << (2 * (g / 4)));
        }
        var low = new int[256];
        for (int e = 0; e < 256; e++)
        {
            int u = L[e] + 4; // 0..7: bit 2 goes to hmask (bit e / 32 of byte e % 32), the rest to qs
            if (u > 3)
                hmask[e % 32] |= (byte)(1 << (e / 32));
            low[e] = u & 3;
        }
        PackTwoBits(low, block.AsSpan(32, 64));
        WriteHalf(block, 108, F16Half);

        float[] expected = Enumerable.Range(0, 256).Select(e => 0.5f * sc[e / 16] * L[e]).ToArray();
        Assert.Equal(expected, Dequantize(GgmlType.Q3_K, block));
    }

    [Fact]
    public void Q4_K_matches_a_block_packed_as_quantize_row_q4_K_ref()
    {
        // 6-bit scales and mins with high bits set for sub-blocks 4..7 (the packed part of the 12 bytes).
        int[] ls = [1, 2, 3, 63, 17, 33, 47, 60], lm = [0, 5, 62, 15, 20, 40, 50, 63];
        var L = new int[256];
        for (int e = 0; e < 256; e++)
            L[e] = (e * 5 + e / 32) % 16;
        var block = new byte[144];
        WriteHalf(block, 0, F16One);
        WriteHalf(block, 2, F16Half);
        PackScaleMinK4(ls, lm, block.AsSpan(4, 12));
        Span<byte> qs = block.AsSpan(16, 128);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                qs[32 * c + l] = (byte)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
        float[] expected = Enumerable.Range(0, 256).Select(e => 1f * ls[e / 32] * L[e] - 0.5f * lm[e / 32]).ToArray();
        Assert.Equal(expected, Dequantize(GgmlType.Q4_K, block));
    }

    [Fact]
    public void Q5_K_matches_a_block_packed_as_quantize_row_q5_K_ref()
    {
        int[] ls = [63, 2, 31, 4, 16, 48, 1, 59], lm = [7, 0, 33, 63, 18, 3, 61, 32];
        var L = new int[256];
        for (int e = 0; e < 256; e++)
            L[e] = (e * 7 + e / 32) % 32;
        var block = new byte[176];
        WriteHalf(block, 0, F16Quarter);
        WriteHalf(block, 2, F16One);
        PackScaleMinK4(ls, lm, block.AsSpan(4, 12));
        Span<byte> qh = block.AsSpan(16, 32), ql = block.AsSpan(48, 128);
        int m1 = 1, m2 = 2;
        for (int n = 0; n < 256; n += 64)
        {
            for (int j = 0; j < 32; j++)
            {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= (byte)m1; }
                if (l2 > 15) { l2 -= 16; qh[j] |= (byte)m2; }
                ql[n / 2 + j] = (byte)(l1 | l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        float[] expected = Enumerable.Range(0, 256).Select(e => 0.25f * ls[e / 32] * L[e] - 1f * lm[e / 32]).ToArray();
        Assert.Equal(expected, Dequantize(GgmlType.Q5_K, block));
    }

    [Fact]
    public void Q6_K_matches_a_block_packed_as_quantize_row_q6_K_ref()
    {
        // Signed 8-bit scales, d = 0.5, quants L[e] in -32..31 (stored plus 32 as 4 + 2 bits).
        var sc = new int[16];
        for (int g = 0; g < 16; g++)
            sc[g] = g * 17 - 128;
        var L = new int[256];
        for (int e = 0; e < 256; e++)
            L[e] = (e * 7 + 3 + e / 16) % 64 - 32;
        var block = new byte[210];
        Span<byte> ql = block.AsSpan(0, 128), qh = block.AsSpan(128, 64);
        for (int j = 0; j < 256; j += 128)
        {
            for (int l = 0; l < 32; l++)
            {
                int u1 = L[j + l] + 32, u2 = L[j + l + 32] + 32, u3 = L[j + l + 64] + 32, u4 = L[j + l + 96] + 32;
                ql[j / 2 + l] = (byte)((u1 & 0xF) | (u3 & 0xF) << 4);
                ql[j / 2 + l + 32] = (byte)((u2 & 0xF) | (u4 & 0xF) << 4);
                qh[j / 4 + l] = (byte)((u1 >> 4) | (u2 >> 4) << 2 | (u3 >> 4) << 4 | (u4 >> 4) << 6);
            }
        }
        for (int g = 0; g < 16; g++)
            block[192 + g] = (byte)(sbyte)sc[g];
        WriteHalf(block, 208, F16Half);
        float[] expected = Enumerable.Range(0, 256).Select(e => 0.5f * sc[e / 16] * L[e]).ToArray();
        Assert.Equal(expected, Dequantize(GgmlType.Q6_K, block));
    }

    [Fact]
    public void F16_and_BF16_read_little_endian_bits()
    {
        byte[] f16 = [0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0xFF, 0x7B, 0x00, 0x7C];
        Assert.Equal([1f, -2f, MathF.ScaleB(1f, -24), 65504f, float.PositiveInfinity], Dequantize(GgmlType.F16, f16));
        byte[] bf16 = [0x80, 0x3F, 0x00, 0xC0, 0x49, 0x40, 0x80, 0x7F];
        Assert.Equal([1f, -2f, 3.140625f, float.PositiveInfinity], Dequantize(GgmlType.BF16, bf16));
        byte[] f32 = [0x00, 0x00, 0x80, 0x3F, 0xDB, 0x0F, 0x49, 0x40];
        Assert.Equal([1f, MathF.PI], Dequantize(GgmlType.F32, f32));
    }

    [Fact]
    public void Every_half_widens_exactly()
    {
        // All 65536 bit patterns against an independent decoding of IEEE binary16 (sign, 5-bit exponent, 10-bit
        // fraction, bias 15): widening is exact, so ggml's GGML_FP16_TO_FP32 gives these same floats.
        for (int bits = 0; bits < 1 << 16; bits++)
        {
            int exponent = (bits >> 10) & 31, fraction = bits & 1023;
            double magnitude = exponent switch
            {
                0 => fraction * Math.Pow(2, -24),
                31 => fraction == 0 ? double.PositiveInfinity : double.NaN,
                _ => (1024 + fraction) * Math.Pow(2, exponent - 25),
            };
            float expected = (float)((bits & 0x8000) != 0 ? -magnitude : magnitude);
            float actual = Float16.HalfToSingle((ushort)bits);
            if (double.IsNaN(magnitude))
                Assert.True(float.IsNaN(actual), $"0x{bits:X4} should be NaN");
            else
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(actual));
        }
    }

    private static float[] Dequantize(GgmlType type, byte[] blocks)
    {
        QuantType q = QuantTable.Get(type);
        var output = new float[blocks.Length / q.BytesPerBlock * q.BlockSize];
        QuantTable.Dequantize(type, blocks, output);
        return output;
    }

    private static void WriteHalf(byte[] block, int offset, ushort bits) =>
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(offset), bits);

    /// <summary>2-bit packing of Q2_K/Q3_K as the reference quantizers write it (four weights 32 apart per byte).</summary>
    private static void PackTwoBits(int[] L, Span<byte> qs)
    {
        for (int j = 0; j < 256; j += 128)
            for (int l = 0; l < 32; l++)
                qs[j / 4 + l] = (byte)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
    }

    /// <summary>The 12-byte 6-bit scale/min packing of Q4_K/Q5_K as quantize_row_q4_K_ref writes it.</summary>
    private static void PackScaleMinK4(int[] ls, int[] lm, Span<byte> scales)
    {
        for (int j = 0; j < 8; j++)
        {
            if (j < 4)
            {
                scales[j] = (byte)ls[j];
                scales[j + 4] = (byte)lm[j];
            }
            else
            {
                scales[j + 4] = (byte)((ls[j] & 0xF) | (lm[j] & 0xF) << 4);
                scales[j - 4] |= (byte)((ls[j] >> 4) << 6);
                scales[j] |= (byte)((lm[j] >> 4) << 6);
            }
        }
    }
}
