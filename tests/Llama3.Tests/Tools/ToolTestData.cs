using System.Text.Json.Nodes;
using Llama3.Tokenization;
using Llama3.Tools;

namespace Llama3.Tests.Tools;

/// <summary>Meta's example tools as JSON-schema definitions, and helpers to compare prompts with Meta's texts and ids.</summary>
internal static class ToolTestData
{
    /// <summary>
    /// <c>JsonCustomToolGenerator.data_examples()</c> (llama-models <c>system_prompts.py</c>): n (int, required) and
    /// genre (str, not required), as an OpenAI <c>parameters</c> schema.
    /// </summary>
    public static ToolDefinition TrendingSongs => new(
        "trending_songs",
        "Returns the trending songs on a Music site",
        Schema("""
            {"type": "object",
             "properties": {"n": {"type": "int", "description": "The number of songs to return"},
                            "genre": {"type": "str", "description": "The genre of the songs to return"}},
             "required": ["n"]}
            """));

    /// <summary><c>PythonListCustomToolGenerator.data_examples()</c>: city (string, required), metric (string, default celsius).</summary>
    public static ToolDefinition GetWeather => new(
        "get_weather",
        "Get weather info for places",
        Schema("""
            {"type": "object",
             "properties": {"city": {"type": "string", "description": "The name of the city to get the weather for"},
                            "metric": {"type": "string", "description": "The metric for weather. Options are: celsius, fahrenheit",
                                       "default": "celsius"}},
             "required": ["city"]}
            """));

    public static JsonObject Schema(string json) => JsonNode.Parse(json)!.AsObject();

    public static JsonObject Args(string json) => JsonNode.Parse(json)!.AsObject();

    public static LlamaTokenizer Tokenizer => Llama3.Tests.Tokenization.Tokenizers.Meta31;

    public static readonly ToolPrompt Prompt = new(Tokenizer);

    private static readonly string[] SpecialNames =
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"];

    /// <summary>
    /// The ids Meta's <c>ChatFormat</c> gives for a rendered prompt: special tokens where the text has them, and each
    /// text piece between them encoded on its own, with the <c>"\n\n"</c> after each header a piece of its own
    /// (<c>_encode_header</c> encodes it separately from the content).
    /// </summary>
    public static List<int> MetaPieceIds(string rendered)
    {
        var ids = new List<int>();
        int i = 0;
        while (i < rendered.Length)
        {
            string? special = SpecialNames.FirstOrDefault(n => string.CompareOrdinal(rendered, i, n, 0, n.Length) == 0);
            if (special is not null)
            {
                ids.Add(Tokenizer.GetSpecialTokenId(special)!.Value);
                i += special.Length;
                if (special == "<|end_header_id|>" && string.CompareOrdinal(rendered, i, "\n\n", 0, 2) == 0)
                {
                    Tokenizer.EncodeToIds("\n\n", ids);
                    i += 2;
                }
                continue;
            }
            int next = rendered.Length;
            foreach (string n in SpecialNames)
            {
                int at = rendered.IndexOf(n, i, StringComparison.Ordinal);
                if (at >= 0 && at < next) next = at;
            }
            Tokenizer.EncodeToIds(rendered[i..next], ids);
            i = next;
        }
        return ids;
    }

    /// <summary>
    /// Asserts the rendered text is <paramref name="expected"/>, and the ids are Meta's piecewise ids of it and (unless
    /// told otherwise) also the tokenizer's ids of the whole text with special tokens allowed.
    /// </summary>
    public static void AssertPrompt(string expected, IReadOnlyList<ToolMessage> dialog, ToolPromptOptions options, bool idsEqualWholeText = true)
    {
        Assert.Equal(expected, Prompt.Render(dialog, options));
        var ids = Prompt.Encode(dialog, options);
        Assert.Equal(MetaPieceIds(expected), ids);
        var whole = Tokenizer.EncodeToIds(expected, specials: SpecialTokenMode.Allow);
        if (idsEqualWholeText) Assert.Equal(whole, ids);
        else Assert.NotEqual(whole, ids);
        Assert.Equal(expected, Tokenizer.Decode(ids));
    }

    /// <summary>The text between the first <paramref name="start"/> and the next <paramref name="end"/>.</summary>
    public static string Between(string text, string start, string end)
    {
        int s = text.IndexOf(start, StringComparison.Ordinal);
        Assert.True(s >= 0, $"'{start}' not found");
        s += start.Length;
        int e = text.IndexOf(end, s, StringComparison.Ordinal);
        Assert.True(e >= 0, $"'{end}' not found");
        return text[s..e];
    }
}
