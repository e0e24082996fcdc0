using System.Text;
using System.Text.Json.Nodes;
using Llama3.Tools;
using static Llama3.Tests.Tools.ToolTestData;

namespace Llama3.Tests.Tools;

/// <summary>Model answers read as text or calls: Meta's documented answers, Meta's parser tests, edge cases, malformed text.</summary>
public class ToolCallParserTests
{
    private static ToolCall Single(string text, ToolCallFormat format = ToolCallFormat.Json, IReadOnlyCollection<string>? known = null)
    {
        var result = ToolCallParser.Parse(text, format, known);
        Assert.Equal("", result.Content);
        return Assert.Single(result.Calls);
    }

    private static void AssertCall(ToolCall call, string name, string argsJson)
    {
        Assert.Equal(name, call.Name);
        Assert.True(JsonNode.DeepEquals(Args(argsJson), call.Arguments), call.Arguments.ToJsonString());
        Assert.Null(call.Id);
    }

    private static void AssertText(string text, ToolCallFormat format = ToolCallFormat.Json, IReadOnlyCollection<string>? known = null,
        string? content = null)
    {
        var result = ToolCallParser.Parse(text, format, known);
        Assert.Empty(result.Calls);
        Assert.Equal(content ?? text, result.Content);
    }

    // --- Meta's documented model answers (prompt_format.md, text_prompt_format.md) ---

    [Fact]
    public void Llama31_builtin_search_answer()
    {
        AssertCall(Single(MetaExamples.Llama31BuiltinToolsResponse), "brave_search", """{"query": "latest price of 1oz gold"}""");
    }

    [Fact]
    public void Llama31_code_interpreter_answers()
    {
        foreach (string answer in new[] { MetaExamples.Llama31CodeInterpreterResponse, MetaExamples.Llama32CodeInterpreterResponse })
        {
            var call = Single(answer);
            Assert.Equal("code_interpreter", call.Name);
            string code = answer["<|python_tag|>".Length..^"<|eom_id|>".Length];
            Assert.StartsWith("def is_prime(n):", code);
            Assert.Equal(code, (string)call.Arguments["code"]!);
        }
    }

    [Fact]
    public void Llama31_json_answer()
    {
        AssertCall(Single(MetaExamples.Llama31JsonToolsResponse, known: ["trending_songs"]), "trending_songs", """{"n": "10", "genre": "all"}""");
    }

    [Fact]
    public void Llama31_function_tag_answer()
    {
        AssertCall(Single(MetaExamples.Llama31FunctionTagResponse), "trending_songs", """{"n": 10}""");
    }

    [Fact]
    public void Llama31_final_answer_is_text()
    {
        AssertText(MetaExamples.Llama31BuiltinRoundTripResponse, content: "The 100th decimal of pi is 7.");
    }

    [Fact]
    public void Llama32_parallel_calls_answer()
    {
        var result = ToolCallParser.Parse(MetaExamples.Llama32ZeroShotResponse, ToolCallFormat.PythonList, ["get_weather"]);
        Assert.Equal("", result.Content);
        Assert.Equal(2, result.Calls.Count); // Meta's decoder keeps only the first (FIXME in tool_utils.py)
        AssertCall(result.Calls[0], "get_weather", """{"city": "San Francisco", "metric": "celsius"}""");
        AssertCall(result.Calls[1], "get_weather", """{"city": "Seattle", "metric": "celsius"}""");
    }

    [Fact]
    public void Llama32_user_message_answer()
    {
        AssertCall(Single(MetaExamples.Llama32UserMessageResponse, ToolCallFormat.PythonList), "get_user_info", """{"user_id": 7890, "special": "black"}""");
    }

    // --- Meta's parser tests (llama-models models/llama3/tests/api/test_tool_utils.py) ---

    [Fact]
    public void Meta_test_maybe_extract_custom_tool_call()
    {
        AssertCall(Single("""<function=getWeather>{"location":"New York","date":"2023-08-05"}"""), "getWeather",
            """{"location": "New York", "date": "2023-08-05"}""");
    }

