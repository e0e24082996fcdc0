using System.Buffers.Binary;
using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Simd;

/// <summary>
/// Scalar twins of <see cref="QuantDot"/>: one weight row dotted with one activation row already converted to the
/// weight type's <see cref="QuantType.VecDotType"/>. Written for clarity after ggml-cpu's
/// <c>ggml_vec_dot_*_generic</c> (quants.c, vec.c): per block an exact integer dot product of the quants, then the
/// block's scales applied in float and the block added to a float sum, blocks in order. The float expression of each
/// block is given in each method's remarks; the vectorized twins keep the integer parts exact and differ only in how
/// they add the float terms (the K-quant ones not even that: they give the same bits).
/// </summary>
/// <remarks>
/// <para>Layouts are ggml-common.h's (see <see cref="Blocks32"/> and <see cref="BlocksK"/>). <c>n</c> is the number of
/// values; both rows must hold at least <c>n</c> values' blocks. Integer sums are exact in <see cref="int"/> for every
/// input byte (the largest, Q6_K's, is below 2^28).</para>
/// <para>Where ggml's generic K-quant code keeps the integer sum of a super-block in 8 lanes and scales each lane
/// (<c>sums[l] += d * aux32[l]</c>, there only so that compilers vectorize it), these keep one integer per super-block,
/// the exact sum of those lanes; the results differ from ggml's by float rounding only.</para>
/// </remarks>
public static class QuantDotScalar
{
    /// <summary>
    /// Q8_0 weights with Q8_0 activations (34-byte blocks of 32). Per block
    /// <c>sum += sumi * (dx * dy)</c> (ggml_vec_dot_q8_0_q8_0_generic).
    /// </summary>
    public static float DotQ8_0(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 32, 34, 34, "Q8_0", "Q8_0");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(34 * b, 34), y = activationRow.Slice(34 * b, 34);
            int sumi = 0;
            for (int j = 0; j < 32; j++)
                sumi += (sbyte)x[2 + j] * (sbyte)y[2 + j];
            sum += sumi * (Float16.ReadHalf(x) * Float16.ReadHalf(y));
        }
        return sum;
    }

    /// <summary>
    /// Q4_0 weights (18-byte blocks) with Q8_0 activations. Weight <c>j</c> is <c>nibble - 8</c>; per block
    /// <c>sum += sumi * dx * dy</c>, left to right (ggml_vec_dot_q4_0_q8_0_generic).
    /// </summary>
    public static float DotQ4_0(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 32, 18, 34, "Q4_0", "Q8_0");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(18 * b, 18), y = activationRow.Slice(34 * b, 34);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                sumi += ((x[2 + j] & 0xF) - 8) * (sbyte)y[2 + j];
                sumi += ((x[2 + j] >> 4) - 8) * (sbyte)y[2 + 16 + j];
            }
            sum += sumi * Float16.ReadHalf(x) * Float16.ReadHalf(y);
        }
        return sum;
    }

    /// <summary>
    /// Q4_1 weights (20-byte blocks: d, m, nibbles) with Q8_1 activations (d, s, quants). Weight <c>j</c> is
    /// <c>nibble * dx + m</c> and <c>s = dy * sum(q)</c>, so per block
    /// <c>sum += (dx * dy) * sumi + m * s</c> (ggml_vec_dot_q4_1_q8_1_generic).
    /// </summary>
    public static float DotQ4_1(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 32, 20, 36, "Q4_1", "Q8_1");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(20 * b, 20), y = activationRow.Slice(36 * b, 36);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                sumi += (x[4 + j] & 0xF) * (sbyte)y[4 + j];
                sumi += (x[4 + j] >> 4) * (sbyte)y[4 + 16 + j];
            }
            sum += Float16.ReadHalf(x) * Float16.ReadHalf(y) * sumi + Float16.ReadHalf(x[2..]) * Float16.ReadHalf(y[2..]);
        }
        return sum;
    }

    /// <summary>
    /// Q5_0 weights (22-byte blocks: d, 32 fifth bits, nibbles) with Q8_0 activations. Weight <c>j</c> is
    /// <c>(nibble | bit_j &lt;&lt; 4) - 16</c>; per block <c>sum += (dx * dy) * sumi</c> (ggml_vec_dot_q5_0_q8_0_generic).
    /// </summary>
    public static float DotQ5_0(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 32, 22, 34, "Q5_0", "Q8_0");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(22 * b, 22), y = activationRow.Slice(34 * b, 34);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(x[2..]);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                sumi += (((x[6 + j] & 0xF) | FifthBit(qh, j)) - 16) * (sbyte)y[2 + j];
                sumi += (((x[6 + j] >> 4) | FifthBit(qh, j + 16)) - 16) * (sbyte)y[2 + 16 + j];
            }
            sum += Float16.ReadHalf(x) * Float16.ReadHalf(y) * sumi;
        }
        return sum;
    }

    /// <summary>
    /// Q5_1 weights (24-byte blocks: d, m, fifth bits, nibbles) with Q8_1 activations. Weight <c>j</c> is
    /// <c>(nibble | bit_j &lt;&lt; 4) * dx + m</c>; per block <c>sum += (dx * dy) * sumi + m * s</c>
    /// (ggml_vec_dot_q5_1_q8_1_generic).
    /// </summary>
    public static float DotQ5_1(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 32, 24, 36, "Q5_1", "Q8_1");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(24 * b, 24), y = activationRow.Slice(36 * b, 36);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(x[4..]);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                sumi += ((x[8 + j] & 0xF) | FifthBit(qh, j)) * (sbyte)y[4 + j];
                sumi += ((x[8 + j] >> 4) | FifthBit(qh, j + 16)) * (sbyte)y[4 + 16 + j];
            }
            sum += Float16.ReadHalf(x) * Float16.ReadHalf(y) * sumi + Float16.ReadHalf(x[2..]) * Float16.ReadHalf(y[2..]);
        }
        return sum;
    }

    /// <summary>
    /// Q8_1 rows with Q8_1 rows (ggml has no such dot: Q8_1 is never a weight type; given so that every table row can
    /// dot): per block <c>sum += sumi * (dx * dy)</c>.
    /// </summary>
    public static float DotQ8_1(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 32, 36, 36, "Q8_1", "Q8_1");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(36 * b, 36), y = activationRow.Slice(36 * b, 36);
            int sumi = 0;
            for (int j = 0; j < 32; j++)
                sumi += (sbyte)x[4 + j] * (sbyte)y[4 + j];
            sum += sumi * (Float16.ReadHalf(x) * Float16.ReadHalf(y));
        }
        return sum;
    }

    /// <summary>
    /// Q2_K weights (84-byte super-blocks) with Q8_K activations. Sixteen sub-blocks of 16 with 4-bit scale
    /// <c>sc</c> and min <c>m</c>; weight = <c>d * sc * q - dmin * m</c>. With <c>isum = sum_g sc_g * dot_g</c> and
    /// <c>summs = sum_g m_g * bsums_g</c>, per super-block <c>sum += dall * isum - dmin' * summs</c> where
    /// <c>dall = dy * d</c>, <c>dmin' = dy * dmin</c> (ggml_vec_dot_q2_K_q8_K_generic, exactly).
    /// </summary>
    public static float DotQ2_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 256, 84, 292, "Q2_K", "Q8_K");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(84 * b, 84), y = activationRow.Slice(292 * b, 292);
            ReadOnlySpan<byte> scales = x[..16], qs = x.Slice(16, 64), q8 = Quants8K(y);
            int isum = 0, summs = 0;
            for (int g = 0; g < 16; g++)
            {
                summs += BlockSum8K(y, g) * (scales[g] >> 4);
                // Sub-block g: 16 bytes of half g / 8 (odd g the second 16), bits 2f..2f+1, f = (g % 8) / 2.
                ReadOnlySpan<byte> q = qs.Slice(32 * (g / 8) + 16 * (g % 2), 16);
                int shift = 2 * (g % 8 / 2);
                int dot = 0;
                for (int l = 0; l < 16; l++)
                    dot += ((q[l] >> shift) & 3) * (sbyte)q8[16 * g + l];
                isum += (scales[g] & 0xF) * dot;
            }
            float dy = Scale8K(y);
            float dall = dy * Float16.ReadHalf(x[80..]);
            float dmin = dy * Float16.ReadHalf(x[82..]);
            sum += dall * isum - dmin * summs;
        }
        return sum;
    }

    /// <summary>
    /// Q3_K weights (110-byte super-blocks) with Q8_K activations. Sixteen sub-blocks of 16 with signed 6-bit scales
    /// <c>sc - 32</c>; weight = <c>d * (sc - 32) * (q2 - (hmask bit ? 0 : 4))</c>. Per super-block
    /// <c>sum += (d * dy) * isum</c> (ggml_vec_dot_q3_K_q8_K_generic, one integer instead of 8 lanes).
    /// </summary>
    public static float DotQ3_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 256, 110, 292, "Q3_K", "Q8_K");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(110 * b, 110), y = activationRow.Slice(292 * b, 292);
            ReadOnlySpan<byte> hmask = x[..32], qs = x.Slice(32, 64), scales = x.Slice(96, 12), q8 = Quants8K(y);
            int isum = 0;
            for (int g = 0; g < 16; g++)
            {
                ReadOnlySpan<byte> q = qs.Slice(32 * (g / 8) + 16 * (g % 2), 16);
                ReadOnlySpan<byte> h = hmask.Slice(16 * (g % 2), 16);
                int shift = 2 * (g % 8 / 2);
                int highBit = 1 << (g / 2);
                int dot = 0;
                for (int l = 0; l < 16; l++)
                    dot += (((q[l] >> shift) & 3) - ((h[l] & highBit) != 0 ? 0 : 4)) * (sbyte)q8[16 * g + l];
                isum += (Q3Scale(scales, g) - 32) * dot;
            }
            sum += Float16.ReadHalf(x[108..]) * Scale8K(y) * isum;
        }
        return sum;
    }

    /// <summary>
    /// Q4_K weights (144-byte super-blocks) with Q8_K activations. Eight sub-blocks of 32 with 6-bit scale and min;
    /// weight = <c>d * sc * q - dmin * m</c>. With <c>isum = sum_s sc_s * dot_s</c> and
    /// <c>summ = sum_k m_(k/2) * bsums_k</c>, per super-block <c>sum += (d * dy) * isum - (dmin * dy) * summ</c>
    /// (ggml_vec_dot_q4_K_q8_K_generic, one integer instead of 8 lanes).
    /// </summary>
    public static float DotQ4_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 256, 144, 292, "Q4_K", "Q8_K");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(144 * b, 144), y = activationRow.Slice(292 * b, 292);
            ReadOnlySpan<byte> scales = x.Slice(4, 12), qs = x.Slice(16, 128), q8 = Quants8K(y);
            int isum = 0, summ = 0;
            for (int s = 0; s < 8; s++)
            {
                ScaleMinK4(scales, s, out int sc, out int m);
                summ += m * (BlockSum8K(y, 2 * s) + BlockSum8K(y, 2 * s + 1));
                // Sub-blocks 2c and 2c + 1 are the low and high nibbles of qs[32c .. 32c + 32].
                ReadOnlySpan<byte> q = qs.Slice(32 * (s / 2), 32);
                int shift = 4 * (s % 2);
                int dot = 0;
                for (int l = 0; l < 32; l++)
                    dot += ((q[l] >> shift) & 0xF) * (sbyte)q8[32 * s + l];
                isum += sc * dot;
            }
            float dy = Scale8K(y);
            sum += Float16.ReadHalf(x) * dy * isum - Float16.ReadHalf(x[2..]) * dy * summ;
        }
        return sum;
    }

    /// <summary>
    /// Q5_K weights (176-byte super-blocks) with Q8_K activations: as <see cref="DotQ4_K"/> with a fifth bit
    /// (bit <c>s</c> of <c>qh[l]</c> adds 16 to weight <c>l</c> of sub-block <c>s</c>); the same float expression
    /// (ggml_vec_dot_q5_K_q8_K_generic, one integer instead of 8 lanes).
    /// </summary>
    public static float DotQ5_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 256, 176, 292, "Q5_K", "Q8_K");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(176 * b, 176), y = activationRow.Slice(292 * b, 292);
            ReadOnlySpan<byte> scales = x.Slice(4, 12), qh = x.Slice(16, 32), qs = x.Slice(48, 128), q8 = Quants8K(y);
            int isum = 0, summ = 0;
            for (int s = 0; s < 8; s++)
            {
                ScaleMinK4(scales, s, out int sc, out int m);
                summ += m * (BlockSum8K(y, 2 * s) + BlockSum8K(y, 2 * s + 1));
                ReadOnlySpan<byte> q = qs.Slice(32 * (s / 2), 32);
                int shift = 4 * (s % 2);
                int highBit = 1 << s;
                int dot = 0;
                for (int l = 0; l < 32; l++)
                    dot += (((q[l] >> shift) & 0xF) + ((qh[l] & highBit) != 0 ? 16 : 0)) * (sbyte)q8[32 * s + l];
                isum += sc * dot;
            }
            float dy = Scale8K(y);
            sum += Float16.ReadHalf(x) * dy * isum - Float16.ReadHalf(x[2..]) * dy * summ;
        }
        return sum;
    }

    /// <summary>
    /// Q6_K weights (210-byte super-blocks) with Q8_K activations. Sixteen sub-blocks of 16 with signed 8-bit scales;
    /// weight = <c>d * sc * (q - 32)</c>, <c>q</c> from 4 bits of <c>ql</c> and 2 of <c>qh</c>. Per super-block
    /// <c>sum += (d * dy) * isum</c> (ggml_vec_dot_q6_K_q8_K_generic, one integer instead of 8 lanes).
    /// </summary>
    public static float DotQ6_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 256, 210, 292, "Q6_K", "Q8_K");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(210 * b, 210), y = activationRow.Slice(292 * b, 292);
            ReadOnlySpan<byte> ql = x[..128], qh = x.Slice(128, 64), scales = x.Slice(192, 16), q8 = Quants8K(y);
            int isum = 0;
            for (int g = 0; g < 16; g++)
            {
                // Quarter f (32 weights) of half h: low (f < 2) or high nibble of ql[64h + 32(f % 2) + k], bits 2f.. of qh[32h + k].
                int half = g / 8, quarter = g % 8 / 2, offset = 16 * (g % 2);
                ReadOnlySpan<byte> low = ql.Slice(64 * half + 32 * (quarter % 2) + offset, 16);
                ReadOnlySpan<byte> high = qh.Slice(32 * half + offset, 16);
                int lowShift = quarter < 2 ? 0 : 4, highShift = 2 * quarter;
                int dot = 0;
                for (int l = 0; l < 16; l++)
                {
                    int q = ((low[l] >> lowShift) & 0xF) | (((high[l] >> highShift) & 3) << 4);
                    dot += (q - 32) * (sbyte)q8[16 * g + l];
                }
                isum += (sbyte)scales[g] * dot;
            }
            sum += Float16.ReadHalf(x[208..]) * Scale8K(y) * isum;
        }
        return sum;
    }

    /// <summary>
    /// Q8_K rows with Q8_K rows (ggml has no such dot: Q8_K is never a weight type; given so that every table row can
    /// dot): per super-block <c>sum += sumi * (dx * dy)</c>.
    /// </summary>
    public static float DotQ8_K(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        int blocks = QuantDotChecks.Blocks(weightRow, activationRow, n, 256, 292, 292, "Q8_K", "Q8_K");
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = weightRow.Slice(292 * b, 292), y = activationRow.Slice(292 * b, 292);
            ReadOnlySpan<byte> qx = Quants8K(x), qy = Quants8K(y);
            int sumi = 0;
            for (int j = 0; j < 256; j++)
                sumi += (sbyte)qx[j] * (sbyte)qy[j];
            sum += sumi * (Scale8K(x) * Scale8K(y));
        }
        return sum;
    }

    /// <summary>
    /// F16 weights with F16 activations: each product of the widened halves (exact in float), added in double
    /// (ggml_vec_dot_f16's scalar code, <c>sumf += (ggml_float)(x[i] * y[i])</c>, <c>ggml_float</c> = double).
    /// </summary>
    public static float DotF16(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        QuantDotChecks.Blocks(weightRow, activationRow, n, 1, 2, 2, "F16", "F16");
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += Float16.ReadHalf(weightRow[(2 * i)..]) * Float16.ReadHalf(activationRow[(2 * i)..]);
        return (float)sum;
    }

    /// <summary>BF16 weights with BF16 activations: float products added in double (ggml_vec_dot_bf16's scalar code).</summary>
    public static float DotBF16(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        QuantDotChecks.Blocks(weightRow, activationRow, n, 1, 2, 2, "BF16", "BF16");
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += Float16.BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(weightRow[(2 * i)..]))
                   * Float16.BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(activationRow[(2 * i)..]));
        return (float)sum;
    }

    /// <summary>F32 weights with F32 activations: float products added in double (ggml_vec_dot_f32's scalar code).</summary>
    public static float DotF32(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        QuantDotChecks.Blocks(weightRow, activationRow, n, 1, 4, 4, "F32", "F32");
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += BinaryPrimitives.ReadSingleLittleEndian(weightRow[(4 * i)..]) * BinaryPrimitives.ReadSingleLittleEndian(activationRow[(4 * i)..]);
        return (float)sum;
    }

    /// <summary>Bit <paramref name="k"/> of <paramref name="qh"/> moved to bit 4 (value 16 or 0).</summary>
    private static int FifthBit(uint qh, int k) => (int)((qh >> k) & 1) << 4;

    private static float Scale8K(ReadOnlySpan<byte> block) => BinaryPrimitives.ReadSingleLittleEndian(block);

    private static ReadOnlySpan<byte> Quants8K(ReadOnlySpan<byte> block) => block.Slice(4, 256);

    private static int BlockSum8K(ReadOnlySpan<byte> block, int k) => BinaryPrimitives.ReadInt16LittleEndian(block[(4 + 256 + 2 * k)..]);

    /// <summary>Q3_K's 6-bit scale of sub-block <paramref name="g"/>, still offset by 32 (as <see cref="BlocksK"/> reads it).</summary>
    private static int Q3Scale(ReadOnlySpan<byte> scales, int g)
    {
        int low = g < 8 ? scales[g] & 0xF : scales[g - 8] >> 4;
        int high = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
        return low | (high << 4);
    }

    /// <summary>The 6-bit scale and min of sub-block <paramref name="j"/> of Q4_K and Q5_K (ggml's <c>get_scale_min_k4</c>).</summary>
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

/// <summary>Argument checks shared by the dot products.</summary>
internal static class QuantDotChecks
{
    /// <summary>
    /// The number of blocks of <paramref name="n"/> values; throws <see cref="ArgumentException"/> when
    /// <paramref name="n"/> is not a whole number of blocks or a row is too short for them.
    /// </summary>
    public static int Blocks(ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n, int blockSize,
        int weightBytes, int activationBytes, string weightType, string activationType)
    {
        if (n < 0 || n % blockSize != 0)
            throw new ArgumentException($"{n} values are not a whole number of {weightType} blocks of {blockSize}", nameof(n));
        int blocks = n / blockSize;
        if (weightRow.Length < (long)blocks * weightBytes)
            throw new ArgumentException(
                $"{n} {weightType} weights take {(long)blocks * weightBytes} bytes but the weight row has {weightRow.Length}",
                nameof(weightRow));
        if (activationRow.Length < (long)blocks * activationBytes)
            throw new ArgumentException(
                $"{n} {activationType} activations take {(long)blocks * activationBytes} bytes but the activation row has {activationRow.Length}",
                nameof(activationRow));
        return blocks;
    }
}
