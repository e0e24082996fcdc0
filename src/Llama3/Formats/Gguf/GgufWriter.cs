using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Llama3.Kernels.Quant;

namespace Llama3.Formats.Gguf;

/// <summary>
/// Writes GGUF files (versions 3 and 2; both have the same little-endian layout): metadata in the order it was
/// added, then tensor infos, then tensor data, following the layout of gguf-py's <c>GGUFWriter</c> and
/// llama.cpp's <c>gguf_write_to_file</c> so that a file those tools wrote reads back and rewrites byte for byte.
/// </summary>
/// <remarks>
/// Layout (GGUF spec, ggml/docs/gguf.md): magic, version, tensor count, metadata count, metadata, tensor infos,
/// zero padding to <see cref="Alignment"/>, then each tensor's data followed by zero padding to the alignment
/// (the last tensor included). Tensor offsets are assigned in the order tensors were added, each one the previous
/// offset plus the previous size rounded up to the alignment. A file without tensors ends right after the header,
/// unpadded, as gguf-py's vocabulary-only files do (it pads only when it writes tensors).
/// Values are held by reference, not copied: do not change arrays given to the writer before <see cref="Write"/>.
/// </remarks>
public sealed class GgufWriter
{
    /// <summary>The GGUF version written unless another is asked for.</summary>
    public const uint DefaultVersion = 3;

    /// <summary>The metadata key that sets the data alignment (GGUF spec).</summary>
    public const string AlignmentKey = "general.alignment";

    /// <summary>Most array levels a metadata value may nest (the reader's limit, so written files read back).</summary>
    public const int MaxArrayDepth = 8;

    /// <summary>Longest tensor name in UTF-8 bytes: llama.cpp rejects names of <c>GGML_MAX_NAME</c> (64) bytes or more.</summary>
    public const int MaxTensorNameBytes = 63;

    private const uint Magic = 0x46554747; // "GGUF" little-endian
    private const int MaxTensorDims = 4; // GGML_MAX_DIMS

    private readonly List<string> _keys = [];
    private readonly Dictionary<string, GgufValue> _values = new(StringComparer.Ordinal);
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    /// <summary>Creates an empty writer for GGUF <paramref name="version"/> (2 or 3).</summary>
    public GgufWriter(uint version = DefaultVersion)
    {
        if (version is not (2 or 3))
            throw new ArgumentOutOfRangeException(nameof(version), version, "GGUF version must be 2 or 3");
        Version = version;
    }

    /// <summary>The GGUF version written in the header.</summary>
    public uint Version { get; }

    /// <summary>Metadata keys in the order they will be written.</summary>
    public IReadOnlyList<string> MetadataKeys => _keys;

    /// <summary>Metadata by key.</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata => _values;

    /// <summary>
    /// Data alignment: the value of <c>general.alignment</c> when set, else <see cref="GgufFile.DefaultAlignment"/>.
    /// </summary>
    public long Alignment =>
        _values.TryGetValue(AlignmentKey, out var v) && v.TryGetInt64(out long a) ? a : GgufFile.DefaultAlignment;

    /// <summary>The tensors as they will be written: names, dimensions, types, sizes and data offsets.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors
    {
        get
        {
            long alignment = Alignment;
            var infos = new List<GgufTensorInfo>(_tensors.Count);
            long offset = 0;
            foreach (var t in _tensors)
            {
                infos.Add(new GgufTensorInfo(t.Name, (long[])t.Dimensions.Clone(), t.Type, offset, t.ByteSize));
                offset += Pad(t.ByteSize, alignment);
            }
            return infos;
        }
    }

    /// <summary>
    /// Adds a metadata entry after the ones already added. <paramref name="value"/> must hold the .NET type the
    /// reader produces for its <see cref="GgufValue.Type"/> (byte for UInt8, string for String, a
    /// <see cref="GgufArray"/> whose items are a <c>T[]</c> of the element type for Array, and so on).
    /// </summary>
    /// <exception cref="ArgumentException">The key is empty or already present, or the value does not match its type.</exception>
    public void AddMetadata(string key, GgufValue value)
    {
        CheckMetadata(key, value);
        if (_values.ContainsKey(key))
            throw new ArgumentException($"metadata key '{key}' is already present", nameof(key));
        _values.Add(key, value);
        _keys.Add(key);
    }

