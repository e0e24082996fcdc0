using Llama3.Kernels.Quant;

namespace Llama3.Model;

/// <summary>
/// A weight tensor as the engine sees it: Meta's name, its stored type and a row-major shape (<c>[out, in]</c> for a
/// linear layer, as <c>nn.Linear.weight</c>), with its bytes in place in the file's memory mapping (or, for merged
/// shards, in one native buffer owned by <see cref="ModelFiles"/>).
/// </summary>
public sealed unsafe class WeightTensor
{
    internal WeightTensor(string name, string sourceName, GgmlType type, long[] shape, byte* data, long byteSize)
    {
        Name = name;
        SourceName = sourceName;
        Type = type;
        Shape = shape;
        Data = data;
        ByteSize = byteSize;
    }

    /// <summary>Meta's name, e.g. <c>layers.0.attention.wq.weight</c>.</summary>
    public string Name { get; }

    /// <summary>The name in the file it came from (e.g. <c>blk.0.attn_q.weight</c>).</summary>
    public string SourceName { get; }

    /// <summary>The stored weight type.</summary>
    public GgmlType Type { get; }

    /// <summary>Row-major shape.</summary>
    public long[] Shape { get; }

    /// <summary>Rows (the first dimension; 1 for a vector).</summary>
    public long Rows => Shape.Length == 1 ? 1 : Shape[0];

    /// <summary>Elements per row (the last dimension).</summary>
    public long Columns => Shape[^1];

    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);

    /// <summary>The first byte.</summary>
    public byte* Data { get; }

    /// <summary>Bytes of data.</summary>
    public long ByteSize { get; }

    /// <summary>Bytes per row.</summary>
    public long RowBytes => ByteSize / Rows;

    /// <summary>The bytes (for tensors under 2 GiB).</summary>
    public ReadOnlySpan<byte> Bytes => new(Data, checked((int)ByteSize));

    /// <summary>The bytes of one row.</summary>
    public ReadOnlySpan<byte> Row(long row) => new(Data + row * RowBytes, checked((int)RowBytes));

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {QuantTable.Get(Type).Name} [{string.Join(", ", Shape)}]";
}
