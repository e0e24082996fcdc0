using System.Buffers.Binary;

namespace Llama3.Kernels.Quant;

/// <summary>
/// Scalar reference dequantizers for ggml's blocks of 32 weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1), rows of
/// <see cref="QuantTable"/>. Layouts are the structs of ggml-common.h; the arithmetic (integer quant times the
/// widened f16 scale, then plus the min where there is one, in that order, in float) is that of the
/// <c>dequantize_row_*</c> functions of ggml-quants.c, so results match ggml bit for bit.
/// </summary>
/// <remarks>
/// Each method converts <c>blocks.Length / bytes-per-block</c> whole blocks into the first 32 floats per block of
/// <c>output</c>; <see cref="QuantTable.Dequantize"/> checks the lengths. The 4- and 5-bit types pack two weights a
/// byte, and not side by side: byte <c>j</c> holds element <c>j</c> in its low nibble and element <c>j + 16</c> in
/// its high nibble.
/// </remarks>
public static class Blocks32
{
    /// <summary>Weights per block (ggml's <c>QK4_0</c>, <c>QK8_0</c>, ...).</summary>
    public const int BlockSize = 32;

    private const int Half = BlockSize / 2;

    /// <summary>
    /// Q4_0 (ggml-common.h <c>block_q4_0</c>: f16 <c>d</c>, 16 bytes of nibbles; 18 bytes):
    /// <c>x = (nibble - 8) * d</c>.
    /// </summary>
    public static void DequantizeQ4_0(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 2 + Half;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            float d = Float16.ReadHalf(block);
            ReadOnlySpan<byte> qs = block.Slice(2, Half);
            for (int j = 0; j < Half; j++)
            {
                y[j] = ((qs[j] & 0x0F) - 8) * d;
                y[j + Half] = ((qs[j] >> 4) - 8) * d;
            }
        }
    }

    /// <summary>
    /// Q4_1 (ggml-common.h <c>block_q4_1</c>: f16 <c>d</c>, f16 <c>m</c>, 16 bytes of nibbles; 20 bytes):
    /// <c>x = nibble * d + m</c>.
    /// </summary>
    public static void DequantizeQ4_1(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 2 + 2 + Half;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            float d = Float16.ReadHalf(block);
            float m = Float16.ReadHalf(block[2..]);
            ReadOnlySpan<byte> qs = block.Slice(4, Half);
            for (int j = 0; j < Half; j++)
            {
                y[j] = (qs[j] & 0x0F) * d + m;
                y[j + Half] = (qs[j] >> 4) * d + m;
            }
        }
    }

    /// <summary>
    /// Q5_0 (ggml-common.h <c>block_q5_0</c>: f16 <c>d</c>, 32-bit <c>qh</c> of fifth bits, 16 bytes of nibbles;
    /// 22 bytes): <c>x = (q - 16) * d</c> where bit <c>k</c> of <c>qh</c> is bit 4 of element <c>k</c>.
    /// </summary>
    public static void DequantizeQ5_0(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 2 + 4 + Half;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            float d = Float16.ReadHalf(block);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
            ReadOnlySpan<byte> qs = block.Slice(6, Half);
            for (int j = 0; j < Half; j++)
            {
                int low = (qs[j] & 0x0F) | FifthBit(qh, j);
                int high = (qs[j] >> 4) | FifthBit(qh, j + Half);
                y[j] = (low - 16) * d;
                y[j + Half] = (high - 16) * d;
            }
        }
    }

    /// <summary>
    /// Q5_1 (ggml-common.h <c>block_q5_1</c>: f16 <c>d</c>, f16 <c>m</c>, 32-bit <c>qh</c>, 16 bytes of nibbles;
    /// 24 bytes): <c>x = q * d + m</c>, the fifth bits as in Q5_0.
    /// </summary>
    public static void DequantizeQ5_1(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 2 + 2 + 4 + Half;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            Span<float> y = output.Slice(i * BlockSize, BlockSize);
            float d = Float16.ReadHalf(block);
            float m = Float16.ReadHalf(block[2..]);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
            ReadOnlySpan<byte> qs = block.Slice(8, Half);
            for (int j = 0; j < Half; j++)
            {
                int low = (qs[j] & 0x0F) | FifthBit(qh, j);
                int high = (qs[j] >> 4) | FifthBit(qh, j + Half);
                y[j] = low * d + m;
                y[j + Half] = high * d + m;
            }
        }
    }

    /// <summary>
    /// Q8_0 (ggml-common.h <c>block_q8_0</c>: f16 <c>d</c>, 32 signed bytes; 34 bytes): <c>x = q * d</c>.
    /// </summary>
    public static void DequantizeQ8_0(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 2 + BlockSize;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            ScaleSignedBytes(Float16.ReadHalf(block), block.Slice(2, BlockSize), output.Slice(i * BlockSize, BlockSize));
        }
    }

    /// <summary>
    /// Q8_1 (ggml-common.h <c>block_q8_1</c>: f16 <c>d</c>, f16 <c>s</c> = d * sum(q), 32 signed bytes; 36 bytes):
    /// <c>x = q * d</c>. ggml uses Q8_1 only for activations and gives it no <c>to_float</c>; <c>s</c> is a
    /// by-product for dot products and plays no part in the values.
    /// </summary>
    public static void DequantizeQ8_1(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        const int bytes = 2 + 2 + BlockSize;
        int count = blocks.Length / bytes;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(i * bytes, bytes);
            ScaleSignedBytes(Float16.ReadHalf(block), block.Slice(4, BlockSize), output.Slice(i * BlockSize, BlockSize));
        }
    }

    /// <summary>Bit <paramref name="k"/> of <paramref name="qh"/> moved to bit 4 (value 16 or 0).</summary>
    private static int FifthBit(uint qh, int k) => (int)((qh >> k) & 1) << 4;

    private static void ScaleSignedBytes(float d, ReadOnlySpan<byte> qs, Span<float> y)
    {
        for (int j = 0; j < qs.Length; j++)
            y[j] = (sbyte)qs[j] * d;
    }
}