    [Theory]
    [InlineData("""[get_boiling_point(liquid_name="water", celcius=True)]""", """[["get_boiling_point", {"liquid_name": "water", "celcius": true}]]""")]
    [InlineData("""[get_boiling_point(liquid_name="water", celcius=True), get_melting_point(substance="ice", kelvin=False)]""",
        """[["get_boiling_point", {"liquid_name": "water", "celcius": true}], ["get_melting_point", {"substance": "ice", "kelvin": false}]]""")]
    [InlineData("""[get_boiling_point(liquid_name="water", celcius=True, precise=False)]""",
        """[["get_boiling_point", {"liquid_name": "water", "celcius": true, "precise": false}]]""")]
    [InlineData("[calculate_volume(radius=5.2, height=10)]", """[["calculate_volume", {"radius": 5.2, "height": 10}]]""")]
    [InlineData("""[process_data(name="sample", value=42, active=True, ratio=3.14)]""",
        """[["process_data", {"name": "sample", "value": 42, "active": true, "ratio": 3.14}]]""")]
    [InlineData("[initialize()]", """[["initialize", {}]]""")]
    [InlineData("""[analyze_text(content="Hello, world!", language="en")]""", """[["analyze_text", {"content": "Hello, world!", "language": "en"}]]""")]
    [InlineData("""[get_boiling_point(liquid={"name":"water", "color":"translucent"}), convert_temperature(value=[100, 101], from_unit="C", to_unit="F")]""",
        """[["get_boiling_point", {"liquid": {"name": "water", "color": "translucent"}}], ["convert_temperature", {"value": [100, 101], "from_unit": "C", "to_unit": "F"}]]""")]
    public void Meta_valid_python_lists(string text, string expected)
    {
        var result = ToolCallParser.Parse(text, ToolCallFormat.PythonList);
        var want = JsonNode.Parse(expected)!.AsArray();
        Assert.Equal(want.Count, result.Calls.Count);
        for (int i = 0; i < want.Count; i++) AssertCall(result.Calls[i], (string)want[i]![0]!, want[i]![1]!.ToJsonString());
    }

    [Theory]
    [InlineData("[]")]                                                    // test_invalid_empty_list
    [InlineData("""[get_boiling_point(liquid_name="water"), 42]""")]     // test_invalid_list_with_non_function_call
    [InlineData("""[get_boiling_point("water", True)]""")]               // test_invalid_list_with_positional_args
    [InlineData("""[[get_boiling_point(liquid_name="water")]]""")]       // test_invalid_nested_list
    [InlineData("""{"func": get_boiling_point(liquid_name="water")}""")] // test_invalid_dict
    [InlineData("""[get_boiling_point(liquid_name="water", celcius=True""")] // test_invalid_syntax
    [InlineData("""get_boiling_point(liquid_name="water")""")]           // test_invalid_bare_function_call
    [InlineData("""[(get_boiling_point(liquid_name="water"),)]""")]      // test_invalid_extra_char_function_call
    public void Meta_invalid_python_lists_are_text(string text)
    {
        AssertText(text, ToolCallFormat.PythonList);
    }

    // --- JSON calls ---

    [Theory]
    [InlineData("""{"name": "f", "parameters": {"a": 1}}""")]
    [InlineData("""{"type": "function", "name": "f", "parameters": {"a": 1}}""")]
    [InlineData("""{"name": "f", "arguments": {"a": 1}}""")]             // as fine-tunes and OpenAI-style models write (Meta: "parameters" only)
    [InlineData("""{"name": "f", "parameters": "{\"a\": 1}"}""")]        // arguments as a JSON string
    [InlineData("""<|python_tag|>  {"name": "f", "parameters": {"a": 1}}  """)]
    [InlineData("""{"name": "f", "parameters": {"a": 1}}<|eot_id|>""")]
    [InlineData("  \n{\n  \"name\": \"f\",\n  \"parameters\": {\"a\": 1}\n}\n")]
    public void Json_call_forms(string text)
    {
        AssertCall(Single(text, ToolCallFormat.Json, ["f"]), "f", """{"a": 1}""");
        // Meta's decoder reads every form whatever the prompt format; so does this.
        AssertCall(Single(text, ToolCallFormat.PythonList, ["f"]), "f", """{"a": 1}""");
    }

