using System.IO.MemoryMappedFiles;

namespace Llama3.Formats;

/// <summary>A whole file mapped read-only; the bytes stay valid until disposal.</summary>
public sealed unsafe class MappedFile : IFileMapping, IDisposable
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
    public bool Maps(byte* start, long bytes) =>
        !_disposed && start >= Pointer && bytes >= 0 && start - Pointer <= Length - bytes;

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

/// <summary>A file mapped into memory: whether a range of bytes lies in it.</summary>
public unsafe interface IFileMapping
{
    /// <summary>Whether <paramref name="bytes"/> bytes at <paramref name="start"/> lie in this file's mapping.</summary>
    bool Maps(byte* start, long bytes);
}

/// <summary>Pages of a file mapping given back to the system.</summary>
public static unsafe class MappedPages
{
    /// <summary>
    /// Drops the whole pages within <paramref name="bytes"/> bytes at <paramref name="start"/>, which must lie in a
    /// read-only file mapping, from this process's resident memory where the system allows it (Linux and macOS): the
    /// bytes stay what the file holds, in the page cache, and the next access reads them back. For data the engine
    /// holds in another form (a packed copy). Returns whether pages were released.
    /// </summary>
    public static bool Release(byte* start, long bytes)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return false;
        const long page = 4096;
        long first = ((long)start + page - 1) & ~(page - 1), end = ((long)start + bytes) & ~(page - 1);
        if (end <= first) return false;
        try
        {
            return Madvise((void*)first, (nuint)(end - first), MadviseDontNeed) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    private const int MadviseDontNeed = 4; // MADV_DONTNEED on Linux and macOS

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "madvise")]
    private static extern int Madvise(void* address, nuint length, int advice);
}