    /// <summary>Sets a metadata entry: replaces the value in place when the key is present, else adds it at the end.</summary>
    /// <exception cref="ArgumentException">The key is empty or the value does not match its type.</exception>
    public void SetMetadata(string key, GgufValue value)
    {
        CheckMetadata(key, value);
        if (!_values.ContainsKey(key))
            _keys.Add(key);
        _values[key] = value;
    }

    /// <summary>Removes a metadata entry; returns false when the key was absent.</summary>
    public bool RemoveMetadata(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (!_values.Remove(key))
            return false;
        _keys.Remove(key);
        return true;
    }

    /// <summary>
    /// Adds a tensor after the ones already added. <paramref name="dimensions"/> are in ggml order (innermost,
    /// the row length, first); <paramref name="data"/> must be exactly the size those dimensions take in
    /// <paramref name="type"/>. The memory is read when the file is written, not copied now.
    /// </summary>
    /// <exception cref="ArgumentException">Bad name, dimensions, type or data length, or a duplicate name.</exception>
    public void AddTensor(string name, long[] dimensions, GgmlType type, ReadOnlyMemory<byte> data)
    {
        long bytes = CheckTensor(name, dimensions, type);
        if (data.Length != bytes)
            throw new ArgumentException(
                $"tensor '{name}' ({QuantTable.Get(type).Name}, {string.Join("x", dimensions)}) takes {bytes} bytes but {data.Length} were given",
                nameof(data));
        Add(new PendingTensor(name, (long[])dimensions.Clone(), type, bytes, data, null));
    }

    /// <summary>
    /// Adds a tensor whose data is produced when the file is written: <paramref name="writeData"/> is called with
    /// a write-only stream and must write exactly the tensor's size in bytes (for tensors too large to hold in
    /// memory, or copied from a mapping). Writing more or fewer bytes fails the write.
    /// </summary>
    /// <exception cref="ArgumentException">Bad name, dimensions or type, or a duplicate name.</exception>
    public void AddTensor(string name, long[] dimensions, GgmlType type, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        long bytes = CheckTensor(name, dimensions, type);
        Add(new PendingTensor(name, (long[])dimensions.Clone(), type, bytes, default, writeData));
    }

    /// <summary>
    /// A writer holding everything in <paramref name="source"/>: its version, metadata in file order and tensors
    /// in file order. Tensor data is copied from the source's mapping when the file is written, so the source must
    /// stay open until then.
    /// </summary>
    public static GgufWriter FromFile(GgufFile source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var w = new GgufWriter(source.Version);
        foreach (string key in source.MetadataKeys)
            w.AddMetadata(key, source.Metadata[key]);
        foreach (var t in source.Tensors)
        {
            var tensor = t;
            w.AddTensor(t.Name, t.Dimensions, t.Type, s => CopyTensor(source, tensor, s));
        }
        return w;
    }

