using System.IO.Compression;
using System.Text;

namespace Llama3.Formats.Pth;

/// <summary>One file in a zip archive, as its central directory and local header describe it.</summary>
/// <param name="Name">Path inside the archive.</param>
/// <param name="Method">Compression method (0 stored, 8 deflate).</param>
/// <param name="Flags">General purpose flags.</param>
/// <param name="Crc32">CRC-32 of the uncompressed bytes.</param>
/// <param name="CompressedSize">Bytes in the file.</param>
/// <param name="UncompressedSize">Bytes once inflated (equal to <paramref name="CompressedSize"/> when stored).</param>
/// <param name="LocalHeaderOffset">Absolute offset of the local file header.</param>
/// <param name="DataOffset">Absolute offset of the entry's first data byte (after the local header).</param>
internal readonly record struct ZipEntry(
    string Name, ushort Method, ushort Flags, uint Crc32, long CompressedSize, long UncompressedSize,
    long LocalHeaderOffset, long DataOffset)
{
    public const ushort Stored = 0;
    public const ushort Deflated = 8;
}

/// <summary>
/// The central directory of a zip archive in memory (a memory mapping), read per PKWARE's APPNOTE.TXT 6.3:
/// end of central directory record (4.3.16), ZIP64 locator and record (4.3.14, 4.3.15), central directory
/// headers (4.3.12) with their ZIP64 extra field (4.5.3), and each entry's local header (4.3.7).
/// Sizes come from the central directory: torch.save's writer (miniz) sets bit 3 and leaves the local
/// header's CRC and sizes zero. Stored entries are handed out as offsets into the mapping, never copied.
/// </summary>
internal sealed unsafe class ZipDirectory
{
    private const uint LocalHeaderSignature = 0x04034b50;
    private const uint CentralHeaderSignature = 0x02014b50;
    private const uint EndSignature = 0x06054b50;
    private const uint Zip64EndSignature = 0x06064b50;
    private const uint Zip64LocatorSignature = 0x07064b50;
    private const int EndSize = 22, Zip64LocatorSize = 20, Zip64EndSize = 56, CentralHeaderSize = 46, LocalHeaderSize = 30;

    /// <summary>
    /// Deflate cannot shrink data by more than about 1032:1 (RFC 1951: a 258-byte match costs at least two bits),
    /// so an entry claiming more is corrupt; the check keeps a forged size from allocating gigabytes.
    /// </summary>
    private const long MaxDeflateRatio = 1032;

    private readonly string _path;
    private readonly byte* _p;
    private readonly Dictionary<string, ZipEntry> _byName;

