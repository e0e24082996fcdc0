using System.Buffers.Binary;

namespace Llama3.Kernels.Quant;

/// <summary>
/// Scalar reference conversions of the unquantized weight types (F32, F16, BF16) to float, rows of
/// <see cref="QuantTable"/>. A "block" is one element. GGUF stores them little-endian.
/// </summary>
public static class FloatRows
{
    /// <summary>F32: copies little-endian floats (<c>4 * output.Length</c> bytes).</summary>
    public static void DequantizeF32(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        int n = blocks.Length / sizeof(float);
        for (int i = 0; i < n; i++)
            output[i] = BinaryPrimitives.ReadSingleLittleEndian(blocks.Slice(i * sizeof(float), sizeof(float)));
    }

    /// <summary>F16: widens little-endian halves (ggml's <c>ggml_fp16_to_fp32_row</c>).</summary>
    public static void DequantizeF16(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        int n = blocks.Length / sizeof(ushort);
        for (int i = 0; i < n; i++)
            output[i] = Float16.HalfToSingle(BinaryPrimitives.ReadUInt16LittleEndian(blocks.Slice(i * 2, 2)));
    }

    /// <summary>BF16: widens little-endian bfloat16s (ggml's <c>ggml_bf16_to_fp32_row</c>).</summary>
    public static void DequantizeBF16(ReadOnlySpan<byte> blocks, Span<float> output)
    {
        int n = blocks.Length / sizeof(ushort);
        for (int i = 0; i < n; i++)
            output[i] = Float16.BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(blocks.Slice(i * 2, 2)));
    }
}
