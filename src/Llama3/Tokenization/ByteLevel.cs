namespace Llama3.Tokenization;

/// <summary>
/// GPT-2's <c>bytes_to_unicode</c> table, which Hugging Face's ByteLevel and GGUF's gpt2 vocabularies use to spell
/// token bytes as printable characters: printable Latin-1 bytes stand for themselves, the other 68 bytes map to
/// U+0100 onwards in byte order.
/// </summary>
internal static class ByteLevel
{
    private static readonly char[] ByteToChar = Build();
    private static readonly Dictionary<char, byte> CharToByte = Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private static char[] Build()
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is (>= '!' and <= '~') or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return map;
    }

    /// <summary>Maps a byte-level token string back to its bytes; null when a character is not in the table.</summary>
    public static byte[]? ToBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out byte b)) return null;
            bytes[i] = b;
        }
        return bytes;
    }

    /// <summary>Spells bytes as a byte-level token string.</summary>
    public static string FromBytes(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }
}