    /// <summary>
    /// Writes the file to <paramref name="destination"/> from its current position; returns the bytes written.
    /// The stream needs to be writable only (no seeking).
    /// </summary>
    /// <exception cref="InvalidOperationException">A data callback wrote the wrong number of bytes.</exception>
    public long Write(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("the GGUF writer writes little-endian files from little-endian machines only");
        long alignment = Alignment;
        using var o = new Output(destination);

        o.U32(Magic);
        o.U32(Version);
        o.U64((ulong)_tensors.Count);
        o.U64((ulong)_keys.Count);
        foreach (string key in _keys)
        {
            var v = _values[key];
            o.Str(key);
            o.U32((uint)v.Type);
            WriteValue(o, v.Type, v.Value);
        }

        long offset = 0;
        foreach (var t in _tensors)
        {
            o.Str(t.Name);
            o.U32((uint)t.Dimensions.Length);
            foreach (long d in t.Dimensions)
                o.U64((ulong)d);
            o.U32((uint)t.Type);
            o.U64((ulong)offset);
            offset += Pad(t.ByteSize, alignment);
        }

        if (_tensors.Count > 0)
        {
            // GGUF spec: the data section starts at the next multiple of the alignment; gguf-py and llama.cpp
            // also pad every tensor's data (the last too) to the alignment.
            o.Zeros(Pad(o.Position, alignment) - o.Position);
            foreach (var t in _tensors)
            {
                long start = o.Position;
                if (t.WriteData is null)
                    o.Bytes(t.Data.Span);
                else
                {
                    using var s = new TensorStream(o, t.Name, t.ByteSize);
                    t.WriteData(s);
                }
                long written = o.Position - start;
                if (written != t.ByteSize)
                    throw new InvalidOperationException($"tensor '{t.Name}': {written} bytes of data were written, {t.ByteSize} expected");
                o.Zeros(Pad(t.ByteSize, alignment) - t.ByteSize);
            }
        }
        o.Flush();
        return o.Position;
    }