    [Theory]
    [InlineData("""{"name": "f"}""")]                                      // Meta: KeyError on "parameters"
    [InlineData("""{"name": 5, "parameters": {}}""")]
    [InlineData("""{"parameters": {"a": 1}}""")]
    [InlineData("""{"name": "f", "parameters": [1]}""")]
    [InlineData("""{"name": "f", "parameters": "not json"}""")]
    [InlineData("""{"name": "f", "parameters": {"a": 1}}; {"name": "g", "parameters": {}}""")] // Meta's parser takes one object
    [InlineData("""{"name": "f", "parameters": {"a": 1}}{"name": "g", "parameters": {}}""")]
    [InlineData("""{"name": "f", "parameters": {"a": 1}} and then some text""")]
    [InlineData("""Sure: {"name": "f", "parameters": {"a": 1}}""")]
    [InlineData("""{"answer": 42}""")]
    [InlineData("""{"name": "f", "parameters": {"a": 1},}""")]
    public void Json_that_is_not_a_call_is_text(string text)
    {
        AssertText(text, ToolCallFormat.Json, ["f", "g"]);
    }

    [Fact]
    public void A_repeated_json_key_keeps_the_last_value_as_json_loads()
    {
        AssertCall(Single("""{"name": "f", "parameters": {"a": 1, "a": 2}, "name": "g"}"""), "g", """{"a": 2}""");
    }

    [Fact]
    public void Builtin_names_in_custom_forms_get_Meta_query_mapping()
    {
        // decode_assistant_message_from_content: a custom-format call of a builtin gets {"query": first value}.
        AssertCall(Single("""{"name": "brave_search", "parameters": {"q": "weather"}}"""), "brave_search", """{"query": "weather"}""");
        AssertCall(Single("""[wolfram_alpha(query="2+2")]""", ToolCallFormat.PythonList), "wolfram_alpha", """{"query": "2+2"}""");
        AssertCall(Single("""{"name": "code_interpreter", "parameters": {"source": "print(1)"}}"""), "code_interpreter", """{"code": "print(1)"}""");
    }

    // --- builtin calls ---

    [Theory]
    [InlineData("""brave_search.call(query="a \"b\" c")""", "a \"b\" c")]
    [InlineData("""<|python_tag|>wolfram_alpha.call(query='x^2')""", "x^2")]
    [InlineData("""<|python_tag|>brave_search.call(query="q")<|eom_id|>""", "q")]
    [InlineData(" brave_search.call( query = \"q\" ) \n", "q")]
    public void Builtin_call_forms(string text, string query)
    {
        var call = Single(text);
        Assert.Equal(query, (string)call.Arguments["query"]!);
        Assert.Single(call.Arguments);
    }

    [Fact]
    public void Text_before_the_python_tag_is_content()
    {
        var result = ToolCallParser.Parse("Let me check.<|python_tag|>brave_search.call(query=\"x\")<|eom_id|>", ToolCallFormat.Json);
        Assert.Equal("Let me check.", result.Content);
        AssertCall(Assert.Single(result.Calls), "brave_search", """{"query": "x"}""");
    }

