using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Llama3.Tokenization;

/// <summary>
/// Character classes used by the tokenizers, on Unicode code points (not UTF-16 units):
/// the classes of Meta's split pattern (<c>\p{L}</c>, <c>\p{N}</c>, <c>\s</c> = Unicode White_Space as Rust's
/// regex defines it) and Python's <c>str.isspace()</c> (which Meta's wrapper uses and which also counts
/// U+001C..U+001F).
/// </summary>
internal static class CharClass
{
    public const byte Letter = 1;        // \p{L}
    public const byte Number = 2;        // \p{N}
    public const byte Space = 4;         // \s (Unicode White_Space)
    public const byte Newline = 8;       // [\r\n]
    public const byte PythonSpace = 16;  // str.isspace()

    // One byte per BMP code point; astral code points ask the runtime's Unicode data.
    private static readonly byte[] Bmp = BuildBmp();

    private static byte[] BuildBmp()
    {
        var t = new byte[0x10000];
        for (int c = 0; c < t.Length; c++)
            t[c] = Compute(c);
        return t;
    }

    private static byte Compute(int cp)
    {
        if (cp is >= 0xD800 and <= 0xDFFF) return 0;
        byte f = 0;
        switch (CharUnicodeInfo.GetUnicodeCategory(cp))
        {
            case UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter:
                f |= Letter;
                break;
            case UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber:
                f |= Number;
                break;
        }
        if (IsWhiteSpaceProperty(cp)) f |= Space | PythonSpace;
        if (cp is >= 0x1C and <= 0x1F) f |= PythonSpace;
        if (cp is '\r' or '\n') f |= Newline;
        return f;
    }

    // Unicode's White_Space property (PropList.txt), which is what \s means in Rust's regex crate.
    private static bool IsWhiteSpaceProperty(int cp) =>
        cp is (>= 0x09 and <= 0x0D) or 0x20 or 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A)
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte Of(int codePoint) => (uint)codePoint < 0x10000 ? Bmp[codePoint] : Compute(codePoint);

    /// <summary>Python's <c>str.strip()</c> with no argument: removes leading and trailing isspace() code points.</summary>
    public static string PythonStrip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && (Of(s[start]) & PythonSpace) != 0) start++;
        while (end > start && (Of(s[end - 1]) & PythonSpace) != 0) end--;
        return s.Substring(start, end - start);
    }
}

/// <summary>
/// A text as UTF-8 bytes with, per code point, its class and byte offset: the tokenizers' working form.
/// Built once per call from pooled buffers.
/// </summary>
internal ref struct CodePointText
{
    public ReadOnlySpan<byte> Utf8;
    public Span<byte> Classes;   // one per code point
    public Span<int> Offsets;    // Count + 1 entries; Offsets[Count] == Utf8.Length
    public int Count;

    /// <summary>Decodes <paramref name="utf8"/> (already valid UTF-8) into the given buffers.</summary>
    public static CodePointText Build(ReadOnlySpan<byte> utf8, Span<byte> classes, Span<int> offsets)
    {
        int n = 0, i = 0;
        while (i < utf8.Length)
        {
            byte b = utf8[i];
            offsets[n] = i;
            if (b < 0x80)
            {
                classes[n] = CharClass.Of(b);
                i++;
            }
            else
            {
                Rune.DecodeFromUtf8(utf8[i..], out Rune r, out int len);
                classes[n] = CharClass.Of(r.Value);
                i += len;
            }
            n++;
        }
        offsets[n] = utf8.Length;
        return new CodePointText { Utf8 = utf8, Classes = classes[..n], Offsets = offsets[..(n + 1)], Count = n };
    }

    /// <summary>The code point at index <paramref name="k"/>.</summary>
    public readonly int CodePointAt(int k)
    {
        byte b = Utf8[Offsets[k]];
        if (b < 0x80) return b;
        Rune.DecodeFromUtf8(Utf8[Offsets[k]..], out Rune r, out _);
        return r.Value;
    }
}
