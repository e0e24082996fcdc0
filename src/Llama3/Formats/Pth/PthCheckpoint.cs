using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Llama3.Formats.Pth;

/// <summary>
/// A PyTorch checkpoint written by <c>torch.save(state_dict)</c> (the zip format of PyTorch 1.6 and later), such as
/// Meta's <c>consolidated.NN.pth</c>; memory-mapped, with tensors exposed as views into the mapping.
/// The archive holds <c>NAME/data.pkl</c> (the pickled state dict, whose tensors name their storages by key),
/// <c>NAME/data/KEY</c> (each storage's raw little-endian bytes, stored uncompressed and aligned to 64 bytes) and
/// <c>NAME/version</c>. The pickle is read by a small unpickler that never runs code (see <see cref="Unpickler"/>).
/// </summary>
public sealed unsafe class PthCheckpoint : IDisposable
{
    /// <summary>The most bytes a compressed entry may inflate to (data.pkl is a few KB; torch never compresses tensors).</summary>
    internal const long MaxInflatedBytes = 1L << 30;

    /// <summary>The most bytes of pickle read: thousands of times what a state dict of the largest model needs.</summary>
    internal const long MaxPickleBytes = 64L << 20;

    private readonly MemoryMappedFile? _mmf;
    private readonly MemoryMappedViewAccessor? _view;
    private GCHandle _pin;
    private readonly ZipDirectory _zip;
    private readonly Dictionary<string, PthTensor> _byName;
    private readonly Dictionary<string, Storage> _storages;
    private bool _disposed;

    /// <summary>Where a storage's bytes are: in the mapping (stored), or in an inflated pinned array (deflated).</summary>
    private readonly struct Storage(byte* pointer, long byteLength, long fileOffset, byte[]? inflated)
    {
        public byte* Pointer { get; } = pointer;
        public long ByteLength { get; } = byteLength;
        public long FileOffset { get; } = fileOffset; // -1 when inflated
        public byte[]? Inflated { get; } = inflated; // keeps the pinned array alive
    }

    private PthCheckpoint(string path, MemoryMappedFile? mmf, MemoryMappedViewAccessor? view, GCHandle pin, ZipDirectory zip,
        string archiveName, List<PthTensor> tensors, Dictionary<string, Storage> storages)
    {
        FilePath = path;
        _mmf = mmf;
        _view = view;
        _pin = pin;
        _zip = zip;
        ArchiveName = archiveName;
        Tensors = tensors;
        _storages = storages;
        _byName = new Dictionary<string, PthTensor>(tensors.Count, StringComparer.Ordinal);
        foreach (var t in tensors)
            _byName.Add(t.Name, t); // unique: they were dict keys
    }

    /// <summary>The file's path.</summary>
    public string FilePath { get; }

    /// <summary>The file's size in bytes.</summary>
    public long FileLength => _zip.Length;

    /// <summary>The archive's top folder (torch.save names it after the file: <c>consolidated.00</c>, <c>archive</c>, ...).</summary>
    public string ArchiveName { get; }

    /// <summary>Tensors in the state dict's order (the order of its keys in the file).</summary>
    public IReadOnlyList<PthTensor> Tensors { get; }

