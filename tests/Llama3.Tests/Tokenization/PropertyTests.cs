using System.Text;
using Llama3.Tokenization;

namespace Llama3.Tests.Tokenization;

/// <summary>Round trips and streaming on random input (fixed seeds, so a failure is reproducible).</summary>
public class PropertyTests
{
    // Code point pools that exercise every branch of the split pattern and of UTF-8.
    private static readonly int[][] Pools =
    [
        "abcXYZ'sdtmlrevSTM0123456789 ,.!?;:-_()[]{}<>|/\\\"#@$%^&*+=~`".EnumerateRunes().Select(r => r.Value).ToArray(),
        [' ', ' ', ' ', '\t', '\n', '\r', 0x0B, 0x0C, 0x85, 0xA0, 0x1680, 0x2000, 0x2028, 0x2029, 0x202F, 0x3000, 0xFEFF, 0x200B, 0x1C, 0x1F],
        [0xE9, 0xC4, 0xDF, 0x17F, 0x301, 0x308, 0x20DD, 0x430, 0x44F, 0x5D0, 0x627, 0x915, 0x93F, 0xE01, 0x4E2D, 0x6587, 0x3042, 0xAC00, 0xFF10],
        [0x1F600, 0x1F999, 0x1F1FA, 0x1F1F8, 0x200D, 0xFE0F, 0x1F3FD, 0x1D400, 0x1D7CF, 0x1E951, 0x10400, 0x20000, 0x1F4A9, 0xE0001, 0x10FFFF],
    ];

    private static string RandomText(Random rng, int maxLength)
    {
        var sb = new StringBuilder();
        int n = rng.Next(maxLength + 1);
        for (int i = 0; i < n; i++)
        {
            int cp = rng.Next(10) switch
            {
                0 => rng.Next(0x20, 0x7F),
                1 => RandomScalar(rng),
                2 => ' ',
                _ => Pick(rng, Pools[rng.Next(Pools.Length)]),
            };
            if (rng.Next(40) == 0) sb.Append("<|eot_id|>");
            sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    private static int Pick(Random rng, int[] pool) => pool[rng.Next(pool.Length)];

    private static int RandomScalar(Random rng)
    {
        while (true)
        {
            int cp = rng.Next(0x110000);
            if (cp is < 0xD800 or > 0xDFFF) return cp;
        }
    }

    public static TheoryData<string> Vocabularies => new() { "llama3", "sentencepiece" };

    private static LlamaTokenizer Vocabulary(string name) => name == "llama3" ? Tokenizers.Meta31 : Tokenizers.SentencePiece;

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void DecodeOfEncodeIsIdentity(string vocabulary)
    {
        var tok = Vocabulary(vocabulary);
        var rng = new Random(20261201);
        for (int iter = 0; iter < 3000; iter++)
        {
            string s = RandomText(rng, 40);
            var ids = tok.EncodeToIds(s).ToArray();
            Assert.Equal(s, tok.Decode(ids.AsSpan()));
            // With special tokens allowed the text comes back too (specials decode to their text on Llama 3).
            if (vocabulary == "llama3")
                Assert.Equal(s, tok.Decode(tok.EncodeToIds(s, specials: SpecialTokenMode.Allow).ToArray().AsSpan()));
        }
    }

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void StreamingDecoderEqualsOneShotDecodeForEveryCut(string vocabulary)
    {
        var tok = Vocabulary(vocabulary);
        var rng = new Random(7);
        for (int iter = 0; iter < 400; iter++)
        {
            // Either the ids of real text (multi-byte characters split across tokens) or random ids (invalid UTF-8 too).
            int[] ids = iter % 2 == 0
                ? tok.EncodeToIds(RandomText(rng, 30)).ToArray()
                : Enumerable.Range(0, rng.Next(1, 30)).Select(_ => RandomId(tok, rng)).ToArray();
            string expected = tok.Decode(ids.AsSpan());

            // Every cut point, one token at a time.
            var one = tok.CreateStreamingDecoder();
            var sb = new StringBuilder();
            foreach (int id in ids) sb.Append(AssertWellFormed(one.Append(id)));
            sb.Append(AssertWellFormed(one.Flush()));
            Assert.Equal(expected, sb.ToString());

            // Random groups of ids.
            var grouped = tok.CreateStreamingDecoder();
            sb.Clear();
            for (int at = 0; at < ids.Length;)
            {
                int len = rng.Next(1, ids.Length - at + 1);
                sb.Append(AssertWellFormed(grouped.Append(ids.AsSpan(at, len))));
                at += len;
            }
            sb.Append(grouped.Flush());
            Assert.Equal(expected, sb.ToString());
        }
    }

    private static int RandomId(LlamaTokenizer tok, Random rng)
    {
        // Llama 3's single-byte tokens are its ranks of the bytes; prefer partial UTF-8 bytes half of the time.
        if (tok is Llama3Tokenizer && rng.Next(2) == 0)
            return ByteToken(tok, (byte)rng.Next(0x80, 0x100));
        return rng.Next(tok.VocabularySize);
    }

    private static int ByteToken(LlamaTokenizer tok, byte b)
    {
        for (int id = 0; id < 256 + 512 && id < tok.VocabularySize; id++)
            if (tok.GetTokenBytes(id) is [var only] && only == b) return id;
        throw new InvalidOperationException($"no single-byte token for {b:X2}");
    }

    private static string AssertWellFormed(string chunk)
    {
        for (int i = 0; i < chunk.Length; i++)
        {
            if (char.IsHighSurrogate(chunk[i]))
            {
                Assert.True(i + 1 < chunk.Length && char.IsLowSurrogate(chunk[i + 1]), "a chunk ends in half a character");
                i++;
            }
            else Assert.False(char.IsLowSurrogate(chunk[i]), "a chunk starts with half a character");
        }
        return chunk;
    }

    [Fact]
    public void StreamingHoldsBackAnIncompleteCharacter()
    {
        var tok = Tokenizers.Meta31;
        byte[] smile = Encoding.UTF8.GetBytes("😀");
        var dec = tok.CreateStreamingDecoder();
        Assert.Equal("", dec.Append(ByteToken(tok, smile[0])));
        Assert.Equal("", dec.Append(ByteToken(tok, smile[1])));
        Assert.Equal("", dec.Append(ByteToken(tok, smile[2])));
        Assert.Equal("😀", dec.Append(ByteToken(tok, smile[3])));
        // An incomplete character at the end is not dropped: it becomes U+FFFD, as the one-shot decode writes it.
        Assert.Equal("", dec.Append(ByteToken(tok, smile[0])));
        Assert.Equal("\uFFFD", dec.Flush());
    }
}
