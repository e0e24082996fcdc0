using System.Text.Json;
using Llama3.Tokenization;

namespace Llama3.Tests.Tokenization;

/// <summary>The tokenizers under test, loaded once per test run from the shared reference files.</summary>
public static class Tokenizers
{
    private static readonly Lazy<LlamaTokenizer> MetaV30 = new(() =>
        Llama3Tokenizer.FromTiktokenModel(SharedData.Path("reference", "tokenizer", "tokenizer.model"), Llama3SpecialTokenNames.Llama3_0));
    private static readonly Lazy<LlamaTokenizer> MetaV31 = new(() =>
        Llama3Tokenizer.FromTiktokenModel(SharedData.Path("reference", "tokenizer", "tokenizer.model"), Llama3SpecialTokenNames.Llama3_1));
    private static readonly Lazy<LlamaTokenizer> Hf = new(() =>
        LlamaTokenizer.FromFile(SharedData.Path("reference", "tokenizer", "hf-llama3", "tokenizer.json")));
    private static readonly Lazy<LlamaTokenizer> Gguf = new(() =>
        LlamaTokenizer.FromFile(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf")));
    private static readonly Lazy<LlamaTokenizer> Spm = new(() =>
        LlamaTokenizer.FromFile(SharedData.Path("reference", "tokenizer", "llamacpp", "ggml-vocab-llama-spm.gguf")));
    private static readonly Lazy<LlamaTokenizer> Stories = new(() =>
        LlamaTokenizer.FromFile(SharedData.Path("models", "stories260K.gguf")));

    /// <summary>Meta's tokenizer.model with Llama 3.0 special-token names.</summary>
    public static LlamaTokenizer Meta30 => MetaV30.Value;

    /// <summary>Meta's tokenizer.model with Llama 3.1 special-token names.</summary>
    public static LlamaTokenizer Meta31 => MetaV31.Value;

    /// <summary>Hugging Face's tokenizer.json (Llama 3.0 names).</summary>
    public static LlamaTokenizer HuggingFace => Hf.Value;

    /// <summary>The Llama 3 vocabulary from GGUF metadata.</summary>
    public static LlamaTokenizer FromGguf => Gguf.Value;

    /// <summary>llama.cpp's Llama 1/2 SentencePiece vocabulary.</summary>
    public static LlamaTokenizer SentencePiece => Spm.Value;

    /// <summary>The stories260K vocabulary (SentencePiece, 512 tokens).</summary>
    public static LlamaTokenizer Stories260K => Stories.Value;

    /// <summary>A Llama 3 tokenizer by loader name.</summary>
    public static LlamaTokenizer Llama3(string loader) => loader switch
    {
        "tokenizer.model" => Meta31,
        "tokenizer.model-3.0" => Meta30,
        "tokenizer.json" => HuggingFace,
        "gguf" => FromGguf,
        _ => throw new ArgumentException(loader),
    };

    /// <summary>Reads a JSON-lines-ish reference file: a JSON array, or one object per line.</summary>
    public static List<JsonElement> ReadCases(params string[] path)
    {
        string text = File.ReadAllText(SharedData.Path(path));
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).ToList();
    }

    /// <summary>An int array property.</summary>
    public static int[] Ids(JsonElement e, string name) => e.GetProperty(name).EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
