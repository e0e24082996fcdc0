using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using BenchmarkDotNet.Attributes;
using Llama3.Tokenization;
using Microsoft.ML.Tokenizers;
using LlamaTokenizer = Llama3.Tokenization.LlamaTokenizer;

namespace Llama3.Benchmarks;

/// <summary>
/// Encoding 1 MB of mixed text (prose, code, numbers, many scripts, emoji, whitespace: the designed reference cases,
/// shuffled and repeated) with our Llama 3 tokenizer and with Microsoft.ML.Tokenizers' TiktokenTokenizer built from
/// the same tokenizer.model and Meta's pattern.
/// </summary>
[MemoryDiagnoser]
public class TokenizerBenchmarks
{
    private LlamaTokenizer _ours = null!;
    private TiktokenTokenizer _ml = null!;
    private string _text = "";

    [GlobalSetup]
    public void Setup()
    {
        string model = SharedFiles.Path("reference", "tokenizer", "tokenizer.model");
        _ours = Llama3Tokenizer.FromTiktokenModel(model);
        _ml = CreateMicrosoftMl(model, _ours);
        _text = MixedText(1 << 20);
        int ours = _ours.EncodeToIds(_text).Count, ml = _ml.EncodeToIds(_text).Count;
        Console.WriteLine($"// 1 MB mixed text: {Encoding.UTF8.GetByteCount(_text)} bytes; ours {ours} tokens, Microsoft.ML.Tokenizers {ml} tokens");
    }

    /// <summary>Microsoft.ML.Tokenizers' tiktoken with Meta's split pattern and the same special tokens.</summary>
    public static TiktokenTokenizer CreateMicrosoftMl(string tokenizerModel, LlamaTokenizer specialsFrom)
    {
        var specials = specialsFrom.SpecialTokens.ToDictionary(kv => kv.Key, kv => kv.Value);
        var pre = new RegexPreTokenizer(new Regex(Llama3Tokenizer.SplitPattern, RegexOptions.Compiled), specials);
        return TiktokenTokenizer.Create(tokenizerModel, pre, null, specials);
    }

    /// <summary>At least <paramref name="bytes"/> bytes of the shuffled short reference cases, one per line.</summary>
    public static string MixedText(int bytes)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedFiles.Path("reference", "tokenizer", "cases.json")));
        var texts = doc.RootElement.EnumerateArray()
            .Where(c => c.TryGetProperty("text", out var t) && t.GetString()!.Length < 2000)
            .Select(c => c.GetProperty("text").GetString()!).ToArray();
        var rng = new Random(42);
        var sb = new StringBuilder(bytes + 4096);
        int size = 0;
        while (size < bytes)
        {
            rng.Shuffle(texts);
            foreach (var t in texts)
            {
                sb.Append(t).Append('\n');
                size += Encoding.UTF8.GetByteCount(t) + 1;
                if (size >= bytes) break;
            }
        }
        return sb.ToString();
    }

    /// <summary>Our tokenizer.</summary>
    [Benchmark(Baseline = true)]
    public int Llama3Tokenizer_Encode() => _ours.EncodeToIds(_text).Count;

    /// <summary>Microsoft.ML.Tokenizers 2.0.1.</summary>
    [Benchmark]
    public int MicrosoftMLTokenizers_Encode() => _ml.EncodeToIds(_text).Count;
}
