using System.Text;
using System.Text.Json;
using Llama3.Tokenization;

namespace Llama3.Tests.Tokenization;

/// <summary>Parity with the outside references: llama.cpp's test cases, tiktoken's ids and Meta's published examples.</summary>
public class ReferenceCasesTests
{
    public static TheoryData<string> Loaders => new() { "tokenizer.model", "tokenizer.json", "gguf" };

    [Theory]
    [MemberData(nameof(Loaders))]
    public void LlamaCppBpeCasesPassFromEveryLoader(string loader) =>
        CheckLlamaCppCases(Tokenizers.Llama3(loader), "llamacpp-cases.json");

    [Fact]
    public void LlamaCppSentencePieceCasesPass() => CheckLlamaCppCases(Tokenizers.SentencePiece, "llamacpp-spm-cases.json");

    private static void CheckLlamaCppCases(LlamaTokenizer tok, string file)
    {
        var cases = Tokenizers.ReadCases("reference", "tokenizer", file);
        Assert.Equal(46, cases.Count);
        var failures = new List<string>();
        foreach (var c in cases)
        {
            string text = c.GetProperty("text").GetString()!;
            var expected = Tokenizers.Ids(c, "ids");
            var actual = tok.EncodeToIds(text).ToArray();
            if (!expected.SequenceEqual(actual))
                failures.Add($"{JsonSerializer.Serialize(text)}: expected [{string.Join(",", expected)}] got [{string.Join(",", actual)}]");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void Stories260KOnceUponATime()
    {
        var ids = Tokenizers.Stories260K.EncodeToIds("Once upon a time", addBos: true);
        Assert.Equal([1, 403, 407, 261, 378], ids);
        Assert.Equal("Once upon a time", Tokenizers.Stories260K.Decode(ids.ToArray().AsSpan()));
    }

    private static string CaseText(JsonElement c)
    {
        if (c.TryGetProperty("text", out var t)) return t.GetString()!;
        var sb = new StringBuilder();
        foreach (var part in c.GetProperty("gen").EnumerateArray())
        {
            string s = part[0].GetString()!;
            int n = part[1].GetInt32();
            for (int i = 0; i < n; i++) sb.Append(s);
        }
        string text = sb.ToString();
        int cps = text.EnumerateRunes().Count();
        Assert.Equal(c.GetProperty("length_code_points").GetInt32(), cps);
        return text;
    }

    public static TheoryData<string> AllLoaders => new() { "tokenizer.model", "tokenizer.model-3.0", "tokenizer.json", "gguf" };

    [Theory]
    [MemberData(nameof(AllLoaders))]
    public void TiktokenCasesPass(string loader)
    {
        var tok = Tokenizers.Llama3(loader);
        var cases = Tokenizers.ReadCases("reference", "tokenizer", "cases.json");
        Assert.Equal(374, cases.Count);
        var failures = new List<string>();
        int checkedSpecial = 0;
        foreach (var c in cases)
        {
            string text = CaseText(c);
            bool bos = c.TryGetProperty("bos", out var b) && b.GetBoolean();
            bool eos = c.TryGetProperty("eos", out var e) && e.GetBoolean();
            Check("ids", tok.EncodeToIds(text, bos, eos).ToArray());
            // Special-token names: tokenizer.model with 3.1 names gives ids_special_31; the 3.0 names everywhere else
            // (the tokenizer.json and the GGUF carry the Llama 3.0 names).
            string specialKey = loader == "tokenizer.model" ? "ids_special_31" : "ids_special";
            if (c.TryGetProperty(specialKey, out _))
            {
                checkedSpecial++;
                Check(specialKey, tok.EncodeToIds(text, bos, eos, SpecialTokenMode.Allow).ToArray());
            }

            void Check(string key, int[] actual)
            {
                var expected = Tokenizers.Ids(c, key);
                if (!expected.SequenceEqual(actual))
                    failures.Add($"{c.GetProperty("cat").GetString()} {key} {Preview(text)}: expected {expected.Length} ids " +
                        $"[{string.Join(",", expected.Take(40))}] got {actual.Length} [{string.Join(",", actual.Take(40))}]");
            }
        }
        Assert.True(checkedSpecial >= 20, $"only {checkedSpecial} special-token cases were checked");
        Assert.True(failures.Count == 0, $"{failures.Count} failures:\n" + string.Join("\n", failures.Take(30)));
    }

    private static string Preview(string s) => JsonSerializer.Serialize(s.Length > 60 ? s[..60] + "..." : s);

    [Fact]
    public void MetaPublishedExamples()
    {
        var tok = Tokenizers.Meta31;
        var ids = tok.EncodeToIds("This is a test sentence.", addBos: true, addEos: true);
        Assert.Equal([128000, 2028, 374, 264, 1296, 11914, 13, 128001], ids);
        Assert.Equal("<|begin_of_text|>This is a test sentence.<|end_of_text|>", tok.Decode(ids.ToArray().AsSpan()));
        var chat = new ChatFormat(tok);
        Assert.Equal([128006, 882, 128007, 271, 2028, 374, 264, 1296, 11914, 13, 128009],
            chat.EncodeMessage(ChatMessage.User("This is a test sentence.")));
    }

    public static TheoryData<string> ChatLoaders => new() { "tokenizer.model", "tokenizer.json", "gguf" };

    [Theory]
    [MemberData(nameof(ChatLoaders))]
    public void ChatCasesMatchMetaChatFormat(string loader)
    {
        var chat = new ChatFormat(Tokenizers.Llama3(loader));
        var cases = Tokenizers.ReadCases("reference", "tokenizer", "chat-cases.json");
        Assert.Equal(13, cases.Count);
        foreach (var c in cases)
        {
            var dialog = c.GetProperty("dialog").EnumerateArray()
                .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
            Assert.True(Tokenizers.Ids(c, "ids").SequenceEqual(chat.EncodeDialogPrompt(dialog)), c.GetProperty("name").GetString());
            var perMessage = c.GetProperty("message_ids").EnumerateArray().ToList();
            for (int i = 0; i < dialog.Count; i++)
                Assert.Equal(perMessage[i].EnumerateArray().Select(x => x.GetInt32()), chat.EncodeMessage(dialog[i]));
        }
    }

    [Fact]
    public void EndOfGenerationTokensComeFromTheFiles()
    {
        // Llama 3.1 names: <|end_of_text|>, <|eom_id|>, <|eot_id|>; Llama 3.0 has no <|eom_id|>.
        Assert.Equal([128001, 128008, 128009], Tokenizers.Meta31.EndOfGenerationIds.Order());
        Assert.Equal([128001, 128009], Tokenizers.Meta30.EndOfGenerationIds.Order());
        // The Hugging Face meta-tiny directory's generation_config.json lists 128001, 128008, 128009.
        var hfDir = LlamaTokenizer.FromFile(SharedData.Path("models", "meta-tiny", "hf"));
        Assert.Equal([128001, 128008, 128009], hfDir.EndOfGenerationIds.Order());
        Assert.Equal(128000, hfDir.BosId);
        // A Meta directory whose params.json says use_scaled_rope gets the 3.1 names.
        var metaDir = LlamaTokenizer.FromFile(SharedData.Path("models", "meta-tiny", "meta"));
        Assert.Equal(128008, metaDir.GetSpecialTokenId("<|eom_id|>"));
        Assert.Equal(128010, metaDir.GetSpecialTokenId("<|python_tag|>"));
        Assert.Null(Tokenizers.Meta30.GetSpecialTokenId("<|python_tag|>"));
        Assert.Equal(128008, Tokenizers.Meta30.GetSpecialTokenId("<|reserved_special_token_4|>"));
    }

    [Fact]
    public void AllTwoHundredFiftySixSpecialTokensRoundTrip()
    {
        foreach (var tok in new[] { Tokenizers.Meta30, Tokenizers.Meta31, Tokenizers.HuggingFace, Tokenizers.FromGguf })
        {
            Assert.Equal(128256, tok.VocabularySize);
            Assert.Equal(256, tok.SpecialTokens.Count);
            foreach (var (name, id) in tok.SpecialTokens)
            {
                Assert.InRange(id, 128000, 128255);
                Assert.Equal([id], tok.EncodeToIds(name, specials: SpecialTokenMode.Allow));
                Assert.True(tok.EncodeToIds(name).Count > 1);
                Assert.Equal(name, tok.Decode([id]));
            }
        }
    }
}
