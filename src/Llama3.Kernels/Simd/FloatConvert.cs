using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Simd;

/// <summary>
/// Vectorized widening of F32/F16/BF16 weight rows to float32, for matrix products whose activations stay float32
/// (exact with Meta's reference). The scalar twins are the table's reference dequantizers in <see cref="FloatRows"/>.
/// </summary>
public static class FloatConvert
{
    /// <summary>Whether <paramref name="type"/> is one of the float types this class widens.</summary>
    public static bool Handles(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    /// <summary>Widens a little-endian row of <paramref name="type"/> into <paramref name="output"/>.</summary>
    public static void ToSingle(GgmlType type, ReadOnlySpan<byte> row, Span<float> output)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.Cast<byte, float>(row).CopyTo(output);
                break;
            case GgmlType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(row), output);
                break;
            case GgmlType.BF16:
                BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(row), output);
                break;
            default:
                throw new ArgumentException($"{type} is not a float type", nameof(type));
        }
    }

    /// <summary>bfloat16 to float32: the 16 bits become the high half of the float (a shift), 16 or 8 at a time.</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> x, Span<float> output)
    {
        if (output.Length < x.Length) throw new ArgumentException("the output is shorter than the input", nameof(output));
        int i = 0;
        ref ushort src = ref MemoryMarshal.GetReference(x);
        ref float dst = ref MemoryMarshal.GetReference(output);
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= x.Length; i += 16)
            {
                var v = Vector256.LoadUnsafe(ref src, (nuint)i);
                var w = Vector512.ShiftLeft(Vector512.WidenLower(v.ToVector512Unsafe()).AsUInt32(), 16);
                // WidenLower of the 512-bit register takes its lower 256 bits: the 16 values just loaded.
                w.AsSingle().StoreUnsafe(ref dst, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= x.Length; i += 8)
            {
                var v = Vector128.LoadUnsafe(ref src, (nuint)i);
                Vector256.ShiftLeft(Vector256.WidenLower(v.ToVector256Unsafe()), 16).AsSingle().StoreUnsafe(ref dst, (nuint)i);
            }
        }
        for (; i < x.Length; i++)
            Unsafe.Add(ref dst, i) = BitConverter.Int32BitsToSingle(Unsafe.Add(ref src, i) << 16);
    }
}
