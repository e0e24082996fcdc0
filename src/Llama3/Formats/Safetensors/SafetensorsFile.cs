using System.Text.Json;

namespace Llama3.Formats.Safetensors;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">The header's dtype string (BF16, F16, F32, ...).</param>
/// <param name="Shape">Row-major shape.</param>
/// <param name="Offset">Absolute offset of the data in the file.</param>
/// <param name="ByteSize">Bytes of data.</param>
public sealed record SafetensorsTensor(string Name, string DType, long[] Shape, long Offset, long ByteSize)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>
/// A safetensors file, memory-mapped (format: 8-byte little-endian header length, a JSON header
/// <c>{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}</c>, then the data).
/// </summary>
public sealed unsafe class SafetensorsFile : IFileMapping, IDisposable
{
    private const long MaxHeaderBytes = 100 << 20;
    private readonly MappedFile _file;
    private readonly Dictionary<string, SafetensorsTensor> _byName;

    private SafetensorsFile(MappedFile file, List<SafetensorsTensor> tensors, Dictionary<string, string> metadata)
    {
        _file = file;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The file's path.</summary>
    public string FilePath => _file.FilePath;

    /// <inheritdoc/>
    public bool Maps(byte* start, long bytes) => _file.Maps(start, bytes);

    /// <summary>The file's size.</summary>
    public long FileLength => _file.Length;

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafetensorsTensor> Tensors { get; }

    /// <summary>The header's <c>__metadata__</c> strings.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Bytes per element of a dtype, or 0 when unknown.</summary>
    public static int ElementSize(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
        _ => 0,
    };

    /// <summary>Opens and validates a safetensors file.</summary>
    public static SafetensorsFile Open(string path)
    {
        var file = MappedFile.Open(path);
        try
        {
            return Parse(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static SafetensorsFile Parse(MappedFile file)
    {
        string path = file.FilePath;
        if (file.Length < 8) throw new ModelFormatException(path, $"too short for a safetensors file ({file.Length} bytes)");
        ulong headerLen = *(ulong*)file.Pointer;
        if (headerLen > (ulong)(file.Length - 8) || headerLen > MaxHeaderBytes)
            throw new ModelFormatException(path, $"header length {headerLen} is larger than the file allows (not a safetensors file?)");
        long dataStart = 8 + (long)headerLen;
        JsonDocument doc;
        var header = file.Span(8, (int)headerLen);
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw new ModelFormatException(path, "the header is not UTF-8 text (not a safetensors file?)");
        try
        {
            doc = JsonDocument.Parse(new ReadOnlyMemory<byte>(header.ToArray()), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"the header is not valid JSON ({e.Message})");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "the header is not a JSON object");
            var tensors = new List<SafetensorsTensor>();
            var metadata = new Dictionary<string, string>();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__")
                {
                    if (p.Value.ValueKind == JsonValueKind.Object)
                        foreach (var m in p.Value.EnumerateObject())
                            metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors.Add(ParseTensor(path, p, dataStart, file.Length));
            }
            // Tensors must not overlap (the format's rule); check by sorting the ranges.
            var sorted = tensors.OrderBy(t => t.Offset).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Offset < sorted[i - 1].Offset + sorted[i - 1].ByteSize)
                    throw new ModelFormatException(path, $"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap");
            return new SafetensorsFile(file, tensors, metadata);
        }
    }

    private static SafetensorsTensor ParseTensor(string path, JsonProperty p, long dataStart, long fileLength)
    {
        var v = p.Value;
        if (v.ValueKind != JsonValueKind.Object || !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new ModelFormatException(path, $"tensor '{p.Name}' needs dtype, shape and data_offsets [begin, end]");
        string dtype = dt.GetString()!;
        int size = ElementSize(dtype);
        if (size == 0) throw new ModelFormatException(path, $"tensor '{p.Name}' has unknown dtype '{dtype}'");
        if (sh.GetArrayLength() > 8) throw new ModelFormatException(path, $"tensor '{p.Name}' has {sh.GetArrayLength()} dimensions");
        var shape = new long[sh.GetArrayLength()];
        long elements = 1;
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (!d.TryGetInt64(out long n) || n < 0 || n > fileLength)
                throw new ModelFormatException(path, $"tensor '{p.Name}' has an invalid dimension {d.GetRawText()}");
            shape[k++] = n;
            elements = n == 0 ? 0 : elements > fileLength / n ? fileLength + 1 : elements * n;
        }
        if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new ModelFormatException(path, $"tensor '{p.Name}' has invalid data_offsets");
        if (end > fileLength - dataStart)
            throw new ModelFormatException(path, $"tensor '{p.Name}' data ({begin}..{end}) runs past the end of the file (truncated?)");
        if (elements > fileLength || elements * size != end - begin)
            throw new ModelFormatException(path, $"tensor '{p.Name}' has {end - begin} bytes, but {dtype} [{string.Join(", ", shape)}] needs {elements * size}");
        return new SafetensorsTensor(p.Name, dtype, shape, dataStart + begin, end - begin);
    }

    /// <summary>The tensor named <paramref name="name"/>, or null.</summary>
    public SafetensorsTensor? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>A pointer to a tensor's bytes in the mapping.</summary>
    public byte* GetPointer(SafetensorsTensor t) => _file.Pointer + t.Offset;

    /// <summary>A tensor's bytes (under 2 GiB).</summary>
    public ReadOnlySpan<byte> GetBytes(SafetensorsTensor t) => _file.Span(t.Offset, checked((int)t.ByteSize));

    /// <inheritdoc/>
    public void Dispose() => _file.Dispose();
}