    /// <summary>Opens and parses a checkpoint. Throws <see cref="ModelFormatException"/> naming the file and problem.</summary>
    public static PthCheckpoint Open(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: file not found", path);
        long length = new FileInfo(path).Length;
        if (length < 22) // an empty file cannot even be mapped
            throw new ModelFormatException(path, $"too short for a zip archive ({length} bytes)");
        var mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            view = mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            acquired = true;
            p += view.PointerOffset;
            return Parse(path, mmf, view, default, p, length);
        }
        catch
        {
            if (view != null)
            {
                if (acquired) view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }
            mmf.Dispose();
            throw;
        }
    }

    /// <summary>Parses a checkpoint held in memory (for tests: the array is pinned until disposal).</summary>
    internal static PthCheckpoint FromBytes(string path, byte[] bytes)
    {
        var pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        try
        {
            return Parse(path, null, null, pin, (byte*)pin.AddrOfPinnedObject(), bytes.Length);
        }
        catch
        {
            pin.Free();
            throw;
        }
    }

    private static PthCheckpoint Parse(string path, MemoryMappedFile? mmf, MemoryMappedViewAccessor? view, GCHandle pin, byte* p, long length)
    {
        var zip = ZipDirectory.Read(path, p, length);

        // torch.save puts every record under one folder, named after the file; its reader takes the folder from
        // the first entry. Find the one data.pkl directly inside a folder.
        var pickles = zip.Entries.Where(e => e.Name.EndsWith("/data.pkl", StringComparison.Ordinal)
            && e.Name.IndexOf('/') == e.Name.Length - "/data.pkl".Length && e.Name.Length > "/data.pkl".Length).ToList();
        if (pickles.Count == 0)
            throw new ModelFormatException(path, "a zip archive, but not a torch.save checkpoint: it has no FOLDER/data.pkl");
        if (pickles.Count > 1)
            throw new ModelFormatException(path, $"the archive has {pickles.Count} data.pkl files ({string.Join(", ", pickles.Take(4).Select(e => Unpickler.Printable(e.Name)))})");
        var pkl = pickles[0];
        string archive = pkl.Name[..^"/data.pkl".Length];

        // Since PyTorch 2.1 the archive says its byte order; older ones are little-endian.
        if (zip.Find(archive + "/byteorder") is { } bo)
        {
            string order = Encoding.ASCII.GetString(EntryBytes(zip, bo, p, 64)).Trim();
            if (order != "little")
                throw new ModelFormatException(path, $"the tensor data is '{Unpickler.Printable(order)}'-endian ({bo.Name}); only little-endian checkpoints are supported");
        }

        // The pickle: verified against its CRC (cheap, and a corrupt pickle would otherwise fail confusingly).
        ReadOnlySpan<byte> pickle = EntryBytes(zip, pkl, p, MaxPickleBytes);
        zip.CheckCrc(pkl, pickle);
        object root;
        fixed (byte* pp = pickle)
            root = Unpickler.Load(path, pkl.Name, pp, pickle.Length);

        if (root is not PyDict dict)
            throw new ModelFormatException(path, $"{pkl.Name} holds {Unpickler.Describe(root)}, not a state dict (a dict of tensors)");

        var tensors = new List<PthTensor>(dict.Items.Count);
        var storages = new Dictionary<string, Storage>(StringComparer.Ordinal);
        foreach (var (key, value) in dict.Items)
        {
            if (key is not string name)
                throw new ModelFormatException(path, $"{pkl.Name}: the state dict has a key {Unpickler.Describe(key)}, not a string");
            if (value is not PyTensor t)
                throw new ModelFormatException(path, $"{pkl.Name}: '{Unpickler.Printable(name)}' is {Unpickler.Describe(value)}, not a tensor; this reader takes a state dict of tensors");
            if (!storages.ContainsKey(t.Storage.Key))
                storages.Add(t.Storage.Key, LoadStorage(path, zip, p, archive, name, t.Storage));
            tensors.Add(new PthTensor(name, t.Storage.DType, t.Shape, t.Strides, t.Offset, t.Storage.Key));
        }
        return new PthCheckpoint(path, mmf, view, pin, zip, archive, tensors, storages);
    }

    /// <summary>A storage's bytes: <c>ARCHIVE/data/KEY</c>, exactly element count x element size.</summary>
    private static Storage LoadStorage(string path, ZipDirectory zip, byte* p, string archive, string tensor, PyStorage s)
    {
        string entryName = $"{archive}/data/{s.Key}";
        var e = zip.Find(entryName)
            ?? throw new ModelFormatException(path, $"tensor '{Unpickler.Printable(tensor)}' uses storage '{Unpickler.Printable(s.Key)}', but the archive has no entry {Unpickler.Printable(entryName)}");
        long bytes = s.ElementCount * PthTensor.SizeOf(s.DType);
        if (e.UncompressedSize != bytes)
            throw new ModelFormatException(path, $"storage {Unpickler.Printable(entryName)} has {e.UncompressedSize} bytes, but {s.ElementCount} {s.DType} elements need {bytes}");
        if (e.Method == ZipEntry.Stored)
            return new Storage(p + e.DataOffset, bytes, e.DataOffset, null);
        byte[] inflated = zip.Inflate(e, MaxInflatedBytes);
        return new Storage((byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(inflated)), bytes, -1, inflated);
    }

    /// <summary>An entry's uncompressed bytes: a view into the mapping when stored, an inflated copy when deflated.</summary>
    private static ReadOnlySpan<byte> EntryBytes(ZipDirectory zip, ZipEntry e, byte* p, long maxBytes)
    {
        if (e.Method == ZipEntry.Stored)
        {
            if (e.UncompressedSize > maxBytes)
                throw new ModelFormatException(zip.Path, $"zip entry '{Unpickler.Printable(e.Name)}' is {e.UncompressedSize} bytes long; at most {maxBytes} are expected");
            return new ReadOnlySpan<byte>(p + e.DataOffset, (int)e.UncompressedSize);
        }
        return zip.Inflate(e, maxBytes);
    }

    /// <summary>The tensor named <paramref name="name"/>, or null.</summary>
    public PthTensor? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>
    /// The bytes of a contiguous tensor (<see cref="PthTensor.ByteSize"/> of them, little-endian): a view into the
    /// mapping, valid while this object is alive. A non-contiguous tensor is a <see cref="ModelFormatException"/>;
    /// one of 2 GiB or more does not fit a span (use <see cref="GetPointer"/>).
    /// </summary>
    public ReadOnlySpan<byte> GetBytes(PthTensor tensor)
    {
        var s = StorageOf(tensor);
        if (!tensor.IsContiguous)
            throw new ModelFormatException(FilePath, $"tensor '{tensor.Name}' is not contiguous (size {PthTensor.Format(tensor.Shape)}, stride {PthTensor.Format(tensor.Strides)}), so its elements are not one run of bytes");
        if (tensor.ByteSize > int.MaxValue)
            throw new InvalidOperationException($"{FilePath}: tensor '{tensor.Name}' has {tensor.ByteSize} bytes, too many for a span; use {nameof(GetPointer)}");
        return new ReadOnlySpan<byte>(s.Pointer + tensor.StorageOffset * tensor.ElementSize, (int)tensor.ByteSize);
    }

    /// <summary>
    /// A pointer to a tensor's first element (its storage offset applied), valid while this object is alive; the
    /// tensor's strides say where the others are. For kernels that read tensors of more than 2 GiB.
    /// </summary>
    public byte* GetPointer(PthTensor tensor) => StorageOf(tensor).Pointer + tensor.StorageOffset * tensor.ElementSize;

    /// <summary>
    /// The absolute offset in the file of a tensor's first element, or null when its storage was compressed (and so
    /// was inflated into memory). torch.save aligns each storage to 64 bytes.
    /// </summary>
    public long? GetFileOffset(PthTensor tensor)
    {
        var s = StorageOf(tensor);
        return s.FileOffset < 0 ? null : s.FileOffset + tensor.StorageOffset * tensor.ElementSize;
    }

    /// <summary>
    /// Checks the CRC-32 of every storage this checkpoint uses (it reads every byte of the file, so it is not done on
    /// <see cref="Open"/>). Throws <see cref="ModelFormatException"/> naming the first corrupt entry.
    /// </summary>
    public void VerifyChecksums()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var (key, s) in _storages)
        {
            var e = _zip.Find($"{ArchiveName}/data/{key}")!.Value;
            uint crc = 0;
            for (long done = 0; done < s.ByteLength;)
            {
                int n = (int)Math.Min(1 << 30, s.ByteLength - done);
                crc = Crc32.Append(crc, new ReadOnlySpan<byte>(s.Pointer + done, n));
                done += n;
            }
            if (crc != e.Crc32)
                throw new ModelFormatException(FilePath, $"zip entry '{e.Name}' fails its CRC-32 check (0x{crc:x8}, expected 0x{e.Crc32:x8}): the file is corrupt");
        }
    }

    private Storage StorageOf(PthTensor tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_byName.TryGetValue(tensor.Name, out var mine) || !ReferenceEquals(mine, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' does not come from {FilePath}", nameof(tensor));
        return _storages[tensor.StorageKey];
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
        if (_pin.IsAllocated) _pin.Free();
    }
}
