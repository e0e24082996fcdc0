using System.Buffers;
using System.Text;

namespace Llama3.Tokenization;

/// <summary>
/// A tokenizer of the Llama family: Llama 3's byte-level BPE (<see cref="Llama3Tokenizer"/>) or the Llama 1/2
/// SentencePiece BPE (<see cref="SentencePieceTokenizer"/>). Create one with <see cref="FromFile"/> from a
/// <c>tokenizer.model</c>, a <c>tokenizer.json</c>, a GGUF file or a model directory.
/// </summary>
/// <remarks>
/// Input text is a .NET string; a lone surrogate in it is encoded as U+FFFD (as tiktoken's Python binding does).
/// UTF-8 input with invalid bytes is likewise read with each invalid sequence replaced by U+FFFD. Decoding to text
/// replaces byte sequences that are not valid UTF-8 with U+FFFD; <see cref="DecodeToBytes"/> returns the exact bytes.
/// </remarks>
public abstract class LlamaTokenizer
{
    private protected static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    private protected LlamaTokenizer(IReadOnlyDictionary<string, int> specialTokens, int? bosId, int? eosId,
        IReadOnlyList<int> endOfGenerationIds, bool addBos, string source)
    {
        SpecialTokens = specialTokens;
        BosId = bosId;
        EosId = eosId;
        EndOfGenerationIds = endOfGenerationIds;
        AddBos = addBos;
        Source = source;
        var byId = new Dictionary<int, string>();
        foreach (var (name, id) in specialTokens) byId[id] = name;
        SpecialTokenNames = byId;
        Matcher = new SpecialTokenMatcher(specialTokens);
    }

    /// <summary>"llama3-bpe" (tiktoken byte-level BPE) or "sentencepiece-bpe".</summary>
    public abstract string Kind { get; }

    /// <summary>Number of token ids, special tokens included.</summary>
    public abstract int VocabularySize { get; }

    /// <summary>The file it was loaded from.</summary>
    public string Source { get; }

    /// <summary>Special tokens by their text, as the model's files name them.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>Special tokens by id.</summary>
    public IReadOnlyDictionary<int, string> SpecialTokenNames { get; }

    /// <summary>Beginning-of-sequence id, when the vocabulary has one.</summary>
    public int? BosId { get; }

    /// <summary>End-of-sequence id, when the vocabulary has one.</summary>
    public int? EosId { get; }

    /// <summary>Ids that end generation (e.g. <c>&lt;|eot_id|&gt;</c>, <c>&lt;|eom_id|&gt;</c>, <c>&lt;|end_of_text|&gt;</c> for Llama 3.1).</summary>
    public IReadOnlyList<int> EndOfGenerationIds { get; }

    /// <summary>Whether the model's files ask for BOS at the start of a raw prompt.</summary>
    public bool AddBos { get; }

    private protected SpecialTokenMatcher Matcher { get; }

    /// <summary>The id of a special token by its text, or null.</summary>
    public int? GetSpecialTokenId(string text) => SpecialTokens.TryGetValue(text, out int id) ? id : null;

    /// <summary>Whether <paramref name="id"/> is a special (control) token.</summary>
    public bool IsSpecial(int id) => SpecialTokenNames.ContainsKey(id);

    /// <summary>Encodes text to token ids.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addBos">Prepend <see cref="BosId"/>.</param>
    /// <param name="addEos">Append <see cref="EosId"/>.</param>
    /// <param name="specials">What to do with text that spells a special token.</param>
    public IReadOnlyList<int> EncodeToIds(string text, bool addBos = false, bool addEos = false,
        SpecialTokenMode specials = SpecialTokenMode.AsText)
    {
        var output = new List<int>(text.Length / 3 + 2);
        EncodeToIds(text, output, addBos, addEos, specials);
        return output;
    }

