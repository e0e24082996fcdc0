using System.Buffers;
using System.Text;

namespace Llama3.Tokenization;

/// <summary>
/// Llama 3's tokenizer, exactly as Meta's <c>tokenizer.py</c>: tiktoken byte-level BPE over Meta's split pattern,
/// 256 special tokens after the ranked ones, and Meta's wrapper that encodes the input in windows of 400,000 code
/// points, each cut so that no piece has more than 25,000 consecutive whitespace or non-whitespace code points
/// (Python's <c>str.isspace()</c>), each piece encoded by its own tiktoken call.
/// </summary>
public sealed class Llama3Tokenizer : LlamaTokenizer
{
    /// <summary>Meta's <c>TIKTOKEN_MAX_ENCODE_CHARS</c>.</summary>
    public const int MaxEncodeChars = 400_000;

    /// <summary>
    /// Meta's split pattern (<c>tokenizer.py</c>), as Llama 3's tokenizer.json stores it; encoding uses the code-point
    /// scanner in <c>Llama3SplitPattern</c>, this text is for recognising files and for other regex engines.
    /// </summary>
    public const string SplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Meta's <c>MAX_NO_WHITESPACES_CHARS</c>.</summary>
    public const int MaxConsecutiveSliceLength = 25_000;

    private readonly BytePairRanks _ranks;
    private readonly byte[][] _specialBytes; // index id - ranks.Count
    private readonly int _vocabularySize;

    internal Llama3Tokenizer(BytePairRanks ranks, IReadOnlyDictionary<string, int> specials, int? bosId, int? eosId,
        IReadOnlyList<int> eog, bool addBos, string source, string? chatTemplate)
        : base(specials, bosId, eosId, eog, addBos, source)
    {
        _ranks = ranks;
        _vocabularySize = ranks.Count + (specials.Count == 0 ? 0 : specials.Values.Max() - ranks.Count + 1);
        _specialBytes = new byte[Math.Max(0, _vocabularySize - ranks.Count)][];
        foreach (var (name, id) in specials)
        {
            if (id < ranks.Count)
                throw new InvalidDataException($"{source}: special token '{name}' has id {id}, inside the {ranks.Count} ranked tokens");
            _specialBytes[id - ranks.Count] = Encoding.UTF8.GetBytes(name);
        }
        ChatTemplate = chatTemplate;
    }

    /// <inheritdoc/>
    public override string Kind => "llama3-bpe";

    /// <inheritdoc/>
    public override int VocabularySize => _vocabularySize;

    /// <summary>Number of ranked (ordinary) tokens: 128,000 for Llama 3.</summary>
    public int RankedTokenCount => _ranks.Count;

    /// <summary>The chat template the files carry (Jinja), if any.</summary>
    public string? ChatTemplate { get; }

    /// <summary>
    /// Creates the tokenizer from Meta's <c>tokenizer.model</c> (one <c>base64(token bytes) rank</c> per line) with
    /// the 256 special tokens named as Meta's code names them for the chosen release.
    /// </summary>
    public static Llama3Tokenizer FromTiktokenModel(string path, Llama3SpecialTokenNames names = Llama3SpecialTokenNames.Llama3_1) =>
        TokenizerLoader.LoadTiktokenModel(path, names);

    private protected override void EncodeUtf8(ReadOnlySpan<byte> utf8, List<int> output, bool allowSpecial)
    {
        if (utf8.IsEmpty) return;
        byte[] classes = ArrayPool<byte>.Shared.Rent(utf8.Length);
        int[] offsets = ArrayPool<int>.Shared.Rent(utf8.Length + 1);
        try
        {
            var text = CodePointText.Build(utf8, classes, offsets);
            // Meta's Tokenizer.encode: windows of 400,000 code points, then _split_whitespaces_or_nonwhitespaces.
            for (int w = 0; w < text.Count; w += MaxEncodeChars)
            {
                int wEnd = Math.Min(text.Count, w + MaxEncodeChars);
                int sliceStart = w, sliceLen = 0;
                bool sliceIsSpace = (text.Classes[w] & CharClass.PythonSpace) != 0;
                for (int i = w; i < wEnd; i++)
                {
                    bool isSpace = (text.Classes[i] & CharClass.PythonSpace) != 0;
                    if (sliceIsSpace ^ isSpace)
                    {
                        sliceLen = 1;
                        sliceIsSpace = isSpace;
                    }
                    else if (++sliceLen > MaxConsecutiveSliceLength)
                    {
                        EncodeCall(text, sliceStart, i, output, allowSpecial);
                        sliceStart = i;
                        sliceLen = 1;
                    }
                }
                EncodeCall(text, sliceStart, wEnd, output, allowSpecial);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(classes);
            ArrayPool<int>.Shared.Return(offsets);
        }
    }

    // One tiktoken encode() call on code points [from, to): special tokens first (when allowed), then the pattern.
    private void EncodeCall(in CodePointText text, int from, int to, List<int> output, bool allowSpecial)
    {
        if (!allowSpecial)
        {
            EncodeOrdinary(text, from, to, output);
            return;
        }
        int byteFrom = text.Offsets[from], byteTo = text.Offsets[to];
        var bytes = text.Utf8[..byteTo];
        int cp = from;
        int at = byteFrom;
        while (true)
        {
            int found = Matcher.FindNext(bytes, at, out int id, out int len);
            if (found < 0) break;
            int cpFound = CodePointIndex(text, cp, found);
            EncodeOrdinary(text, cp, cpFound, output);
            output.Add(id);
            at = found + len;
            cp = CodePointIndex(text, cpFound, at);
        }
        EncodeOrdinary(text, cp, to, output);
    }

    private static int CodePointIndex(in CodePointText text, int fromIndex, int byteOffset)
    {
        int k = fromIndex;
        while (text.Offsets[k] < byteOffset) k++;
        return k;
    }

    // tiktoken's encode_ordinary: split by the pattern, then a whole-piece lookup or byte-pair merging.
    private void EncodeOrdinary(in CodePointText text, int from, int to, List<int> output)
    {
        int i = from;
        while (i < to)
        {
            int e = Llama3SplitPattern.NextPieceEnd(text, i, to);
            _ranks.EncodePiece(text.Utf8[text.Offsets[i]..text.Offsets[e]], output);
            i = e;
        }
    }

    private protected override void AppendTokenBytes(int id, bool skipSpecial, IBufferWriter<byte> output)
    {
        if (id < _ranks.Count)
        {
            output.Write(_ranks.Bytes(id));
            return;
        }
        var special = _specialBytes[id - _ranks.Count];
        if (special is null)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} has no token in {Source}");
        if (!skipSpecial) output.Write(special);
    }
}