    [Fact]
    public void Known_tools_and_builtins_limit_what_is_a_call()
    {
        const string json = """{"name": "f", "parameters": {}}""";
        AssertText(json, known: ["g"]);
        AssertCall(Single(json, known: ["f", "g"]), "f", "{}");
        AssertText("[f(), g()]", ToolCallFormat.PythonList, ["g"]); // one unknown call makes the whole answer text
        AssertText("""unknown_tool.call(query="x")""", known: ["f"]);
        AssertCall(Single("""my_search.call(query="x")""", known: ["my_search"]), "my_search", """{"query": "x"}""");

        // Built-in tools: all accepted without a list (as Meta), else only those given or named in knownTools.
        const string search = """<|python_tag|>brave_search.call(query="x")""";
        Assert.Single(ToolCallParser.Parse(search, ToolCallFormat.Json, ["f"]).Calls);
        var refused = ToolCallParser.Parse(search, ToolCallFormat.Json, ["f"], BuiltinTools.WolframAlpha);
        Assert.Empty(refused.Calls);
        Assert.Equal("""brave_search.call(query="x")""", refused.Content); // the tag is not shown as text
        Assert.Single(ToolCallParser.Parse(search, ToolCallFormat.Json, ["brave_search"], BuiltinTools.None).Calls);
        Assert.Single(ToolCallParser.Parse(search, ToolCallFormat.Json, null, BuiltinTools.BraveSearch).Calls);

        const string code = "<|python_tag|>print(1)";
        Assert.Equal("code_interpreter", Assert.Single(ToolCallParser.Parse(code, ToolCallFormat.Json).Calls).Name);
        var noCode = ToolCallParser.Parse(code, ToolCallFormat.Json, null, BuiltinTools.BraveSearch);
        Assert.Empty(noCode.Calls);
        Assert.Equal("print(1)", noCode.Content);
    }

    [Fact]
    public void A_tagged_call_of_an_unknown_tool_is_not_code()
    {
        // Meta would take any tagged text as code; a well-formed call of an unknown tool is text instead.
        var result = ToolCallParser.Parse("""<|python_tag|>{"name": "nope", "parameters": {}}""", ToolCallFormat.Json, ["f"]);
        Assert.Empty(result.Calls);
        Assert.Equal("""{"name": "nope", "parameters": {}}""", result.Content);
        // Malformed JSON after the tag is code, as in Meta's decoder.
        Assert.Equal("code_interpreter", Assert.Single(ToolCallParser.Parse("<|python_tag|>{\"name\": ", ToolCallFormat.Json, ["f"]).Calls).Name);
    }