    /// <summary>Encodes text, appending the ids to <paramref name="output"/>.</summary>
    public void EncodeToIds(string text, List<int> output, bool addBos = false, bool addEos = false,
        SpecialTokenMode specials = SpecialTokenMode.AsText)
    {
        ArgumentNullException.ThrowIfNull(text);
        int max = Utf8.GetMaxByteCount(text.Length);
        byte[] rented = ArrayPool<byte>.Shared.Rent(Math.Max(1, max));
        try
        {
            int n = Utf8.GetBytes(text, rented);
            EncodeUtf8Core(rented.AsSpan(0, n), output, addBos, addEos, specials);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Encodes UTF-8 text; invalid byte sequences are read as U+FFFD.</summary>
    public IReadOnlyList<int> EncodeToIds(ReadOnlySpan<byte> utf8, bool addBos = false, bool addEos = false,
        SpecialTokenMode specials = SpecialTokenMode.AsText)
    {
        var output = new List<int>(utf8.Length / 3 + 2);
        if (System.Text.Unicode.Utf8.IsValid(utf8))
            EncodeUtf8Core(utf8, output, addBos, addEos, specials);
        else
            EncodeToIds(Utf8.GetString(utf8), output, addBos, addEos, specials);
        return output;
    }

    private void EncodeUtf8Core(ReadOnlySpan<byte> utf8, List<int> output, bool addBos, bool addEos, SpecialTokenMode specials)
    {
        if (addBos) output.Add(BosId ?? throw new InvalidOperationException($"{Source}: the vocabulary has no BOS token"));
        if (specials == SpecialTokenMode.Reject)
        {
            int at = Matcher.FindNext(utf8, 0, out int id, out _);
            if (at >= 0)
                throw new ArgumentException(
                    $"the text contains the special token '{SpecialTokenNames[id]}' at byte {at}; " +
                    "encode it as text or allow special tokens", nameof(specials));
        }
        EncodeUtf8(utf8, output, specials == SpecialTokenMode.Allow);
        if (addEos) output.Add(EosId ?? throw new InvalidOperationException($"{Source}: the vocabulary has no EOS token"));
    }

    /// <summary>Encodes valid UTF-8, appending ids.</summary>
    private protected abstract void EncodeUtf8(ReadOnlySpan<byte> utf8, List<int> output, bool allowSpecial);

    /// <summary>Appends the bytes token <paramref name="id"/> decodes to (nothing for a skipped special token).</summary>
    private protected abstract void AppendTokenBytes(int id, bool skipSpecial, IBufferWriter<byte> output);

    /// <summary>Whether decoding drops one leading space of the output (SentencePiece's dummy prefix).</summary>
    private protected virtual bool StripsLeadingSpace => false;

    /// <summary>The bytes that token ids decode to.</summary>
    /// <param name="ids">Token ids.</param>
    /// <param name="skipSpecialTokens">Leave special tokens out instead of writing their text.</param>
    public byte[] DecodeToBytes(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var buffer = new ArrayBufferWriter<byte>(ids.Length * 4 + 16);
        foreach (int id in ids)
        {
            CheckId(id);
            AppendTokenBytes(id, skipSpecialTokens, buffer);
        }
        var span = buffer.WrittenSpan;
        if (StripsLeadingSpace && span.Length > 0 && span[0] == (byte)' ') span = span[1..];
        return span.ToArray();
    }

    /// <summary>Decodes token ids to text; bytes that are not valid UTF-8 become U+FFFD.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false) =>
        Utf8.GetString(DecodeToBytes(ids, skipSpecialTokens));

    /// <summary>Decodes token ids to text.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false) =>
        Decode(ids.ToArray().AsSpan(), skipSpecialTokens);

    /// <summary>The bytes of one token (special tokens: their text).</summary>
    public byte[] GetTokenBytes(int id)
    {
        CheckId(id);
        var buffer = new ArrayBufferWriter<byte>(16);
        AppendTokenBytes(id, skipSpecial: false, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>A token's text for display: its bytes as UTF-8, with bytes that are not valid UTF-8 shown as <c>\xNN</c>.</summary>
    public string GetTokenDisplayText(int id)
    {
        var bytes = GetTokenBytes(id);
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return Utf8.GetString(bytes);
        var sb = new StringBuilder();
        int i = 0;
        while (i < bytes.Length)
        {
            var status = Rune.DecodeFromUtf8(bytes.AsSpan(i), out Rune r, out int len);
            if (status == OperationStatus.Done) sb.Append(r.ToString());
            else for (int k = 0; k < len; k++) sb.Append($"\\x{bytes[i + k]:X2}");
            i += len;
        }
        return sb.ToString();
    }

    /// <summary>A decoder for streaming: feed ids one at a time, get text that never splits a UTF-8 character.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    internal void AppendTokenBytesForStreaming(int id, bool skipSpecial, IBufferWriter<byte> output)
    {
        CheckId(id);
        AppendTokenBytes(id, skipSpecial, output);
    }

    internal bool StripsLeadingSpaceForStreaming => StripsLeadingSpace;

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)VocabularySize)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary (0..{VocabularySize - 1})");
    }

    /// <summary>
    /// Loads a tokenizer from a Meta <c>tokenizer.model</c>, a Hugging Face <c>tokenizer.json</c>, a GGUF file, or a
    /// directory holding one of them (Meta's or Hugging Face's layout).
    /// </summary>
    public static LlamaTokenizer FromFile(string path, TokenizerOptions? options = null) =>
        TokenizerLoader.Load(path, options ?? new TokenizerOptions());
}

/// <summary>Options for loading a tokenizer.</summary>
public sealed record TokenizerOptions
{
    /// <summary>
    /// Names for the special tokens of a bare Meta <c>tokenizer.model</c> (which does not name them). Null chooses:
    /// Llama 3.1 names, unless a <c>params.json</c> beside it describes a Llama 3.0 model (no <c>use_scaled_rope</c>).
    /// </summary>
    public Llama3SpecialTokenNames? SpecialTokenNames { get; init; }
}

/// <summary>Which release's names the 256 reserved ids of a Meta tokenizer.model get.</summary>
public enum Llama3SpecialTokenNames
{
    /// <summary>Llama 3 (April 2024): <c>&lt;|reserved_special_token_2|&gt;</c> at 128004, <c>&lt;|eot_id|&gt;</c> at 128009.</summary>
    Llama3_0,

    /// <summary>Llama 3.1 and later: adds <c>&lt;|finetune_right_pad_id|&gt;</c>, <c>&lt;|eom_id|&gt;</c>, <c>&lt;|python_tag|&gt;</c>.</summary>
    Llama3_1,
}
