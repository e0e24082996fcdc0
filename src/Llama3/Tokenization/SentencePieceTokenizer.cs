using System.Buffers;
using System.Text;

namespace Llama3.Tokenization;

/// <summary>GGUF token types (<c>tokenizer.ggml.token_type</c>, llama.cpp's <c>llama_token_type</c>).</summary>
public enum GgufTokenType
{
    /// <summary>Not given.</summary>
    Undefined = 0,
    /// <summary>An ordinary token.</summary>
    Normal = 1,
    /// <summary>The unknown token.</summary>
    Unknown = 2,
    /// <summary>A control token such as BOS/EOS.</summary>
    Control = 3,
    /// <summary>A user-defined token matched as a whole.</summary>
    UserDefined = 4,
    /// <summary>An unused slot.</summary>
    Unused = 5,
    /// <summary>A byte-fallback token <c>&lt;0xNN&gt;</c>.</summary>
    Byte = 6,
}

/// <summary>
/// The Llama 1/2 SentencePiece BPE tokenizer, with llama.cpp's semantics (<c>llm_tokenizer_spm</c>): spaces become
/// <c>▁</c> (U+2581), a space is prefixed to text that starts the input or follows a special token (the "add space
/// prefix" of the model's files), symbols are UTF-8 characters, the adjacent pair whose merged text is in the
/// vocabulary with the highest score is merged first (leftmost on ties), and characters that form no token are
/// written as <c>&lt;0xNN&gt;</c> byte tokens.
/// </summary>
public sealed class SentencePieceTokenizer : LlamaTokenizer
{
    private const string SpaceMarker = "\u2581";
    private readonly string[] _tokens;
    private readonly float[] _scores;
    private readonly GgufTokenType[] _types;
    private readonly Dictionary<string, int> _byText;
    private readonly int[] _byteTokens = new int[256];
    private readonly byte[][] _decoded;
    private readonly int? _unknownId;

