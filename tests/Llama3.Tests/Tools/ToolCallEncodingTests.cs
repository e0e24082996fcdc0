using System.Text.Json.Nodes;
using Llama3.Tools;
using static Llama3.Tests.Tools.ToolTestData;

namespace Llama3.Tests.Tools;

/// <summary>Assistant turns with calls, as Meta's <c>ChatFormat.encode_message</c> and <c>ToolUtils.encode_tool_call</c> write them.</summary>
public class ToolCallEncodingTests
{
    private static string AssistantTurn(ToolMessage message, ToolPromptOptions options)
    {
        string text = Prompt.Render([message], options);
        return Between(text, "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    private static ToolMessage Calls(params ToolCall[] calls) => new("assistant", "") { ToolCalls = calls };

    // llama-models test_tokenizer.py test_encode_message_with_tool_call (commit b6dad01).
    [Fact]
    public void First_ids_match_Meta_test_encode_message_with_tool_call()
    {
        var options = new ToolPromptOptions { Format = ToolCallFormat.PythonList };
        int[] Head(ToolMessage m) => Prompt.Encode([m], options).Skip(1).Take(5).ToArray(); // after <|begin_of_text|>
        int start = Tokenizer.GetSpecialTokenId("<|start_header_id|>")!.Value, end = Tokenizer.GetSpecialTokenId("<|end_header_id|>")!.Value;
        int assistant = Tokenizer.EncodeToIds("assistant")[0], newlines = Tokenizer.EncodeToIds("\n\n")[0];

        var code = Calls(new ToolCall("code_interpreter", Args("""{"code": "print('Hello, world!')"}"""), "1"));
        Assert.Equal([start, assistant, end, newlines, Tokenizer.GetSpecialTokenId("<|python_tag|>")!.Value], Head(code));

        var custom = Calls(new ToolCall("custom_tool", Args("""{"some_param": "value"}"""), "1"));
        Assert.Equal([start, assistant, end, newlines, Tokenizer.EncodeToIds("[")[0]], Head(custom));
    }

    [Fact]
    public void Code_interpreter_call_is_the_code_after_the_tag_and_ends_with_eom()
    {
        var turn = Calls(new ToolCall("code_interpreter", Args("""{"code": "print(1 + 1)"}""")));
        Assert.Equal("<|python_tag|>print(1 + 1)<|eom_id|>", AssistantTurn(turn, new ToolPromptOptions()));
    }

    [Fact]
    public void Json_custom_call_is_Meta_json_dumps_and_ends_with_eom()
    {
        // encode_tool_call: json.dumps({"type": "function", "name": ..., "parameters": ...}): ", " and ": ", ASCII escapes.
        var turn = Calls(new ToolCall("trending_songs", Args("""{"n": "10", "genre": "Zürich \"\n\u007f 😀", "x": [1, 2.50, 1E5, -0, true, null], "o": {}}""")));
        Assert.Equal(
            """{"type": "function", "name": "trending_songs", "parameters": {"n": "10", "genre": "Z\u00fcrich \"\n\u007f \ud83d\ude00", "x": [1, 2.5, 100000.0, 0, true, null], "o": {}}}<|eom_id|>""",
            AssistantTurn(turn, new ToolPromptOptions { Tools = [TrendingSongs] }));
    }

    [Fact]
    public void Python_list_call_uses_Meta_format_value_and_ends_with_eot()
    {
        // format_value: strings in double quotes (not escaped), str() of numbers and bools, None, [a, b], {k=v}.
        var turn = Calls(new ToolCall("f", Args("""{"s": "San Francisco", "n": 10, "x": 1.5, "b": true, "z": null, "l": ["a", 1], "d": {"k": "v", "m": false}}""")));
        Assert.Equal("""[f(s="San Francisco", n=10, x=1.5, b=True, z=None, l=["a", 1], d={k="v", m=False})]<|eot_id|>""",
            AssistantTurn(turn, new ToolPromptOptions { Format = ToolCallFormat.PythonList }));
    }

    [Fact]
    public void Several_python_list_calls_are_one_list()
    {
        var turn = Calls(new ToolCall("g", Args("""{"city": "SF"}""")), new ToolCall("g", Args("""{"city": "Seattle"}""")));
        Assert.Equal("""[g(city="SF"), g(city="Seattle")]<|eot_id|>""", AssistantTurn(turn, new ToolPromptOptions { Format = ToolCallFormat.PythonList }));
    }

    [Fact]
    public void Builtin_calls_are_written_as_calls_in_either_format()
    {
        var search = Calls(new ToolCall("brave_search", Args("""{"query": "latest price of 1oz gold"}""")));
        // The model's own answer in prompt_format.md, less the tag llama-models no longer writes.
        Assert.Equal(MetaExamples.Llama31BuiltinToolsResponse.Replace("<|python_tag|>", ""), AssistantTurn(search, new ToolPromptOptions()));
        Assert.Equal(MetaExamples.Llama31BuiltinToolsResponse, AssistantTurn(search, new ToolPromptOptions { PythonTag = PythonTagPlacement.BuiltinTools }));
        Assert.Equal(MetaExamples.Llama31BuiltinToolsResponse.Replace("<|python_tag|>", ""),
            AssistantTurn(search, new ToolPromptOptions { Format = ToolCallFormat.PythonList }));
    }

    [Fact]
    public void A_custom_tool_named_like_a_builtin_is_custom()
    {
        var turn = Calls(new ToolCall("brave_search", Args("""{"query": "x"}""")));
        var options = new ToolPromptOptions { Tools = [new ToolDefinition("brave_search", "mine", null)], PythonTag = PythonTagPlacement.BuiltinTools };
        Assert.Equal("""{"type": "function", "name": "brave_search", "parameters": {"query": "x"}}<|eom_id|>""", AssistantTurn(turn, options));
    }

    [Fact]
    public void End_of_message_can_be_given()
    {
        var json = new ToolPromptOptions { Tools = [TrendingSongs] };
        var call = new ToolCall("trending_songs", Args("""{"n": 1}"""));
        Assert.EndsWith("}<|eot_id|>", AssistantTurn(new ToolMessage("assistant", "") { ToolCalls = [call], EndOfMessage = false }, json));
        Assert.EndsWith("]<|eom_id|>", AssistantTurn(new ToolMessage("assistant", "") { ToolCalls = [call], EndOfMessage = true },
            new ToolPromptOptions { Format = ToolCallFormat.PythonList }));
        Assert.Equal("Done.<|eot_id|>", AssistantTurn(new ToolMessage("assistant", "Done."), json));
        Assert.Equal("Wait<|eom_id|>", AssistantTurn(new ToolMessage("assistant", "Wait") { EndOfMessage = true }, json));
        // Only assistant turns end with <|eom_id|>.
        Assert.DoesNotContain("<|eom_id|>", Prompt.Render([new ToolMessage("user", "x") { EndOfMessage = true }], json));
    }

    [Fact]
    public void Content_comes_before_the_calls()
    {
        var turn = new ToolMessage("assistant", "Let me look.") { ToolCalls = [new ToolCall("code_interpreter", Args("""{"code": "x"}"""))] };
        Assert.Equal("<|python_tag|>Let me look.x<|eom_id|>", AssistantTurn(turn, new ToolPromptOptions()));
    }

    [Fact]
    public void Written_calls_read_back()
    {
        var args = Args("""{"s": "it's", "n": -3, "f": 0.25, "b": false, "z": null, "l": [1, "two", [3]], "d": {"k": {"j": 1}}}""");
        foreach (var format in new[] { ToolCallFormat.Json, ToolCallFormat.PythonList })
        {
            var turn = Calls(new ToolCall("f", (JsonObject)args.DeepClone()));
            string text = AssistantTurn(turn, new ToolPromptOptions { Format = format, Tools = [new ToolDefinition("f", null, null)] });
            var parsed = ToolCallParser.Parse(text, format, ["f"]);
            var call = Assert.Single(parsed.Calls);
            Assert.Equal("f", call.Name);
            Assert.True(JsonNode.DeepEquals(args, call.Arguments), $"{format}: {call.Arguments.ToJsonString()}");
            Assert.Equal("", parsed.Content);
        }
    }
}
