using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;
using Llama3.Kernels.Quant;

namespace Llama3.Formats.Gguf;

/// <summary>A tensor's entry in a GGUF file's header.</summary>
/// <param name="Name">Tensor name (e.g. <c>blk.0.attn_q.weight</c>).</param>
/// <param name="Dimensions">ggml order: <c>Dimensions[0]</c> is the innermost (row length).</param>
/// <param name="Type">Weight type.</param>
/// <param name="Offset">Offset of the data from the start of the data section.</param>
/// <param name="ByteSize">Bytes of data.</param>
public sealed record GgufTensorInfo(string Name, long[] Dimensions, GgmlType Type, long Offset, long ByteSize)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Dimensions.Aggregate(1L, (a, d) => a * d);
}

/// <summary>
/// A GGUF file (versions 2 and 3), memory-mapped: metadata parsed once, tensors exposed as views into the mapping.
/// Layout per the GGUF spec (ggml/docs/gguf.md): magic, version, tensor count, metadata count, metadata,
/// tensor infos, padding to <c>general.alignment</c>, tensor data.
/// </summary>
public sealed unsafe class GgufFile : IFileMapping, IDisposable
{
    /// <summary>The default alignment when <c>general.alignment</c> is absent (GGUF spec).</summary>
    public const int DefaultAlignment = 32;

    private readonly MemoryMappedFile? _mmf;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly Dictionary<string, GgufTensorInfo> _byName;
    private bool _disposed;

    private GgufFile(string path, MemoryMappedFile? mmf, MemoryMappedViewAccessor? view, byte* basePtr, long length,
        uint version, Dictionary<string, GgufValue> metadata, List<string> keyOrder, List<GgufTensorInfo> tensors,
        long alignment, long dataOffset)
    {
        FilePath = path;
        _mmf = mmf;
        _view = view;
        _base = basePtr;
        FileLength = length;
        Version = version;
        Metadata = metadata;
        MetadataKeys = keyOrder;
        Tensors = tensors;
        Alignment = alignment;
        DataOffset = dataOffset;
        _byName = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        foreach (var t in tensors)
            if (!_byName.TryAdd(t.Name, t))
                throw new ModelFormatException(path, $"tensor '{t.Name}' appears twice");
    }

    /// <summary>The file's path.</summary>
    public string FilePath { get; }

    /// <summary>The file's size in bytes.</summary>
    public long FileLength { get; }

    /// <summary>GGUF version (2 or 3).</summary>
    public uint Version { get; }

    /// <summary>Metadata by key.</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }

    /// <summary>Metadata keys in file order.</summary>
    public IReadOnlyList<string> MetadataKeys { get; }

    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Alignment of tensor data.</summary>
    public long Alignment { get; }

    /// <summary>Absolute offset of the data section.</summary>
    public long DataOffset { get; }

    /// <inheritdoc/>
    public bool Maps(byte* start, long bytes) =>
        _mmf != null && !_disposed && start >= _base && bytes >= 0 && start - _base <= FileLength - bytes;

