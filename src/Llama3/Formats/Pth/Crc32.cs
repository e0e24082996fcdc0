namespace Llama3.Formats.Pth;

/// <summary>
/// The zip CRC-32 (IEEE 802.3 polynomial, reflected, as in APPNOTE.TXT 4.4.7). The framework keeps its own
/// implementation internal (System.IO.Hashing is a separate package), and this one only checks small entries
/// unless a caller asks for a full verification.
/// </summary>
internal static class Crc32
{
    private static readonly uint[] Table = BuildTable();

    private static uint[] BuildTable()
    {
        var table = new uint[256 * 4];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        // Slicing by 4: table[256 * k + b] is the CRC of byte b followed by k zero bytes.
        for (int i = 0; i < 256; i++)
            for (int k = 1; k < 4; k++)
                table[256 * k + i] = (table[256 * (k - 1) + i] >> 8) ^ table[table[256 * (k - 1) + i] & 0xFF];
        return table;
    }

    /// <summary>Continues <paramref name="crc"/> (0 to start) over <paramref name="data"/>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        uint[] t = Table;
        uint c = ~crc;
        int i = 0;
        for (; i + 4 <= data.Length; i += 4)
        {
            c ^= (uint)(data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24);
            c = t[768 + (c & 0xFF)] ^ t[512 + ((c >> 8) & 0xFF)] ^ t[256 + ((c >> 16) & 0xFF)] ^ t[c >> 24];
        }
        for (; i < data.Length; i++)
            c = t[(c ^ data[i]) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Append(0, data);
}
