using System.Buffers.Binary;

namespace Llama3.Kernels.Quant;

/// <summary>
/// Scalar conversions of 16-bit floats to <see cref="float"/>, as ggml's <c>GGML_FP16_TO_FP32</c> and
/// <c>GGML_BF16_TO_FP32</c> (ggml-impl.h). Both are exact: every half and every bfloat16 is a float.
/// </summary>
public static class Float16
{
    /// <summary>An IEEE half (binary16) given by its bits, widened to float.</summary>
    /// <remarks>
    /// ggml widens with F16C or a bit-twiddling fallback; widening is exact, so <see cref="Half"/>'s conversion
    /// gives the same float bit for bit, subnormals, infinities and signed zeros included.
    /// </remarks>
    public static float HalfToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>A bfloat16 given by its bits, widened to float: the bits are a float's upper half (ggml-impl.h).</summary>
    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Reads a little-endian half (ggml's <c>ggml_half</c>) from the first two bytes and widens it.</summary>
    public static float ReadHalf(ReadOnlySpan<byte> source) =>
        HalfToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source));
}