    internal SentencePieceTokenizer(string[] tokens, float[] scores, GgufTokenType[] types, int? bosId, int? eosId,
        int? unknownId, IReadOnlyList<int> eog, bool addBos, bool addSpacePrefix, string source)
        : base(CollectSpecials(tokens, types), bosId, eosId, eog, addBos, source)
    {
        _tokens = tokens;
        _scores = scores;
        _types = types;
        _unknownId = unknownId;
        AddSpacePrefix = addSpacePrefix;
        _byText = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) _byText.TryAdd(tokens[i], i); // first wins, as llama.cpp's token_to_id
        Array.Fill(_byteTokens, -1);
        for (int b = 0; b < 256; b++)
            if (_byText.TryGetValue($"<0x{b:X2}>", out int id)) _byteTokens[b] = id;
        _decoded = new byte[tokens.Length][];
        for (int i = 0; i < tokens.Length; i++) _decoded[i] = DecodePiece(i);
    }

    private static Dictionary<string, int> CollectSpecials(string[] tokens, GgufTokenType[] types)
    {
        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
            if (types[i] is GgufTokenType.Control or GgufTokenType.UserDefined or GgufTokenType.Unknown)
                d.TryAdd(tokens[i], i);
        return d;
    }

    /// <inheritdoc/>
    public override string Kind => "sentencepiece-bpe";

    /// <inheritdoc/>
    public override int VocabularySize => _tokens.Length;

    /// <summary>Whether a space is put before text at the start (and after special tokens), as SentencePiece's dummy prefix.</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>The vocabulary's piece for an id, as stored (with <c>▁</c> for spaces).</summary>
    public string GetPiece(int id) => _tokens[id];

    /// <summary>The score of a piece.</summary>
    public float GetScore(int id) => _scores[id];

    private protected override bool StripsLeadingSpace => AddSpacePrefix;

    private byte[] DecodePiece(int id)
    {
        string t = _tokens[id];
        switch (_types[id])
        {
            case GgufTokenType.Byte when t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>':
                return [Convert.ToByte(t.Substring(3, 2), 16)];
            case GgufTokenType.Control or GgufTokenType.Unknown or GgufTokenType.Unused:
                return Encoding.UTF8.GetBytes(t);
            default:
                return Encoding.UTF8.GetBytes(t.Replace(SpaceMarker, " ", StringComparison.Ordinal));
        }
    }

    private protected override void AppendTokenBytes(int id, bool skipSpecial, IBufferWriter<byte> output)
    {
        // Control tokens decode to nothing by default, as llama.cpp's token_to_piece and SentencePiece do.
        if (_types[id] is GgufTokenType.Control or GgufTokenType.Unused) return;
        if (skipSpecial && _types[id] is GgufTokenType.Unknown or GgufTokenType.UserDefined) return;
        output.Write(_decoded[id]);
    }

    private protected override void EncodeUtf8(ReadOnlySpan<byte> utf8, List<int> output, bool allowSpecial)
    {
        // llama.cpp's tokenize for SPM: fragments of raw text between special tokens; a raw fragment gets the
        // space prefix when it starts the input or follows a special token.
        bool prevSpecial = true;
        int at = 0;
        while (at < utf8.Length)
        {
            int id = -1, len = 0;
            int found = allowSpecial ? Matcher.FindNext(utf8, at, out id, out len) : -1;
            int rawEnd = found < 0 ? utf8.Length : found;
            if (rawEnd > at)
            {
                EncodeFragment(Encoding.UTF8.GetString(utf8[at..rawEnd]), prevSpecial, output);
                prevSpecial = false;
            }
            if (found < 0) break;
            output.Add(id);
            prevSpecial = true;
            at = found + len;
        }
    }

    private struct Symbol
    {
        public int Start, Length, Prev, Next;
    }

    private void EncodeFragment(string raw, bool prevSpecial, List<int> output)
    {
        string text = ((AddSpacePrefix && prevSpecial) ? " " + raw : raw).Replace(" ", SpaceMarker, StringComparison.Ordinal);
        // Symbols are UTF-16 ranges of whole code points (a surrogate pair stays together).
        var symbols = new List<Symbol>(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int len = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            symbols.Add(new Symbol { Start = i, Length = len, Prev = symbols.Count - 1, Next = i + len < text.Length ? symbols.Count + 1 : -1 });
            i += len;
        }
        if (symbols.Count == 0) return;

        // Highest score first; on equal scores the leftmost pair (llama.cpp's llm_bigram_spm comparator).
        var queue = new PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)>(
            Comparer<(float Score, int Left)>.Create((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left)));
        var syms = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(symbols);

        void TryAddBigram(Span<Symbol> s, int left, int right)
        {
            if (left < 0 || right < 0) return;
            int size = s[left].Length + s[right].Length;
            if (!_byText.TryGetValue(text.Substring(s[left].Start, size), out int id)) return;
            queue.Enqueue((left, right, size), (_scores[id], left));
        }

        for (int i = 1; i < syms.Length; i++) TryAddBigram(syms, i - 1, i);
        while (queue.TryDequeue(out var bigram, out _))
        {
            ref var l = ref syms[bigram.Left];
            ref var r = ref syms[bigram.Right];
            if (l.Length == 0 || r.Length == 0 || l.Length + r.Length != bigram.Size) continue; // stale
            l.Length += r.Length;
            r.Length = 0;
            l.Next = r.Next;
            if (r.Next >= 0) syms[r.Next].Prev = bigram.Left;
            TryAddBigram(syms, l.Prev, bigram.Left);
            TryAddBigram(syms, bigram.Left, l.Next);
        }

        for (int i = 0; i != -1; i = syms[i].Next)
        {
            string piece = text.Substring(syms[i].Start, syms[i].Length);
            if (_byText.TryGetValue(piece, out int id))
            {
                output.Add(id);
                continue;
            }
            // Byte fallback: each UTF-8 byte of the character as a <0xNN> token.
            foreach (byte b in Encoding.UTF8.GetBytes(piece))
            {
                int bt = _byteTokens[b];
                output.Add(bt >= 0 ? bt : _unknownId ?? throw new InvalidOperationException(
                    $"{Source}: no byte token <0x{b:X2}> and no unknown token to encode '{piece}'"));
            }
        }
    }
}
