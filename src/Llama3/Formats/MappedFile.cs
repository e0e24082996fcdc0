using System.IO.MemoryMappedFiles;

namespace Llama3.Formats;

/// <summary>A whole file mapped read-only; the bytes stay valid until disposal.</summary>
public sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _mmf;
    private readonly MemoryMappedViewAccessor _view;
    private bool _disposed;

    private MappedFile(string path, MemoryMappedFile mmf, MemoryMappedViewAccessor view, byte* pointer, long length)
    {
        FilePath = path;
        _mmf = mmf;
        _view = view;
        Pointer = pointer;
        Length = length;
    }

    /// <summary>The file's path.</summary>
    public string FilePath { get; }

    /// <summary>The first byte of the mapping.</summary>
    public byte* Pointer { get; }

    /// <summary>The file's length.</summary>
    public long Length { get; }

    /// <summary>Maps <paramref name="path"/>; an empty file is an error naming the file.</summary>
    public static MappedFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        long length = new FileInfo(path).Length;
        if (length == 0) throw new ModelFormatException(path, "the file is empty");
        var mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            return new MappedFile(path, mmf, view, p + view.PointerOffset, length);
        }
        catch
        {
            mmf.Dispose();
            throw;
        }
    }

    /// <summary>A span over <paramref name="length"/> bytes at <paramref name="offset"/>, bounds-checked.</summary>
    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{FilePath}: bytes {offset}..{offset + length} are outside the file");
        return new ReadOnlySpan<byte>(Pointer + offset, length);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mmf.Dispose();
    }
}