    /// <summary>
    /// Writes the file to <paramref name="path"/>, replacing any file there. The bytes go to a temporary file
    /// beside it that is renamed into place when complete, so a failed write leaves no partial file behind.
    /// </summary>
    public void WriteFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? ".";
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            // bufferSize 0: Output already buffers.
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0))
                Write(fs);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static long Pad(long n, long alignment) => (n + alignment - 1) / alignment * alignment;

    private void Add(PendingTensor t)
    {
        if (!_tensorNames.Add(t.Name))
            throw new ArgumentException($"tensor '{t.Name}' is already present", "name");
        _tensors.Add(t);
    }

    private static unsafe void CopyTensor(GgufFile source, GgufTensorInfo tensor, Stream destination)
    {
        byte* p = source.GetTensorPointer(tensor);
        for (long left = tensor.ByteSize; left > 0;)
        {
            int n = (int)Math.Min(left, 1 << 30);
            destination.Write(new ReadOnlySpan<byte>(p, n));
            p += n;
            left -= n;
        }
    }

    /// <summary>Checks a tensor's name, dimensions and type; returns its size in bytes.</summary>
    private long CheckTensor(string name, long[] dimensions, GgmlType type)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(dimensions);
        if (name.Length == 0)
            throw new ArgumentException("a tensor name must not be empty", nameof(name));
        int nameBytes = Encoding.UTF8.GetByteCount(name);
        if (nameBytes > MaxTensorNameBytes)
            throw new ArgumentException($"tensor '{name}' has a {nameBytes}-byte name; llama.cpp reads at most {MaxTensorNameBytes}", nameof(name));
        if (_tensorNames.Contains(name))
            throw new ArgumentException($"tensor '{name}' is already present", nameof(name));
        var q = QuantTable.Find(type)
            ?? throw new ArgumentException($"tensor '{name}' has weight type {(uint)type}, which is not known", nameof(type));
        if (dimensions.Length is 0 or > MaxTensorDims)
            throw new ArgumentException($"tensor '{name}' has {dimensions.Length} dimensions (1 to {MaxTensorDims} allowed)", nameof(dimensions));
        long elements = 1;
        for (int i = 0; i < dimensions.Length; i++)
        {
            long d = dimensions[i];
            if (d <= 0)
                throw new ArgumentException($"tensor '{name}' has dimension {i} = {d}", nameof(dimensions));
            if (elements > long.MaxValue / d)
                throw new ArgumentException($"tensor '{name}' is impossibly large ({string.Join("x", dimensions)})", nameof(dimensions));
            elements *= d;
        }
        if (dimensions[0] % q.BlockSize != 0)
            throw new ArgumentException(
                $"tensor '{name}' row length {dimensions[0]} is not a multiple of the {q.Name} block size {q.BlockSize}", nameof(dimensions));
        long blocks = elements / q.BlockSize;
        if (blocks > long.MaxValue / q.BytesPerBlock)
            throw new ArgumentException($"tensor '{name}' is impossibly large ({string.Join("x", dimensions)})", nameof(dimensions));
        return blocks * q.BytesPerBlock;
    }

    private static void CheckMetadata(string key, GgufValue value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        if (key.Length == 0)
            throw new ArgumentException("a metadata key must not be empty", nameof(key));
        CheckValue(key, value.Type, value.Value);
        if (key == AlignmentKey)
        {
            // The reader's rule: an integer power of two up to 1 MiB. (llama.cpp wants it stored as UInt32.)
            if (!value.TryGetInt64(out long a) || value.Value is bool || a <= 0 || (a & (a - 1)) != 0 || a > 1 << 20)
                throw new ArgumentException($"metadata '{AlignmentKey}' = {value} must be an integer power of two up to 1048576", nameof(value));
        }
    }

    private static void CheckValue(string key, GgufValueType type, object? value)
    {
        if (type == GgufValueType.Array)
        {
            if (value is not GgufArray array)
                throw new ArgumentException($"metadata '{key}': an Array value must be a GgufArray, not {TypeName(value)}", nameof(value));
            CheckArray(key, array, 1);
            return;
        }
        var expected = ScalarClrType(type)
            ?? throw new ArgumentException($"metadata '{key}' has unknown value type {(uint)type}", nameof(value));
        if (value is null || value.GetType() != expected)
            throw new ArgumentException($"metadata '{key}': a {type} value must be a {expected.Name}, not {TypeName(value)}", nameof(value));
    }

    private static void CheckArray(string key, GgufArray array, int depth)
    {
        if (depth > MaxArrayDepth)
            throw new ArgumentException($"metadata '{key}' nests arrays deeper than {MaxArrayDepth}", "value");
        var et = array.ElementType;
        Type expected = et switch
        {
            GgufValueType.Array => typeof(GgufArray[]),
            GgufValueType.String => typeof(string[]),
            _ => ScalarClrType(et)?.MakeArrayType()
                ?? throw new ArgumentException($"metadata '{key}' array has unknown element type {(uint)et}", "value"),
        };
        if (array.Items is null || array.Items.GetType() != expected)
            throw new ArgumentException($"metadata '{key}': an array of {et} must hold a {expected.Name}, not {TypeName(array.Items)}", "value");
        if (array.Items is string[] strings && Array.IndexOf(strings, null) >= 0)
            throw new ArgumentException($"metadata '{key}': a string array holds a null", "value");
        if (array.Items is GgufArray[] inner)
        {
            foreach (var a in inner)
            {
                if (a is null)
                    throw new ArgumentException($"metadata '{key}': an array of arrays holds a null", "value");
                CheckArray(key, a, depth + 1);
            }
        }
    }

    private static string TypeName(object? o) => o?.GetType().Name ?? "null";

    /// <summary>The .NET type the reader gives a scalar of this GGUF type (null for Array and unknown types).</summary>
    private static Type? ScalarClrType(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 => typeof(byte),
        GgufValueType.Int8 => typeof(sbyte),
        GgufValueType.UInt16 => typeof(ushort),
        GgufValueType.Int16 => typeof(short),
        GgufValueType.UInt32 => typeof(uint),
        GgufValueType.Int32 => typeof(int),
        GgufValueType.Float32 => typeof(float),
        GgufValueType.Bool => typeof(bool),
        GgufValueType.String => typeof(string),
        GgufValueType.UInt64 => typeof(ulong),
        GgufValueType.Int64 => typeof(long),
        GgufValueType.Float64 => typeof(double),
        _ => null,
    };

    private static void WriteValue(Output o, GgufValueType type, object value)
    {
        switch (value)
        {
            case byte v: o.Reserve(1)[0] = v; break;
            case sbyte v: o.Reserve(1)[0] = (byte)v; break;
            case ushort v: BinaryPrimitives.WriteUInt16LittleEndian(o.Reserve(2), v); break;
            case short v: BinaryPrimitives.WriteInt16LittleEndian(o.Reserve(2), v); break;
            case uint v: o.U32(v); break;
            case int v: BinaryPrimitives.WriteInt32LittleEndian(o.Reserve(4), v); break;
            case float v: BinaryPrimitives.WriteSingleLittleEndian(o.Reserve(4), v); break;
            case bool v: o.Reserve(1)[0] = v ? (byte)1 : (byte)0; break;
            case string v: o.Str(v); break;
            case ulong v: o.U64(v); break;
            case long v: BinaryPrimitives.WriteInt64LittleEndian(o.Reserve(8), v); break;
            case double v: BinaryPrimitives.WriteDoubleLittleEndian(o.Reserve(8), v); break;
            case GgufArray a: WriteArray(o, a); break;
            default: throw new InvalidOperationException($"value of type {type} cannot be written"); // checked when added
        }
    }

    private static void WriteArray(Output o, GgufArray a)
    {
        o.U32((uint)a.ElementType);
        o.U64((ulong)a.Items.Length);
        switch (a.Items)
        {
            case byte[] x: o.Bytes(x); break;
            case sbyte[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case ushort[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case short[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case uint[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case int[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case float[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case ulong[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case long[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case double[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case bool[] x:
                foreach (bool b in x) o.Reserve(1)[0] = b ? (byte)1 : (byte)0;
                break;
            case string[] x:
                foreach (string s in x) o.Str(s);
                break;
            case GgufArray[] x:
                foreach (var inner in x) WriteArray(o, inner);
                break;
            default: throw new InvalidOperationException($"array of {a.ElementType} cannot be written"); // checked when added
        }
    }

    private sealed record PendingTensor(
        string Name, long[] Dimensions, GgmlType Type, long ByteSize, ReadOnlyMemory<byte> Data, Action<Stream>? WriteData);

    /// <summary>A buffered little-endian sink that counts the bytes it has taken.</summary>
    private sealed class Output(Stream stream) : IDisposable
    {
        private byte[]? _buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        private int _used;

        public long Position { get; private set; }

        private byte[] Buffer => _buffer ?? throw new ObjectDisposedException(nameof(Output));

        public Span<byte> Reserve(int n)
        {
            var buffer = Buffer;
            if (buffer.Length - _used < n) Flush();
            var span = buffer.AsSpan(_used, n);
            _used += n;
            Position += n;
            return span;
        }

        public void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Reserve(4), v);

        public void U64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Reserve(8), v);

        public void Str(string s)
        {
            int n = Encoding.UTF8.GetByteCount(s);
            U64((ulong)n);
            if (n <= Buffer.Length)
            {
                Encoding.UTF8.GetBytes(s, Reserve(n));
                return;
            }
            byte[] rented = ArrayPool<byte>.Shared.Rent(n);
            try
            {
                int written = Encoding.UTF8.GetBytes(s, rented);
                Bytes(rented.AsSpan(0, written));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        public void Bytes(ReadOnlySpan<byte> data)
        {
            var buffer = Buffer;
            if (data.Length > buffer.Length - _used)
            {
                Flush();
                if (data.Length >= buffer.Length)
                {
                    stream.Write(data); // large blocks (tensor data) go straight through
                    Position += data.Length;
                    return;
                }
            }
            data.CopyTo(buffer.AsSpan(_used));
            _used += data.Length;
            Position += data.Length;
        }

        public void Zeros(long n)
        {
            while (n > 0)
            {
                int k = (int)Math.Min(n, Buffer.Length);
                Reserve(k).Clear();
                n -= k;
            }
        }

        public void Flush()
        {
            if (_used == 0) return;
            stream.Write(Buffer, 0, _used);
            _used = 0;
        }

        public void Dispose()
        {
            if (_buffer is null) return;
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }
    }

    /// <summary>The write-only stream a tensor's data callback writes to; refuses bytes past the tensor's size.</summary>
    private sealed class TensorStream(Output output, string name, long size) : Stream
    {
        private long _written;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => _written;
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (buffer.Length > size - _written)
                throw new InvalidOperationException($"tensor '{name}': more than its {size} bytes of data were written");
            output.Bytes(buffer);
            _written += buffer.Length;
        }

        public override void WriteByte(byte value) => Write([value]);

        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