    private ZipDirectory(string path, byte* p, long length, List<ZipEntry> entries, bool zip64)
    {
        _path = path;
        _p = p;
        Length = length;
        Entries = entries;
        IsZip64 = zip64;
        _byName = new Dictionary<string, ZipEntry>(entries.Count, StringComparer.Ordinal);
        foreach (var e in entries)
            if (!_byName.TryAdd(e.Name, e))
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(e.Name)}' appears twice");
    }

    /// <summary>The archive's path, for messages.</summary>
    public string Path => _path;

    /// <summary>Entries in central directory order.</summary>
    public IReadOnlyList<ZipEntry> Entries { get; }

    /// <summary>Bytes in the archive.</summary>
    public long Length { get; }

    /// <summary>Whether the archive has ZIP64 end records.</summary>
    public bool IsZip64 { get; }

    /// <summary>The entry named <paramref name="name"/>, or null.</summary>
    public ZipEntry? Find(string name) => _byName.TryGetValue(name, out var e) ? e : null;

    /// <summary>Reads the directory of the archive at <paramref name="p"/> (<paramref name="length"/> bytes).</summary>
    public static ZipDirectory Read(string path, byte* p, long length)
    {
        var b = new Bytes(path, p, length);
        if (length < EndSize)
            throw new ModelFormatException(path, $"too short for a zip archive ({length} bytes)");

        // The end record is the last 22 bytes plus a comment of up to 65535 bytes; scan back for a signature whose
        // comment length reaches exactly the end of the file.
        long end = -1;
        for (long pos = length - EndSize, stop = Math.Max(0, length - EndSize - 0xFFFF); pos >= stop; pos--)
        {
            if (p[pos] == 0x50 && b.U32(pos, "") == EndSignature && pos + EndSize + b.U16(pos + 20, "") == length)
            {
                end = pos;
                break;
            }
        }
        if (end < 0)
            throw new ModelFormatException(path, NotAZip(p, length));

        uint disk = b.U16(end + 4, "end record"), cdDisk = b.U16(end + 6, "end record");
        ulong entriesHere = b.U16(end + 8, "end record"), entryCount = b.U16(end + 10, "end record");
        ulong cdSize = b.U32(end + 12, "end record"), cdOffset = b.U32(end + 16, "end record");
        long limit = end; // the central directory lies before the end records
        bool zip64 = false;
        if (end >= Zip64LocatorSize && b.U32(end - Zip64LocatorSize, "") == Zip64LocatorSignature)
        {
            long loc = end - Zip64LocatorSize;
            ulong at = b.U64(loc + 8, "ZIP64 locator");
            if (loc < Zip64EndSize || at > (ulong)(loc - Zip64EndSize))
                throw new ModelFormatException(path, $"the ZIP64 locator points to byte {at}, outside the archive's {loc} bytes before it");
            long r = (long)at;
            if (b.U32(r, "ZIP64 end record") != Zip64EndSignature)
                throw new ModelFormatException(path, $"no ZIP64 end of central directory record at byte {r}, where the locator points");
            disk = b.U32(r + 16, "ZIP64 end record");
            cdDisk = b.U32(r + 20, "ZIP64 end record");
            entriesHere = b.U64(r + 24, "ZIP64 end record");
            entryCount = b.U64(r + 32, "ZIP64 end record");
            cdSize = b.U64(r + 40, "ZIP64 end record");
            cdOffset = b.U64(r + 48, "ZIP64 end record");
            limit = r;
            zip64 = true;
        }
        else if (entryCount == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF)
        {
            throw new ModelFormatException(path, "the end of central directory record defers to ZIP64 records, but there is no ZIP64 locator");
        }
        if (disk != 0 || cdDisk != 0 || entriesHere != entryCount)
            throw new ModelFormatException(path, "split (multi-disk) zip archives are not supported");
        if (cdOffset > (ulong)limit || cdSize > (ulong)limit - cdOffset)
            throw new ModelFormatException(path, $"the central directory ({cdSize} bytes at byte {cdOffset}) runs past the end records at byte {limit} (truncated or corrupt)");
        if (entryCount > cdSize / CentralHeaderSize)
            throw new ModelFormatException(path, $"the central directory claims {entryCount} entries but its {cdSize} bytes hold at most {cdSize / CentralHeaderSize}");

        long cdStart = (long)cdOffset, cdEnd = (long)(cdOffset + cdSize);
        var entries = new List<ZipEntry>((int)Math.Min(entryCount, 4096));
        long pos2 = cdStart;
        for (ulong i = 0; i < entryCount; i++)
        {
            if (CentralHeaderSize > cdEnd - pos2 || b.U32(pos2, "central directory") != CentralHeaderSignature)
                throw new ModelFormatException(path, $"central directory entry {i} at byte {pos2} is missing or corrupt");
            ushort flags = b.U16(pos2 + 8, "central directory");
            ushort method = b.U16(pos2 + 10, "central directory");
            uint crc = b.U32(pos2 + 16, "central directory");
            ulong csize = b.U32(pos2 + 20, "central directory");
            ulong usize = b.U32(pos2 + 24, "central directory");
            int nameLen = b.U16(pos2 + 28, "central directory");
            int extraLen = b.U16(pos2 + 30, "central directory");
            int commentLen = b.U16(pos2 + 32, "central directory");
            uint startDisk = b.U16(pos2 + 34, "central directory");
            ulong lho = b.U32(pos2 + 42, "central directory");
            long nameAt = pos2 + CentralHeaderSize;
            if (nameLen + extraLen + commentLen > cdEnd - nameAt)
                throw new ModelFormatException(path, $"central directory entry {i} at byte {pos2} runs past the end of the directory");
            var nameBytes = new ReadOnlySpan<byte>(p + nameAt, nameLen);
            string name = Encoding.UTF8.GetString(nameBytes);

            // ZIP64 extended information (APPNOTE 4.5.3): present fields are those whose 32-bit value is saturated,
            // in the order uncompressed size, compressed size, local header offset, disk number.
            bool needU = usize == 0xFFFFFFFF, needC = csize == 0xFFFFFFFF, needO = lho == 0xFFFFFFFF, needD = startDisk == 0xFFFF;
            long x = nameAt + nameLen, xEnd = x + extraLen;
            while (xEnd - x >= 4)
            {
                ushort id = b.U16(x, "extra field"), size = b.U16(x + 2, "extra field");
                long data = x + 4;
                if (size > xEnd - data)
                    throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}': an extra field runs past its header");
                if (id == 0x0001)
                {
                    long f = data, fEnd = data + size;
                    if (needU) { usize = Zip64Field(b, ref f, fEnd, name); needU = false; }
                    if (needC) { csize = Zip64Field(b, ref f, fEnd, name); needC = false; }
                    if (needO) { lho = Zip64Field(b, ref f, fEnd, name); needO = false; }
                    if (needD)
                    {
                        if (fEnd - f < 4) throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}': its ZIP64 extra field is too short");
                        startDisk = b.U32(f, "extra field");
                        needD = false;
                    }
                }
                x = data + size;
            }
            if (needU || needC || needO || needD)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}' has 32-bit fields that defer to a ZIP64 extra field it does not have");
            if (startDisk != 0)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}' starts on disk {startDisk}: split archives are not supported");
            if ((flags & 0x41) != 0)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}' is encrypted");
            if (method == ZipEntry.Stored && csize != usize)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}' is stored uncompressed but its sizes differ ({csize} and {usize})");
            if (usize > long.MaxValue)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}' claims {usize} bytes");

            // The local header: its name (and length) decide where the data starts.
            if (lho > (ulong)cdStart || LocalHeaderSize > cdStart - (long)lho)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}': local header offset {lho} is outside the archive's data ({cdStart} bytes)");
            long lh = (long)lho;
            if (b.U32(lh, "local header") != LocalHeaderSignature)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}': no local file header at byte {lh}");
            int localNameLen = b.U16(lh + 26, "local header");
            int localExtraLen = b.U16(lh + 28, "local header");
            long dataAt = lh + LocalHeaderSize + localNameLen + localExtraLen;
            if (dataAt > cdStart)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}': its local header at byte {lh} runs into the central directory");
            if (localNameLen != nameLen || !new ReadOnlySpan<byte>(p + lh + LocalHeaderSize, localNameLen).SequenceEqual(nameBytes))
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}': the local header at byte {lh} names another file");
            if (b.U16(lh + 8, "local header") != method)
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}': the local header and the central directory disagree on the compression method");
            if (csize > (ulong)(cdStart - dataAt))
                throw new ModelFormatException(path, $"zip entry '{Unpickler.Printable(name)}' ({csize} bytes at byte {dataAt}) runs past the start of the central directory at byte {cdStart} (truncated or corrupt)");

            entries.Add(new ZipEntry(name, method, flags, crc, (long)csize, (long)usize, lh, dataAt));
            pos2 = nameAt + nameLen + extraLen + commentLen;
        }
        return new ZipDirectory(path, p, length, entries, zip64);
    }

    private static ulong Zip64Field(in Bytes b, ref long at, long end, string name)
    {
        if (end - at < 8)
            throw new ModelFormatException(b.Path, $"zip entry '{Unpickler.Printable(name)}': its ZIP64 extra field is too short");
        ulong v = b.U64(at, "extra field");
        at += 8;
        return v;
    }

    /// <summary>Why a file without an end record is not an archive, guessed from its first bytes.</summary>
    private static string NotAZip(byte* p, long length)
    {
        if (length >= 4 && *(uint*)p == LocalHeaderSignature)
            return "truncated: a zip archive without its end of central directory record";
        if (length >= 2 && p[0] == 0x80 && p[1] <= 5)
            return "not a zip archive: this looks like a bare pickle, PyTorch's legacy (before 1.6) torch.save format, which is not supported; re-save it with a recent PyTorch";
        if (length >= 4 && *(uint*)p == 0x46554747)
            return "not a zip archive: this is a GGUF file";
        return "not a zip archive (no end of central directory record)";
    }

    /// <summary>
    /// The uncompressed bytes of a deflated entry, in a new array on the pinned object heap (so a pointer into it
    /// stays valid). At most <paramref name="maxBytes"/>; the declared size must be met exactly and the CRC must match.
    /// A first pass inflates into a small scratch buffer to count the bytes and check the CRC, so memory is only
    /// allocated for data that is really there: a forged size cannot make it allocate.
    /// </summary>
    public byte[] Inflate(ZipEntry e, long maxBytes)
    {
        if (e.Method != ZipEntry.Deflated)
            throw new ModelFormatException(_path, $"zip entry '{Unpickler.Printable(e.Name)}' uses compression method {e.Method}; only stored (0) and deflate (8) are supported");
        if (e.UncompressedSize > maxBytes)
            throw new ModelFormatException(_path, $"zip entry '{Unpickler.Printable(e.Name)}' is compressed and {e.UncompressedSize} bytes long; at most {maxBytes} are inflated into memory (torch.save stores tensor data uncompressed)");
        if (e.UncompressedSize > e.CompressedSize * MaxDeflateRatio + 1024)
            throw new ModelFormatException(_path, $"zip entry '{Unpickler.Printable(e.Name)}' claims to inflate {e.CompressedSize} bytes to {e.UncompressedSize}, more than deflate can");
        var scratch = new byte[Math.Min(1 << 16, Math.Max(1, e.UncompressedSize))];
        uint crc = 0;
        long total = InflateInto(e, scratch, countOnly: true, ref crc);
        if (total != e.UncompressedSize)
            throw new ModelFormatException(_path, total > e.UncompressedSize
                ? $"zip entry '{Unpickler.Printable(e.Name)}' inflates to more than the {e.UncompressedSize} bytes declared"
                : $"zip entry '{Unpickler.Printable(e.Name)}' inflates to {total} bytes, fewer than the {e.UncompressedSize} declared");
        if (crc != e.Crc32)
            throw new ModelFormatException(_path, $"zip entry '{Unpickler.Printable(e.Name)}' fails its CRC-32 check (0x{crc:x8}, expected 0x{e.Crc32:x8}): the file is corrupt");
        var buffer = GC.AllocateUninitializedArray<byte>((int)e.UncompressedSize, pinned: true);
        InflateInto(e, buffer, countOnly: false, ref crc);
        return buffer;
    }

    /// <summary>
    /// Inflates entry <paramref name="e"/> through <paramref name="buffer"/>: when <paramref name="countOnly"/>, the buffer
    /// is scratch reused for each piece, whose CRC goes into <paramref name="crc"/> (stopping once more than the declared
    /// size came out); otherwise it is the destination, exactly the declared size. Returns the bytes inflated.
    /// </summary>
    private long InflateInto(ZipEntry e, byte[] buffer, bool countOnly, ref uint crc)
    {
        try
        {
            using var raw = new UnmanagedMemoryStream(_p + e.DataOffset, e.CompressedSize);
            using var inflater = new DeflateStream(raw, CompressionMode.Decompress);
            long total = 0;
            if (countOnly)
            {
                while (total <= e.UncompressedSize)
                {
                    int n = inflater.Read(buffer, 0, buffer.Length);
                    if (n == 0) break;
                    crc = Pth.Crc32.Append(crc, buffer.AsSpan(0, n));
                    total += n;
                }
                return total;
            }
            while (total < buffer.Length)
            {
                int n = inflater.Read(buffer, (int)total, buffer.Length - (int)total);
                if (n == 0) break;
                total += n;
            }
            return total;
        }
        catch (InvalidDataException ex)
        {
            throw new ModelFormatException(_path, $"zip entry '{Unpickler.Printable(e.Name)}': corrupt deflate data ({ex.Message})", ex);
        }
    }

    /// <summary>Throws unless <paramref name="data"/> (the entry's uncompressed bytes) has the entry's CRC-32.</summary>
    public void CheckCrc(ZipEntry e, ReadOnlySpan<byte> data)
    {
        uint crc = Pth.Crc32.Compute(data);
        if (crc != e.Crc32)
            throw new ModelFormatException(_path, $"zip entry '{Unpickler.Printable(e.Name)}' fails its CRC-32 check (0x{crc:x8}, expected 0x{e.Crc32:x8}): the file is corrupt");
    }

    /// <summary>Bounds-checked little-endian reads at absolute positions.</summary>
    private readonly struct Bytes(string path, byte* p, long length)
    {
        public string Path => path;

        private byte* At(long pos, int n, string what)
        {
            if (pos < 0 || pos > length - n)
                throw new ModelFormatException(path, $"truncated: {(what.Length == 0 ? "a field" : "the " + what)} at byte {pos} runs past the end of the file ({length} bytes)");
            return p + pos;
        }

        public ushort U16(long pos, string what) => *(ushort*)At(pos, 2, what);
        public uint U32(long pos, string what) => *(uint*)At(pos, 4, what);
        public ulong U64(long pos, string what) => *(ulong*)At(pos, 8, what);
    }
}