    [Theory]
    [InlineData("Hello!")]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("The answer is [1, 2, 3].")]
    [InlineData("Use brave_search.call(query=\"x\") to search.")] // Meta searches anywhere; here a call must be the whole answer
    [InlineData("<function=>{}")]
    [InlineData("<function=f>not json</function>")]
    [InlineData("<function=f}>{}</function>")]
    public void Plain_text_is_content_unchanged(string text)
    {
        AssertText(text);
    }

    [Fact]
    public void Function_tag_with_single_quotes_reads_as_Meta_replaces_them()
    {
        AssertCall(Single("<function=f>{'a': 'b'}</function>"), "f", """{"a": "b"}""");
    }

    // --- Python literals (ast.literal_eval) ---

    [Theory]
    [InlineData("""[f(a='single', b="double")]""", """{"a": "single", "b": "double"}""")]
    [InlineData("""[f(a='it\'s', b="say \"hi\"", c='\\', d="\n\t\x41\u00e9\U0001F600\101")]""",
        """{"a": "it's", "b": "say \"hi\"", "c": "\\", "d": "\n\tA\u00e9\ud83d\ude00A"}""")]
    [InlineData("""[f(a=r"\d+", b='''tri'ple''', c="ab" 'cd', d=u"x", e="\q")]""", """{"a": "\\d+", "b": "tri'ple", "c": "abcd", "d": "x", "e": "\\q"}""")]
    [InlineData("[f(a=0x1F, b=0o17, c=0b101, d=1_000, e=-5, f=+3, g=- 2)]", """{"a": 31, "b": 15, "c": 5, "d": 1000, "e": -5, "f": 3, "g": -2}""")]
    [InlineData("[f(a=1.5, b=.5, c=5., d=1e3, e=-2.5E-2)]", """{"a": 1.5, "b": 0.5, "c": 5.0, "d": 1000.0, "e": -0.025}""")]
    [InlineData("[f(a=True, b=False, c=None, d=true, e=false, f=null)]", """{"a": true, "b": false, "c": null, "d": true, "e": false, "f": null}""")]
    [InlineData("[f(a=[1, [2, 3]], b=(1, 2), c=(1,), d=(5), e=(), f={1, 2}, g={}, h={'k': [1]}, i={1: 'x'})]",
        """{"a": [1, [2, 3]], "b": [1, 2], "c": [1], "d": 5, "e": [], "f": [1, 2], "g": {}, "h": {"k": [1]}, "i": {"1": "x"}}""")]
    [InlineData("[f(d={k=\"v\", n={m=1}})]", """{"d": {"k": "v", "n": {"m": 1}}}""")] // Meta's encode_tool_call dict form
    [InlineData("[\n  f(\n    a=1,  # comment\n    b=2,\n  ),\n]", """{"a": 1, "b": 2}""")]
    [InlineData("[f(a=123456789012345678901234567890)]", """{"a": 123456789012345678901234567890}""")]
    public void Python_literal_arguments(string text, string expected)
    {
        AssertCall(Single(text, ToolCallFormat.PythonList), "f", expected);
    }

    [Theory]
    [InlineData("[f(a=b)]")]             // a variable
    [InlineData("[f(a=g())]")]           // a call
    [InlineData("[f(a=1, a=2)]")]        // repeated keyword
    [InlineData("[f(a=1j)]")]            // complex
    [InlineData("[f(a=1e999)]")]         // inf: JSON cannot hold it
    [InlineData("[f(a=b'x')]")]          // bytes
    [InlineData("[f(a=f'x')]")]          // f-string
    [InlineData("[f(a='unterminated)]")]
    [InlineData("[f(a='line\nbreak')]")]
    [InlineData("[f(True=1)]")]
    [InlineData("[f(a=[1, 2)]")]
    [InlineData("[f(a={[1]: 2})]")]      // unhashable key
    [InlineData("[f(**kw)]")]
    [InlineData("[f.g(a=1)]")]           // Meta requires a plain name
    [InlineData("[f(a=1)] trailing")]
    [InlineData("[f(a==1)]")]
    public void Python_that_is_not_a_literal_call_is_text(string text)
    {
        AssertText(text, ToolCallFormat.PythonList);
    }

    [Fact]
    public void Lone_surrogate_escapes_become_replacement_characters()
    {
        AssertCall(Single("""[f(a="\ud800x")]""", ToolCallFormat.PythonList), "f", """{"a": "\ufffdx"}""");
        AssertCall(Single("""[f(a="\ud83d\ude00")]""", ToolCallFormat.PythonList), "f", """{"a": "\ud83d\ude00"}""");
    }

    // --- malformed input never throws ---

    [Fact]
    public void Deep_nesting_is_text_not_a_crash()
    {
        string deepPy = "[f(a=" + new string('[', 100_000) + new string(']', 100_000) + ")]";
        AssertText(deepPy, ToolCallFormat.PythonList);
        string deepJson = "{\"name\": \"f\", \"parameters\": {\"a\": " + new string('[', 100_000) + new string(']', 100_000) + "}}";
        AssertText(deepJson, ToolCallFormat.Json);
        Assert.True(ToolCallParser.MayBeToolCall(deepJson[..^2], ToolCallFormat.Json));
    }

    [Fact]
    public void Random_syntax_never_throws()
    {
        var rng = new Random(1234);
        string[] atoms = ["[", "]", "(", ")", "{", "}", ",", "=", ":", "\"", "'", "\\", "f", "a", "1", ".", "e", "-", " ", "\n",
            "True", "None", "name", "parameters", "<|python_tag|>", "<function=", "</function>", ">", ".call(", "query", "#", "0x", "\\u", "\\U", "r", "b"];
        var sb = new StringBuilder();
        for (int n = 0; n < 5000; n++)
        {
            sb.Clear();
            int len = rng.Next(0, 30);
            if (rng.Next(3) == 0) sb.Append(rng.Next(2) == 0 ? "[f(" : "{\"name\": \"f\", \"parameters\": ");
            for (int i = 0; i < len; i++) sb.Append(atoms[rng.Next(atoms.Length)]);
            string text = sb.ToString();
            foreach (var format in new[] { ToolCallFormat.Json, ToolCallFormat.PythonList })
            {
                var result = ToolCallParser.Parse(text, format);
                Assert.NotNull(result.Content);
                foreach (var call in result.Calls) _ = call.Arguments.ToJsonString(); // always serializable
                _ = ToolCallParser.MayBeToolCall(text, format);
            }
        }
    }
}