    /// <summary>Opens and parses a GGUF file. Throws <see cref="ModelFormatException"/> naming the file and problem.</summary>
    public static GgufFile Open(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: file not found", path);
        long length = new FileInfo(path).Length;
        if (length < 24)
            throw new ModelFormatException(path, $"too short for a GGUF file ({length} bytes)");
        var mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            return Parse(path, mmf, view, p, length);
        }
        catch
        {
            if (view != null)
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }
            mmf.Dispose();
            throw;
        }
    }

    /// <summary>Parses GGUF bytes already in memory (the bytes must stay pinned for the object's lifetime).</summary>
    internal static GgufFile Parse(string path, MemoryMappedFile? mmf, MemoryMappedViewAccessor? view, byte* p, long length)
    {
        var r = new Reader(path, p, length);
        uint magic = r.U32();
        if (magic != 0x46554747) // "GGUF" little-endian
            throw new ModelFormatException(path, "not a GGUF file (bad magic)");
        uint version = r.U32();
        if (version is not (2 or 3))
            throw new ModelFormatException(path, $"GGUF version {version} is not supported (2 and 3 are)");
        long tensorCount = r.Count("tensor count", 8 + 4 + 4 + 8);
        long kvCount = r.Count("metadata count", 8 + 4);

        var metadata = new Dictionary<string, GgufValue>(StringComparer.Ordinal);
        var order = new List<string>();
        for (long i = 0; i < kvCount; i++)
        {
            string key = r.Str();
            var type = (GgufValueType)r.U32();
            var value = r.Value(type, key, 0);
            if (!metadata.TryAdd(key, value))
                throw new ModelFormatException(path, $"metadata key '{key}' appears twice");
            order.Add(key);
        }

        long alignment = DefaultAlignment;
        if (metadata.TryGetValue("general.alignment", out var a))
        {
            if (!a.TryGetInt64(out alignment) || alignment <= 0 || (alignment & (alignment - 1)) != 0 || alignment > 1 << 20)
                throw new ModelFormatException(path, $"general.alignment = {a} is not a power of two");
        }

        var infos = new List<(string Name, long[] Dims, GgmlType Type, long Offset)>();
        for (long i = 0; i < tensorCount; i++)
        {
            string name = r.Str();
            uint nDims = r.U32();
            if (nDims is 0 or > 4)
                throw new ModelFormatException(path, $"tensor '{name}' has {nDims} dimensions (1 to 4 allowed)");
            var dims = new long[nDims];
            for (int d = 0; d < nDims; d++)
            {
                ulong v = r.U64();
                if (v == 0 || v > int.MaxValue)
                    throw new ModelFormatException(path, $"tensor '{name}' has dimension {d} = {v}");
                dims[d] = (long)v;
            }
            var type = (GgmlType)r.U32();
            ulong off = r.U64();
            if (off > (ulong)length)
                throw new ModelFormatException(path, $"tensor '{name}' offset {off} is past the end of the file");
            infos.Add((name, dims, type, (long)off));
        }

        long dataOffset = (r.Position + alignment - 1) / alignment * alignment;
        var tensors = new List<GgufTensorInfo>(infos.Count);
        foreach (var (name, dims, type, offset) in infos)
        {
            var q = QuantTable.Find(type)
                ?? throw new ModelFormatException(path, $"tensor '{name}' has weight type {(uint)type}, which this reader does not know");
            long elements = 1;
            foreach (long d in dims)
            {
                // Compare before multiplying: 2^40 x (2^31 - 1) would overflow 64 bits and wrap to a negative size.
                if (d > (1L << 40) / elements)
                    throw new ModelFormatException(path, $"tensor '{name}' is impossibly large ({string.Join("x", dims)})");
                elements *= d;
            }
            if (dims[0] % q.BlockSize != 0)
                throw new ModelFormatException(path, $"tensor '{name}' row length {dims[0]} is not a multiple of the {q.Name} block size {q.BlockSize}");
            long bytes = elements / q.BlockSize * q.BytesPerBlock;
            if (offset % alignment != 0)
                throw new ModelFormatException(path, $"tensor '{name}' offset {offset} is not aligned to {alignment}");
            if (dataOffset + offset + bytes > length)
                throw new ModelFormatException(path, $"tensor '{name}' ({q.Name}, {bytes} bytes at {offset}) runs past the end of the file (truncated?)");
            tensors.Add(new GgufTensorInfo(name, dims, type, offset, bytes));
        }

        return new GgufFile(path, mmf, view, p, length, version, metadata, order, tensors, alignment, dataOffset);
    }

    /// <summary>The tensor named <paramref name="name"/>, or null.</summary>
    public GgufTensorInfo? FindTensor(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The raw bytes of a tensor: a view into the mapping, valid while this object is alive.</summary>
    public ReadOnlySpan<byte> GetTensorBytes(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new ReadOnlySpan<byte>(_base + DataOffset + tensor.Offset, checked((int)tensor.ByteSize));
    }

    /// <summary>A pointer to a tensor's bytes inside the mapping (for kernels that read more than 2 GiB).</summary>
    public byte* GetTensorPointer(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _base + DataOffset + tensor.Offset;
    }

    /// <summary>The metadata value for <paramref name="key"/>, or null.</summary>
    public GgufValue? Find(string key) => Metadata.GetValueOrDefault(key);

    /// <summary>A string value, or null when absent; an error when present with another type.</summary>
    public string? GetString(string key) => Find(key) switch
    {
        null => null,
        { Value: string s } => s,
        var v => throw new ModelFormatException(FilePath, $"metadata '{key}' should be a string but is {v.Type}"),
    };

    /// <summary>An integer value, or null when absent; an error when present and not an integer.</summary>
    public long? GetInt64(string key)
    {
        var v = Find(key);
        if (v is null) return null;
        if (!v.TryGetInt64(out long l))
            throw new ModelFormatException(FilePath, $"metadata '{key}' should be an integer but is {v.Type}");
        return l;
    }

    /// <summary>A numeric value, or null when absent.</summary>
    public double? GetDouble(string key)
    {
        var v = Find(key);
        if (v is null) return null;
        if (!v.TryGetDouble(out double d))
            throw new ModelFormatException(FilePath, $"metadata '{key}' should be a number but is {v.Type}");
        return d;
    }

    /// <summary>A boolean value, or null when absent.</summary>
    public bool? GetBool(string key) => Find(key) switch
    {
        null => null,
        { Value: bool b } => b,
        var v => throw new ModelFormatException(FilePath, $"metadata '{key}' should be a bool but is {v.Type}"),
    };

    /// <summary>An array value of element type <typeparamref name="T"/>, or null when absent.</summary>
    public T[]? GetArray<T>(string key)
    {
        var v = Find(key);
        if (v is null) return null;
        if (v.Value is GgufArray { Items: T[] items })
            return items;
        throw new ModelFormatException(FilePath, $"metadata '{key}' should be an array of {typeof(T).Name} but is {v}");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _mmf?.Dispose();
    }

    /// <summary>A bounds-checked little-endian cursor: every read checks what is left, so a fuzzed file cannot overrun.</summary>
    private struct Reader(string path, byte* p, long length)
    {
        private const int MaxDepth = 8;
        private long _pos;

        public readonly long Position => _pos;

        private readonly ModelFormatException Truncated(string what) =>
            new(path, $"truncated: {what} at byte {_pos} runs past the end of the file ({length} bytes)");

        private byte* Take(long n, string what)
        {
            if (n < 0 || n > length - _pos) throw Truncated(what);
            byte* at = p + _pos;
            _pos += n;
            return at;
        }

        public uint U32() => *(uint*)Take(4, "a 32-bit value");
        public ulong U64() => *(ulong*)Take(8, "a 64-bit value");

        /// <summary>A count whose items take at least <paramref name="minItemBytes"/> each: rejects counts the file cannot hold.</summary>
        public long Count(string what, int minItemBytes)
        {
            ulong n = U64();
            if (n > (ulong)((length - _pos) / Math.Max(1, minItemBytes)))
                throw new ModelFormatException(path, $"{what} {n} cannot fit in the file ({length} bytes)");
            return (long)n;
        }

        public string Str()
        {
            ulong n = U64();
            if (n > (ulong)(length - _pos)) throw Truncated($"a string of {n} bytes");
            if (n > int.MaxValue) // fits in a file over 2 GiB, but not in a span or a .NET string
                throw new ModelFormatException(path, $"a string of {n} bytes at byte {_pos} is too long");
            var bytes = new ReadOnlySpan<byte>(Take((long)n, "a string"), (int)n);
            return Encoding.UTF8.GetString(bytes);
        }

        public GgufValue Value(GgufValueType type, string key, int depth) => type switch
        {
            GgufValueType.UInt8 => new(type, *Take(1, key)),
            GgufValueType.Int8 => new(type, *(sbyte*)Take(1, key)),
            GgufValueType.UInt16 => new(type, *(ushort*)Take(2, key)),
            GgufValueType.Int16 => new(type, *(short*)Take(2, key)),
            GgufValueType.UInt32 => new(type, *(uint*)Take(4, key)),
            GgufValueType.Int32 => new(type, *(int*)Take(4, key)),
            GgufValueType.Float32 => new(type, *(float*)Take(4, key)),
            GgufValueType.Bool => new(type, BoolAt(Take(1, key), key)),
            GgufValueType.String => new(type, Str()),
            GgufValueType.UInt64 => new(type, *(ulong*)Take(8, key)),
            GgufValueType.Int64 => new(type, *(long*)Take(8, key)),
            GgufValueType.Float64 => new(type, *(double*)Take(8, key)),
            GgufValueType.Array => new(type, ArrayValue(key, depth)),
            _ => throw new ModelFormatException(path, $"metadata '{key}' has unknown value type {(uint)type}"),
        };

        private readonly bool BoolAt(byte* b, string key) => *b switch
        {
            0 => false,
            1 => true,
            _ => throw new ModelFormatException(path, $"metadata '{key}' bool has value {*b}"),
        };

        private GgufArray ArrayValue(string key, int depth)
        {
            if (depth >= MaxDepth)
                throw new ModelFormatException(path, $"metadata '{key}' nests arrays deeper than {MaxDepth}");
            var et = (GgufValueType)U32();
            int size = ScalarSize(et);
            long count = Count($"metadata '{key}' array length", size == 0 ? 8 : size);
            if (count > int.MaxValue)
                throw new ModelFormatException(path, $"metadata '{key}' array length {count} is too large");
            int n = (int)count;
            switch (et)
            {
                case GgufValueType.UInt8: return new(et, Copy<byte>(n, key));
                case GgufValueType.Int8: return new(et, Copy<sbyte>(n, key));
                case GgufValueType.UInt16: return new(et, Copy<ushort>(n, key));
                case GgufValueType.Int16: return new(et, Copy<short>(n, key));
                case GgufValueType.UInt32: return new(et, Copy<uint>(n, key));
                case GgufValueType.Int32: return new(et, Copy<int>(n, key));
                case GgufValueType.Float32: return new(et, Copy<float>(n, key));
                case GgufValueType.UInt64: return new(et, Copy<ulong>(n, key));
                case GgufValueType.Int64: return new(et, Copy<long>(n, key));
                case GgufValueType.Float64: return new(et, Copy<double>(n, key));
                case GgufValueType.Bool:
                {
                    var items = new bool[n];
                    for (int i = 0; i < n; i++) items[i] = BoolAt(Take(1, key), key);
                    return new(et, items);
                }
                case GgufValueType.String:
                {
                    var items = new string[n];
                    for (int i = 0; i < n; i++) items[i] = Str();
                    return new(et, items);
                }
                case GgufValueType.Array:
                {
                    var items = new GgufArray[n];
                    for (int i = 0; i < n; i++) items[i] = ArrayValue(key, depth + 1);
                    return new(et, items);
                }
                default:
                    throw new ModelFormatException(path, $"metadata '{key}' array has unknown element type {(uint)et}");
            }
        }

        private T[] Copy<T>(int n, string key) where T : unmanaged
        {
            long bytes = (long)n * sizeof(T);
            byte* src = Take(bytes, $"metadata '{key}' array");
            var items = new T[n];
            new ReadOnlySpan<T>(src, n).CopyTo(items);
            return items;
        }

        internal static int ScalarSize(GgufValueType t) => t switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
            _ => 0, // strings and arrays: at least an 8-byte length each
        };
    }
}
