namespace Llama3.Tokenization;

/// <summary>
/// Meta's Llama 3 split pattern, as a hand-written scanner over code points rather than a regex, because a .NET
/// <c>Regex</c> tests <c>\p{L}</c> and <c>\p{N}</c> on UTF-16 units and misclassifies letters and digits outside the
/// Basic Multilingual Plane. The pattern (Meta's <c>tokenizer.py</c>, evaluated by tiktoken with Rust regex
/// semantics, alternatives tried left to right):
/// <code>
/// (?i:'s|'t|'re|'ve|'m|'ll|'d)          1 contractions
/// |[^\r\n\p{L}\p{N}]?\p{L}+              2 an optional non-letter, non-digit, non-newline, then letters
/// |\p{N}{1,3}                            3 one to three digits
/// | ?[^\s\p{L}\p{N}]+[\r\n]*             4 an optional space, punctuation, trailing newlines
/// |\s*[\r\n]+                            5 whitespace up to the last newline in it
/// |\s+(?!\S)                             6 whitespace not followed by a non-space (backtracks one)
/// |\s+                                   7 any other whitespace
/// </code>
/// </summary>
internal static class Llama3SplitPattern
{
    /// <summary>Returns the end (code point index, exclusive) of the piece that starts at <paramref name="i"/>.</summary>
    public static int NextPieceEnd(in CodePointText t, int i, int end)
    {
        var cls = t.Classes;
        byte c0 = cls[i];
        int c0v = t.Utf8[t.Offsets[i]];

        // 1: contractions, case-insensitive with Unicode simple case folding ('ſ' U+017F folds to 's').
        if (c0v == '\'' && i + 1 < end)
        {
            int c1 = t.CodePointAt(i + 1);
            if (c1 is 's' or 'S' or 0x17F or 't' or 'T' or 'm' or 'M' or 'd' or 'D')
                return i + 2;
            if (i + 2 < end)
            {
                int c2 = t.CodePointAt(i + 2);
                if ((c1 is 'r' or 'R' or 'v' or 'V') && c2 is 'e' or 'E') return i + 3;
                if (c1 is 'l' or 'L' && c2 is 'l' or 'L') return i + 3;
            }
        }

        // 2: [^\r\n\p{L}\p{N}]?\p{L}+
        if ((c0 & CharClass.Letter) != 0)
            return LetterRun(cls, i + 1, end);
        if ((c0 & (CharClass.Newline | CharClass.Number)) == 0 && i + 1 < end && (cls[i + 1] & CharClass.Letter) != 0)
            return LetterRun(cls, i + 2, end);

        // 3: \p{N}{1,3}
        if ((c0 & CharClass.Number) != 0)
        {
            int j = i + 1;
            while (j < end && j < i + 3 && (cls[j] & CharClass.Number) != 0) j++;
            return j;
        }

        // 4: ' '?[^\s\p{L}\p{N}]+[\r\n]*
        const byte wordish = CharClass.Space | CharClass.Letter | CharClass.Number;
        int p = i;
        if (c0v == ' ' && i + 1 < end && (cls[i + 1] & wordish) == 0) p = i + 1;
        if ((cls[p] & wordish) == 0)
        {
            int j = p + 1;
            while (j < end && (cls[j] & wordish) == 0) j++;
            while (j < end && (cls[j] & CharClass.Newline) != 0) j++;
            return j;
        }

        // 5, 6, 7: c0 is whitespace. Find the run and the last newline in it.
        int runEnd = i, lastNewline = -1;
        while (runEnd < end && (cls[runEnd] & CharClass.Space) != 0)
        {
            if ((cls[runEnd] & CharClass.Newline) != 0) lastNewline = runEnd;
            runEnd++;
        }
        if (lastNewline >= 0) return lastNewline + 1;       // 5
        if (runEnd == end) return runEnd;                    // 6, at the end of the text
        if (runEnd - i >= 2) return runEnd - 1;              // 6, leaving one space for the next piece
        return runEnd;                                       // 7
    }

    private static int LetterRun(ReadOnlySpan<byte> cls, int j, int end)
    {
        while (j < end && (cls[j] & CharClass.Letter) != 0) j++;
        return j;
    }
}
