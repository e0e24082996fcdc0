using System.Text;

namespace Llama3.Tokenization;

/// <summary>Finds special-token text in UTF-8 bytes: the longest special token that starts at a position.</summary>
internal sealed class SpecialTokenMatcher
{
    private readonly (byte[] Text, int Id)[][] _byFirstByte = new (byte[], int)[256][];

    public SpecialTokenMatcher(IEnumerable<KeyValuePair<string, int>> specials)
    {
        var lists = new List<(byte[], int)>?[256];
        foreach (var (text, id) in specials)
        {
            if (text.Length == 0) continue;
            var bytes = Encoding.UTF8.GetBytes(text);
            (lists[bytes[0]] ??= []).Add((bytes, id));
        }
        for (int b = 0; b < 256; b++)
            _byFirstByte[b] = lists[b]?.OrderByDescending(x => x.Item1.Length).ToArray() ?? [];
    }

    /// <summary>The first special token at or after <paramref name="from"/>: its byte position, or -1.</summary>
    public int FindNext(ReadOnlySpan<byte> text, int from, out int id, out int length)
    {
        for (int i = from; i < text.Length; i++)
        {
            var candidates = _byFirstByte[text[i]];
            if (candidates.Length == 0) continue;
            var rest = text[i..];
            foreach (var (t, tid) in candidates)
            {
                if (rest.StartsWith(t))
                {
                    id = tid;
                    length = t.Length;
                    return i;
                }
            }
        }
        id = -1;
        length = 0;
        return -1;
    }
}
