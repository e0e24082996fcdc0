using System.Buffers;
using System.Text;

namespace Llama3.Tokenization;

/// <summary>
/// Turns a stream of token ids into text for streaming output. A token can end in the middle of a UTF-8 character
/// (Llama 3's byte-level tokens often do, for emoji and CJK); the decoder holds those bytes back until the character
/// is complete, so it never emits half a character, and it never drops bytes: a sequence that can no longer become
/// valid is emitted as U+FFFD exactly where a one-shot <see cref="LlamaTokenizer.Decode(ReadOnlySpan{int}, bool)"/>
/// would put it. Concatenating every <see cref="Append(int)"/> result and <see cref="Flush"/> equals the one-shot decode.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly LlamaTokenizer _tokenizer;
    private readonly bool _skipSpecial;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private readonly ArrayBufferWriter<byte> _bytes = new(64);
    private char[] _chars = new char[64];
    private bool _atStart = true;

    internal StreamingDecoder(LlamaTokenizer tokenizer, bool skipSpecial)
    {
        _tokenizer = tokenizer;
        _skipSpecial = skipSpecial;
    }

    /// <summary>Adds one token; returns the text that is now complete (often empty mid-character).</summary>
    public string Append(int id)
    {
        _bytes.ResetWrittenCount();
        _tokenizer.AppendTokenBytesForStreaming(id, _skipSpecial, _bytes);
        return DecodeBytes(_bytes.WrittenSpan, flush: false);
    }

    /// <summary>Adds several tokens; returns the text that is now complete.</summary>
    public string Append(ReadOnlySpan<int> ids)
    {
        _bytes.ResetWrittenCount();
        foreach (int id in ids) _tokenizer.AppendTokenBytesForStreaming(id, _skipSpecial, _bytes);
        return DecodeBytes(_bytes.WrittenSpan, flush: false);
    }

    /// <summary>Ends the stream: returns what is left (U+FFFD for an incomplete final character) and resets.</summary>
    public string Flush()
    {
        string s = DecodeBytes([], flush: true);
        _atStart = true;
        return s;
    }

    private string DecodeBytes(ReadOnlySpan<byte> bytes, bool flush)
    {
        if (_atStart && !bytes.IsEmpty && _tokenizer.StripsLeadingSpaceForStreaming)
        {
            if (bytes[0] == (byte)' ') bytes = bytes[1..];
            _atStart = false;
        }
        else if (!bytes.IsEmpty)
        {
            _atStart = false;
        }
        int max = _utf8.GetCharCount(bytes, flush);
        if (max > _chars.Length) _chars = new char[Math.Max(max, _chars.Length * 2)];
        int n = _utf8.GetChars(bytes, _chars, flush);
        return n == 0 ? "" : new string(_chars, 0, n);
    }
}
