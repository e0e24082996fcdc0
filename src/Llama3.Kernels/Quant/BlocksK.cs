using System.Buffers.Binary;

namespace Llama3.Kernels.Quant;

/// <summary>
/// Scalar reference dequantizers for ggml's K-quants, super-blocks of 256 weights (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
/// Q8_K), rows of <see cref="QuantTable"/>. Layouts are the structs of ggml-common.h; the arithmetic is that of the
/// <c>dequantize_row_*</c> functions of ggml-quants.c (sub-block scale = super-block scale times the small integer
/// scale, then times the quant, minus the sub-block min; in float, in that order), so results match ggml bit for bit.
/// </summary>
/// <remarks>
/// Each method converts <c>blocks.Length / bytes-per-block</c> whole super-blocks into the first 256 floats per
/// super-block of <c>output</c>; <see cref="QuantTable.Dequantize"/> checks the lengths.
/// The 2-bit fields (Q2_K, Q3_K low bits) are packed as ggml's quantizers write them: each half of 128 weights owns
/// 32 bytes of <c>qs</c>, and bits <c>2f..2f+1</c> of byte <c>k</c> hold weight <c>32f + k</c> of that half.
/// </remarks>
public static class BlocksK
{
    /// <summary>Weights per super-block (ggml's <c>QK_K</c>).</summary>
    public const int BlockSize = 256;

