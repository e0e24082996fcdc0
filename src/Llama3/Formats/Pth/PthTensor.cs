namespace Llama3.Formats.Pth;

/// <summary>Element types of PyTorch storages (the <c>torch.XStorage</c> classes torch.save names).</summary>
public enum PthDType
{
    /// <summary><c>torch.float64</c> (DoubleStorage).</summary>
    Float64,
    /// <summary><c>torch.float32</c> (FloatStorage).</summary>
    Float32,
    /// <summary><c>torch.float16</c> (HalfStorage).</summary>
    Float16,
    /// <summary><c>torch.bfloat16</c> (BFloat16Storage).</summary>
    BFloat16,
    /// <summary><c>torch.int64</c> (LongStorage).</summary>
    Int64,
    /// <summary><c>torch.int32</c> (IntStorage).</summary>
    Int32,
    /// <summary><c>torch.int16</c> (ShortStorage).</summary>
    Int16,
    /// <summary><c>torch.int8</c> (CharStorage).</summary>
    Int8,
    /// <summary><c>torch.uint8</c> (ByteStorage).</summary>
    UInt8,
    /// <summary><c>torch.bool</c> (BoolStorage), one byte per element.</summary>
    Bool,
}

/// <summary>
/// A tensor of a PyTorch checkpoint: a strided view of a storage, as <c>torch._utils._rebuild_tensor_v2</c>
/// describes it. Element <c>[i0, i1, ...]</c> is storage element <c>StorageOffset + i0 * Strides[0] + i1 * Strides[1] + ...</c>.
/// </summary>
/// <param name="Name">State dict key (e.g. <c>layers.0.attention.wq.weight</c>).</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Sizes, outermost first (PyTorch order: a linear layer's weight is <c>[out, in]</c>).</param>
/// <param name="Strides">Stride of each dimension, in elements.</param>
/// <param name="StorageOffset">Offset of the first element in the storage, in elements.</param>
/// <param name="StorageKey">The storage's key: its bytes are the archive entry <c>data/StorageKey</c>.</param>
public sealed record PthTensor(string Name, PthDType DType, long[] Shape, long[] Strides, long StorageOffset, string StorageKey)
{
    /// <summary>Bytes per element.</summary>
    public int ElementSize => SizeOf(DType);

    /// <summary>Number of elements (1 for a scalar).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);

    /// <summary>Bytes of the tensor's elements (contiguous ones occupy exactly this many bytes of the storage).</summary>
    public long ByteSize => ElementCount * ElementSize;

    /// <summary>
    /// Whether the elements are laid out row-major without gaps (strides are the suffix products of the shape), so
    /// the tensor is one run of <see cref="ByteSize"/> bytes. As <c>torch.Tensor.is_contiguous</c>, the stride of a
    /// dimension of size 1 does not matter, and an empty tensor is contiguous.
    /// </summary>
    public bool IsContiguous
    {
        get
        {
            if (Shape.Any(d => d == 0)) return true;
            long expected = 1;
            for (int i = Shape.Length - 1; i >= 0; i--)
            {
                if (Shape[i] != 1 && Strides[i] != expected) return false;
                expected *= Shape[i];
            }
            return true;
        }
    }

    /// <summary>Bytes per element of <paramref name="type"/>.</summary>
    public static int SizeOf(PthDType type) => type switch
    {
        PthDType.Float64 or PthDType.Int64 => 8,
        PthDType.Float32 or PthDType.Int32 => 4,
        PthDType.Float16 or PthDType.BFloat16 or PthDType.Int16 => 2,
        PthDType.Int8 or PthDType.UInt8 or PthDType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown element type"),
    };

    /// <summary>The shape as PyTorch prints it, e.g. <c>[128256, 32]</c>.</summary>
    internal static string Format(long[] dims) => "[" + string.Join(", ", dims) + "]";

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {DType} {Format(Shape)}" + (IsContiguous ? "" : $" strides {Format(Strides)}");
}
