using System.Text;
using Llama3.Formats;
using Llama3.Tokenization;

namespace Llama3.Tests.Tokenization;

/// <summary>Malformed files name the file and the problem; odd input has defined, documented behaviour.</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("llama3-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string content)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    [Theory]
    [InlineData("IQ== 0\nIg==\n", "line 2")]                 // no rank
    [InlineData("IQ== 0\n!!notbase64 1\n", "line 2")]       // bad base64
    [InlineData("IQ== 0\nIg== x\n", "line 2")]              // rank not a number
    [InlineData("IQ== 0\nIg== 0\n", "rank 0 appears twice")]
    [InlineData("IQ== 0\nIg== 2\n", "rank 1 is missing")]
    [InlineData("IQ== 0\nIQ== 1\n", "repeats an earlier token")]
    [InlineData("", "no tokens")]
    public void MalformedTiktokenModelNamesFileAndProblem(string content, string problem)
    {
        string path = Write("tokenizer.model", content);
        var e = Assert.Throws<ModelFormatException>(() => Llama3Tokenizer.FromTiktokenModel(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void SentencePieceProtobufModelIsRecognisedAsNotTiktoken()
    {
        string path = Path.Combine(_dir, "tokenizer.model");
        File.WriteAllBytes(path, [0x0A, 0x0B, 0x0A, 0x05, 0x3C, 0x75, 0x6E, 0x6B, 0x3E, 0x15, 0x00, 0x00, 0x80, 0xFF, 0x20, 0x10]);
        var e = Assert.Throws<ModelFormatException>(() => LlamaTokenizer.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("not", e.Message);
    }

    [Fact]
    public void TokenizerJsonOfAnotherModelTypeIsRejected()
    {
        string path = Write("tokenizer.json", """{"model": {"type": "WordPiece", "vocab": {"a": 0}}}""");
        var e = Assert.Throws<ModelFormatException>(() => LlamaTokenizer.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("WordPiece", e.Message);
    }

    [Fact]
    public void TokenizerJsonWithAnotherPreTokenizerIsRejected()
    {
        string path = Write("tokenizer.json", """
            {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
             "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated"}, {"type": "ByteLevel"}]}}
            """);
        var e = Assert.Throws<ModelFormatException>(() => LlamaTokenizer.FromFile(path));
        Assert.Contains("pattern is not Llama 3's", e.Message);
    }

    [Fact]
    public void TokenizerJsonThatIsNotJsonNamesTheFile()
    {
        string path = Write("tokenizer.json", "{ not json");
        var e = Assert.Throws<ModelFormatException>(() => LlamaTokenizer.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("not valid JSON", e.Message);
    }

    [Fact]
    public void MissingFileOrDirectoryNamesThePath()
    {
        string missing = Path.Combine(_dir, "nope", "tokenizer.model");
        var e = Assert.Throws<FileNotFoundException>(() => LlamaTokenizer.FromFile(missing));
        Assert.Contains(missing, e.Message);
        var empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        var d = Assert.Throws<FileNotFoundException>(() => LlamaTokenizer.FromFile(empty));
        Assert.Contains(empty, d.Message);
        Assert.Contains("no tokenizer found", d.Message);
    }

    [Fact]
    public void RejectModeNamesTheSpecialToken()
    {
        var tok = Tokenizers.Meta31;
        var e = Assert.Throws<ArgumentException>(() => tok.EncodeToIds("hi <|eot_id|> there", specials: SpecialTokenMode.Reject));
        Assert.Contains("<|eot_id|>", e.Message);
        Assert.Equal(tok.EncodeToIds("plain text"), tok.EncodeToIds("plain text", specials: SpecialTokenMode.Reject));
    }

    [Fact]
    public void SpecialTokenTextIsOrdinaryTextUnlessAllowed()
    {
        var tok = Tokenizers.Meta31;
        var asText = tok.EncodeToIds("<|eot_id|>");
        Assert.DoesNotContain(128009, asText);
        Assert.Equal([128009], tok.EncodeToIds("<|eot_id|>", specials: SpecialTokenMode.Allow));
    }

    [Fact]
    public void LoneSurrogatesEncodeAsReplacementCharacter()
    {
        var tok = Tokenizers.Meta31;
        Assert.Equal(tok.EncodeToIds("a\uFFFDb"), tok.EncodeToIds("a\uD800b"));
        Assert.Equal(tok.EncodeToIds("\uFFFD x"), tok.EncodeToIds("\uDC00 x"));
    }

    [Fact]
    public void InvalidUtf8InputBytesAreReadAsReplacementCharacters()
    {
        var tok = Tokenizers.Meta31;
        Assert.Equal(tok.EncodeToIds("a\uFFFDb"), tok.EncodeToIds([0x61, 0xFF, 0x62]));
        Assert.Equal(tok.EncodeToIds("hé"), tok.EncodeToIds(Encoding.UTF8.GetBytes("hé")));
        // Decoding bytes that are not UTF-8 gives U+FFFD in text, the exact bytes from DecodeToBytes.
        byte[] e9 = Encoding.UTF8.GetBytes("é");
        var firstByte = Enumerable.Range(0, 256).First(id => tok.GetTokenBytes(id) is [var b] && b == e9[0]);
        Assert.Equal("\uFFFD", tok.Decode([firstByte]));
        Assert.Equal([e9[0]], tok.DecodeToBytes([firstByte]));
    }

    [Fact]
    public void OutOfRangeIdsAreAClearError()
    {
        var tok = Tokenizers.Meta31;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([128256]));
        Assert.Contains("outside the vocabulary", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([-1]));
    }

    [Fact]
    public void ChatFormatNeedsLlama3SpecialTokens()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new ChatFormat(Tokenizers.Stories260K));
        Assert.Contains("<|begin_of_text|>", e.Message);
    }
}