    /// <summary>
    /// Q2_K (ggml-common.h <c>block_q2_K</c>: 16 bytes <c>scales</c>, 64 bytes <c>qs</c>, f16 <c>d</c>, f16
    /// <c>dmin</c>; 84 bytes). Sixteen sub-blocks of 16; <c>scales[g]</c> holds the 4-bit scale (low nibble) and
    /// 4-bit min (high nibble) of sub-block <c>g</c>: <c>x = d * scale * q - dmin * min</c>, <c>q</c> in 0..3.
    /// </summary>
    public static void DequantizeQ2_K(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 16 + 64 + 2 + 2;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<byte> scales = block[..16];
            ReadOnlySpan<byte> qs = block.Slice(16, 64);
            float d = Float16.ReadHalf(block[80..]);
            float dmin = Float16.ReadHalf(block[82..]);
            for (int g = 0; g < 16; g++)
            {
                float dl = d * (scales[g] & 0xF);
                float ml = dmin * (scales[g] >> 4);
                ReadOnlySpan<byte> q = TwoBitBytes(qs, g);
                int shift = TwoBitShift(g);
                Span<float> yg = y.Slice(16 * g, 16);
                for (int l = 0; l < 16; l++)
                    yg[l] = dl * ((q[l] >> shift) & 3) - ml;
            }
        }
    }

    /// <summary>
    /// Q3_K (ggml-common.h <c>block_q3_K</c>: 32 bytes <c>hmask</c>, 64 bytes <c>qs</c>, 12 bytes <c>scales</c>, f16
    /// <c>d</c>; 110 bytes). Sixteen sub-blocks of 16 with signed 6-bit scales (stored plus 32):
    /// <c>x = d * (scale - 32) * (q - 4)</c>, <c>q</c> = 2 low bits from <c>qs</c> plus 4 when the weight's
    /// <c>hmask</c> bit is set (bit <c>g / 2</c> of <c>hmask[k]</c>, as quantize_row_q3_K_ref writes it).
    /// </summary>
    public static void DequantizeQ3_K(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 32 + 64 + 12 + 2;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<byte> hmask = block[..32];
            ReadOnlySpan<byte> qs = block.Slice(32, 64);
            ReadOnlySpan<byte> scales = block.Slice(96, 12);
            float dAll = Float16.ReadHalf(block[108..]);
            for (int g = 0; g < 16; g++)
            {
                float dl = dAll * (Q3Scale(scales, g) - 32);
                ReadOnlySpan<byte> q = TwoBitBytes(qs, g);
                ReadOnlySpan<byte> h = hmask.Slice(16 * (g % 2), 16);
                int shift = TwoBitShift(g);
                int highBit = 1 << (g / 2);
                Span<float> yg = y.Slice(16 * g, 16);
                for (int l = 0; l < 16; l++)
                    yg[l] = dl * (((q[l] >> shift) & 3) - ((h[l] & highBit) != 0 ? 0 : 4));
            }
        }
    }

    /// <summary>
    /// Q4_K (ggml-common.h <c>block_q4_K</c>: f16 <c>d</c>, f16 <c>dmin</c>, 12 bytes <c>scales</c>, 128 bytes
    /// <c>qs</c>; 144 bytes). Eight sub-blocks of 32 with 6-bit scales and mins:
    /// <c>x = d * scale * q - dmin * min</c>; sub-blocks <c>2c</c> and <c>2c + 1</c> are the low and high nibbles
    /// of <c>qs[32c .. 32c + 32]</c>.
    /// </summary>
    public static void DequantizeQ4_K(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 2 + 2 + 12 + 128;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            float d = Float16.ReadHalf(block);
            float dmin = Float16.ReadHalf(block[2..]);
            ReadOnlySpan<byte> scales = block.Slice(4, 12);
            ReadOnlySpan<byte> qs = block.Slice(16, 128);
            for (int s = 0; s < 8; s++)
            {
                ScaleMinK4(scales, s, out int sc, out int m);
                float ds = d * sc;
                float ms = dmin * m;
                ReadOnlySpan<byte> q = qs.Slice(32 * (s / 2), 32);
                int shift = 4 * (s % 2);
                Span<float> ys = y.Slice(32 * s, 32);
                for (int l = 0; l < 32; l++)
                    ys[l] = ds * ((q[l] >> shift) & 0xF) - ms;
            }
        }
    }

    /// <summary>
    /// Q5_K (ggml-common.h <c>block_q5_K</c>: f16 <c>d</c>, f16 <c>dmin</c>, 12 bytes <c>scales</c>, 32 bytes
    /// <c>qh</c>, 128 bytes <c>qs</c>; 176 bytes). As Q4_K with a fifth bit: bit <c>s</c> of <c>qh[l]</c> adds 16
    /// to weight <c>l</c> of sub-block <c>s</c>.
    /// </summary>
    public static void DequantizeQ5_K(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 2 + 2 + 12 + 32 + 128;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            float d = Float16.ReadHalf(block);
            float dmin = Float16.ReadHalf(block[2..]);
            ReadOnlySpan<byte> scales = block.Slice(4, 12);
            ReadOnlySpan<byte> qh = block.Slice(16, 32);
            ReadOnlySpan<byte> qs = block.Slice(48, 128);
            for (int s = 0; s < 8; s++)
            {
                ScaleMinK4(scales, s, out int sc, out int m);
                float ds = d * sc;
                float ms = dmin * m;
                ReadOnlySpan<byte> q = qs.Slice(32 * (s / 2), 32);
                int shift = 4 * (s % 2);
                int highBit = 1 << s;
                Span<float> ys = y.Slice(32 * s, 32);
                for (int l = 0; l < 32; l++)
                    ys[l] = ds * (((q[l] >> shift) & 0xF) + ((qh[l] & highBit) != 0 ? 16 : 0)) - ms;
            }
        }
    }

    /// <summary>
    /// Q6_K (ggml-common.h <c>block_q6_K</c>: 128 bytes <c>ql</c>, 64 bytes <c>qh</c>, 16 signed bytes
    /// <c>scales</c>, f16 <c>d</c>; 210 bytes). Sixteen sub-blocks of 16 with signed 8-bit scales:
    /// <c>x = d * scale * (q - 32)</c>, <c>q</c> = 4 bits from <c>ql</c> and 2 from <c>qh</c>. Each half of 128
    /// weights owns 64 bytes of <c>ql</c> and 32 of <c>qh</c>: quarter <c>f</c> (32 weights) takes the low
    /// (<c>f</c> &lt; 2) or high nibble of <c>ql[32 * (f % 2) + k]</c> and bits <c>2f..2f+1</c> of <c>qh[k]</c>.
    /// </summary>
    public static void DequantizeQ6_K(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 128 + 64 + 16 + 2;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<byte> ql = block[..128];
            ReadOnlySpan<byte> qh = block.Slice(128, 64);
            ReadOnlySpan<byte> scales = block.Slice(192, 16);
            float d = Float16.ReadHalf(block[208..]);
            for (int g = 0; g < 16; g++)
            {
                int half = g / 8, quarter = g % 8 / 2, offset = 16 * (g % 2);
                float ds = d * (sbyte)scales[g];
                ReadOnlySpan<byte> low = ql.Slice(64 * half + 32 * (quarter % 2) + offset, 16);
                ReadOnlySpan<byte> high = qh.Slice(32 * half + offset, 16);
                int lowShift = quarter < 2 ? 0 : 4;
                int highShift = 2 * quarter;
                Span<float> yg = y.Slice(16 * g, 16);
                for (int l = 0; l < 16; l++)
                {
                    int q = ((low[l] >> lowShift) & 0xF) | (((high[l] >> highShift) & 3) << 4);
                    yg[l] = ds * (q - 32);
                }
            }
        }
    }

    /// <summary>
    /// Q8_K (ggml-common.h <c>block_q8_K</c>: f32 <c>d</c>, 256 signed bytes <c>qs</c>, 16 int16 <c>bsums</c>;
    /// 292 bytes): <c>x = d * q</c> (dequantize_row_q8_K). The block sums serve dot products only.
    /// </summary>
    public static void DequantizeQ8_K(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 4 + BlockSize + 32;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            float d = BinaryPrimitives.ReadSingleLittleEndian(block);
            ReadOnlySpan<byte> qs = block.Slice(4, BlockSize);
            for (int j = 0; j < BlockSize; j++)
                y[j] = d * (sbyte)qs[j];
        }
    }

    /// <summary>
    /// The 16 bytes of a 2-bit-packed <c>qs</c> (Q2_K, Q3_K) that hold sub-block <paramref name="g"/> of 16
    /// weights: half <c>g / 8</c> owns 32 bytes, odd sub-blocks take the second 16 of them.
    /// </summary>
    private static ReadOnlySpan<byte> TwoBitBytes(ReadOnlySpan<byte> qs, int g) => qs.Slice(32 * (g / 8) + 16 * (g % 2), 16);

    /// <summary>Where in those bytes sub-block <paramref name="g"/>'s two bits sit: field <c>(g % 8) / 2</c>.</summary>
    private static int TwoBitShift(int g) => 2 * (g % 8 / 2);

    /// <summary>
    /// Q3_K's 6-bit scale of sub-block <paramref name="g"/> (still offset by 32) from its 12 packed bytes: low 4 bits
    /// in the nibbles of bytes 0..7 (sub-blocks 0..7 low nibbles, 8..15 high nibbles), high 2 bits in bytes 8..11
    /// (as quantize_row_q3_K_ref packs them; dequantize_row_q3_K unpacks the same with 32-bit masks).
    /// </summary>
    private static int Q3Scale(ReadOnlySpan<byte> scales, int g)
    {
        int low = g < 8 ? scales[g] & 0xF : scales[g - 8] >> 4;
        int high = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
        return low | (high << 4);
    }

    /// <summary>
    /// The 6-bit scale and min of sub-block <paramref name="j"/> of Q4_K and Q5_K (ggml-quants.c
    /// <c>get_scale_min_k4</c>): sub-blocks 0..3 have theirs in the low 6 bits of bytes 0..3 and 4..7; sub-blocks
    /// 4..7 have the low 4 bits in the nibbles of bytes 8..11 and the high 2 bits in the top bits of bytes 0..7.
    /// </summary>
    private static void ScaleMinK4(ReadOnlySpan<byte> scales, int j, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = scales[j] & 63;
            min = scales[j + 4] & 63;
        }
        else
        {
            scale = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
            min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        }
    }
}
