using System.Text.Json.Nodes;
using Llama3.Tools;
using static Llama3.Tests.Tools.ToolTestData;

namespace Llama3.Tests.Tools;

/// <summary>
/// Whole prompts against Meta's documented examples (<see cref="MetaExamples"/>): the text byte for byte, and the ids
/// as Meta's <c>ChatFormat</c> encodes them.
/// </summary>
public class ToolPromptGoldenTests
{
    private static readonly DateOnly Sep21 = new(2024, 9, 21);

    private const string SystemHeader = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n";

    // prompt_format.md "Builtin Tool Calling": LLama31Interface.system_messages with BuiltinToolGenerator's example
    // tools [code_interpreter, brave_search, wolfram_alpha] and the instruction "You are a helpful assistant.".
    [Fact]
    public void Llama31_builtin_tools_system_prompt_matches_Meta()
    {
        AssertPrompt(MetaExamples.Llama31BuiltinToolsPrompt,
            [new("system", "You are a helpful assistant."), new("user", "Search the web for the latest price of 1oz gold?")],
            new ToolPromptOptions
            {
                Builtin = BuiltinTools.CodeInterpreter | BuiltinTools.BraveSearch | BuiltinTools.WolframAlpha,
                TodayDate = Sep21,
            });
    }

    // prompt_format.md "Builtin Code Interpreter": a hand-written system message "Environment: ipython" and no tools,
    // so the dialog is written as given (and not stripped).
    [Fact]
    public void Llama31_code_interpreter_dialog_is_written_as_given()
    {
        AssertPrompt(MetaExamples.Llama31CodeInterpreterPrompt,
            [new("system", "Environment: ipython"),
             new("user", "Write code to check if number is prime, use that to see if the number 7 is prime")],
            new ToolPromptOptions());
    }

    private static List<ToolMessage> WolframRoundTrip() =>
    [
        // prompts.py: RawMessage(role="system", content="Environment: ipython\nTools: brave_search, wolfram_alpha\n")
        new("system", "Environment: ipython\nTools: brave_search, wolfram_alpha\n"),
        new("user", "What is the 100th decimal of pi?"),
        new("assistant", "") { ToolCalls = [new ToolCall("wolfram_alpha", Args("""{"query": "100th decimal of pi"}"""), "tool_call_id")] },
        new("tool", Between(MetaExamples.Llama31BuiltinRoundTripPrompt, "<|start_header_id|>ipython<|end_header_id|>\n\n", "<|eot_id|>")),
    ];

    // prompt_format.md "Built-in tools full interaction": user -> assistant builtin call (<|eom_id|>) -> ipython
    // result -> assistant header. The document predates llama-models' February 2025 change, so it has
    // <|python_tag|> before the wolfram_alpha call: PythonTagPlacement.AllToolCalls.
    [Fact]
    public void Llama31_builtin_round_trip_matches_Meta()
    {
        var dialog = WolframRoundTrip();
        Assert.StartsWith("\n{", dialog[3].Content); // the tool result starts with a newline: Meta does not strip
        // Meta encodes the header's "\n\n" and the content's "\n{" apart, so the ids are not those of the whole text.
        AssertPrompt(MetaExamples.Llama31BuiltinRoundTripPrompt, dialog,
            new ToolPromptOptions { PythonTag = PythonTagPlacement.AllToolCalls }, idsEqualWholeText: false);
        AssertPrompt(MetaExamples.Llama31BuiltinRoundTripPrompt, dialog,
            new ToolPromptOptions { PythonTag = PythonTagPlacement.BuiltinTools }, idsEqualWholeText: false);
    }

    [Fact]
    public void Current_Meta_chat_format_writes_python_tag_only_for_the_code_interpreter()
    {
        // chat_format.py at HEAD: <|python_tag|> only when tool_calls[0] is code_interpreter.
        string expected = MetaExamples.Llama31BuiltinRoundTripPrompt.Replace(
            "<|end_header_id|>\n\n<|python_tag|>wolfram_alpha.call", "<|end_header_id|>\n\nwolfram_alpha.call", StringComparison.Ordinal);
        Assert.NotEqual(MetaExamples.Llama31BuiltinRoundTripPrompt, expected);
        AssertPrompt(expected, WolframRoundTrip(), new ToolPromptOptions(), idsEqualWholeText: false);
    }

    private static readonly List<ToolMessage> TrendingDialog =
        [new("system", "You are a helpful assistant."), new("user", "Use tools to get latest trending songs")];

    // prompt_format.md "JSON based tool calling": Environment: ipython (custom tools), the date lines, the instruction,
    // then JsonCustomToolGenerator's text as a user message of its own.
    [Fact]
    public void Llama31_json_custom_tools_in_a_user_message_match_Meta()
    {
        AssertPrompt(MetaExamples.Llama31JsonToolsPrompt, TrendingDialog,
            new ToolPromptOptions { Tools = [TrendingSongs], ToolsInUserMessage = true, TodayDate = Sep21 });
    }

    // System placement: Meta has no example (its Llama 3.1 code always uses a user message), so the expected text is
    // Meta's pieces — the system prompt of the example above and test_system_prompts.py's JsonCustomToolGenerator
    // text — joined in the Hugging Face template's order: date lines, tools, system text.
    [Fact]
    public void Llama31_json_custom_tools_in_the_system_message()
    {
        string system = Between(MetaExamples.Llama31JsonToolsPrompt, SystemHeader, "<|eot_id|>");
        Assert.Equal("Environment: ipython\n\nCutting Knowledge Date: December 2023\nToday Date: 21 September 2024\n\nYou are a helpful assistant.\n", system);
        string expected = SystemHeader +
            "Environment: ipython\n\nCutting Knowledge Date: December 2023\nToday Date: 21 September 2024\n\n" +
            MetaExamples.JsonCustomToolsOnly + "\n\nYou are a helpful assistant.\n<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nUse tools to get latest trending songs<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n";
        AssertPrompt(expected, TrendingDialog, new ToolPromptOptions { Tools = [TrendingSongs], TodayDate = Sep21 });
    }

    // The Hugging Face template's placement: the declarations open the first user message.
    [Fact]
    public void Llama31_json_custom_tools_merged_into_the_first_user_message()
    {
        string expected = MetaExamples.Llama31JsonToolsPrompt.Replace(
            "Return function calls in JSON format.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n",
            "Return function calls in JSON format.\n\n", StringComparison.Ordinal);
        Assert.NotEqual(MetaExamples.Llama31JsonToolsPrompt, expected);
        AssertPrompt(expected, TrendingDialog, new ToolPromptOptions
        {
            Tools = [TrendingSongs], ToolsInUserMessage = true, MergeToolsIntoFirstUserMessage = true, TodayDate = Sep21,
        });
    }

    // text_prompt_format.md "Code Interpreter": made with the Llama 3.1 interface (llama3_1_builtin_code_interpreter_dialog).
    [Fact]
    public void Llama32_code_interpreter_prompt_matches_Meta()
    {
        AssertPrompt(MetaExamples.Llama32CodeInterpreterPrompt,
            [new("user", "Write code to check if number is prime. Use it to verify if number 7 is prime")],
            new ToolPromptOptions { Builtin = BuiltinTools.CodeInterpreter, TodayDate = new DateOnly(2024, 9, 24) });
    }

    // text_prompt_format.md "Zero shot function calling E2E format": a hand-written system message (prompts_text.py
    // system_tool_call()), a python_list call turn (end_of_turn), a JSON tool result, the assistant header. The
    // document predates the February 2025 change, so the call has <|python_tag|>.
    [Fact]
    public void Llama32_pythonic_round_trip_matches_Meta()
    {
        var dialog = PythonicRoundTrip();
        AssertPrompt(MetaExamples.Llama32RoundTripPrompt, dialog,
            new ToolPromptOptions { Format = ToolCallFormat.PythonList, PythonTag = PythonTagPlacement.AllToolCalls });
        // Current llama-models: no tag before a custom call.
        string current = MetaExamples.Llama32RoundTripPrompt.Replace("<|python_tag|>[get_weather", "[get_weather", StringComparison.Ordinal);
        Assert.NotEqual(MetaExamples.Llama32RoundTripPrompt, current);
        AssertPrompt(current, dialog, new ToolPromptOptions { Format = ToolCallFormat.PythonList });
    }

    private static List<ToolMessage> PythonicRoundTrip() =>
    [
        new("system", Between(MetaExamples.Llama32RoundTripPrompt, SystemHeader, "<|eot_id|>")),
        new("user", "What is the weather in SF?"),
        new("assistant", "") { ToolCalls = [new ToolCall("get_weather", Args("""{"city": "San Francisco", "metric": "celsius"}"""), "cc")] },
        new("tool", "\"25 C\""), // json.dumps("25 C")
    ];

    // Llama 3.2 tools from the generator: PythonListCustomToolGenerator's text (test_system_prompts.py) as the system
    // message, around text_prompt_format.md's "Zero shot function calling" dialog.
    [Fact]
    public void Llama32_pythonic_tools_system_prompt()
    {
        string docSystem = Between(MetaExamples.Llama32ZeroShotPrompt, SystemHeader, "<|eot_id|>");
        // The document's system message was written by hand; it differs from the generator only in how "required" is laid out.
        Assert.Equal(docSystem, MetaExamples.PythonListZeroShot.Replace(
            "\"required\": [\"city\"],", "\"required\": [\n                \"city\"\n            ],", StringComparison.Ordinal));
        string expected = MetaExamples.Llama32ZeroShotPrompt.Replace(docSystem, MetaExamples.PythonListZeroShot, StringComparison.Ordinal);
        AssertPrompt(expected, [new("user", "What is the weather in SF and Seattle?")],
            new ToolPromptOptions { Format = ToolCallFormat.PythonList, Tools = [GetWeather] });
    }

    [Fact]
    public void Llama32_system_text_is_appended_after_the_tools_and_builtin_tools_come_first()
    {
        // llama-stack augment_messages_for_tools_llama_3_2: builtin block + "\n", tools + "\n", system text, strip("\n").
        var options = new ToolPromptOptions { Format = ToolCallFormat.PythonList, Tools = [GetWeather], Builtin = BuiltinTools.BraveSearch };
        string expected = SystemHeader + "Environment: ipython\nTools: brave_search\n" + MetaExamples.PythonListZeroShot +
            "\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        AssertPrompt(expected, [new("system", "Be brief."), new("user", "Hi")], options);
    }

    [Fact]
    public void Llama32_override_prompt_replaces_Meta_default_instructions()
    {
        var options = new ToolPromptOptions
        {
            Format = ToolCallFormat.PythonList, Tools = [GetWeather], PythonListSystemPrompt = MetaExamples.PythonListOverrideTemplate,
        };
        // The generator's text starts with "\n" (test_llama_3_2_provided_system_prompt); the assembly strips it.
        Assert.StartsWith("\n", MetaExamples.PythonListOverride);
        string expected = SystemHeader + MetaExamples.PythonListOverride.TrimStart('\n') +
            "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        AssertPrompt(expected, [new("user", "Hi")], options);
    }

    [Fact]
    public void Without_today_date_the_prompt_has_the_local_date()
    {
        string before = ToolPromptTemplates.FormatDate(DateOnly.FromDateTime(DateTime.Now));
        string text = Prompt.Render([new("user", "Hi")], new ToolPromptOptions { Builtin = BuiltinTools.BraveSearch });
        string after = ToolPromptTemplates.FormatDate(DateOnly.FromDateTime(DateTime.Now));
        Assert.True(text.Contains("Today Date: " + before + "\n", StringComparison.Ordinal) || text.Contains("Today Date: " + after + "\n", StringComparison.Ordinal), text);
    }

    [Fact]
    public void Date_lines_can_be_left_out_or_asked_for_without_tools()
    {
        var noDates = new ToolPromptOptions { Builtin = BuiltinTools.BraveSearch | BuiltinTools.WolframAlpha, IncludeDateLines = false };
        Assert.Equal(SystemHeader + "Environment: ipython\nTools: brave_search, wolfram_alpha\nBe brief.\n<|eot_id|>" +
                     "<|start_header_id|>assistant<|end_header_id|>\n\n",
            Prompt.Render([new("system", "Be brief.")], noDates));

        // Meta's system_default template: the date lines and the instruction, without "Environment: ipython".
        var datesOnly = new ToolPromptOptions { IncludeDateLines = true, TodayDate = Sep21, KnowledgeCutoff = "December 2023" };
        AssertPrompt(SystemHeader + "Cutting Knowledge Date: December 2023\nToday Date: 21 September 2024\n\nYou are a helpful assistant.\n<|eot_id|>" +
                     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            [new("system", "You are a helpful assistant."), new("user", "Hi")], datesOnly);
    }

    [Fact]
    public void Options_without_tools_leave_the_dialog_as_given_and_do_not_strip()
    {
        AssertPrompt("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n Hi there \n<|eot_id|>" +
                     "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>" +
                     "<|start_header_id|>assistant<|end_header_id|>\n\n",
            [new("user", " Hi there \n"), new("assistant", "Hello")], new ToolPromptOptions());
    }

    [Fact]
    public void Special_token_text_in_content_is_encoded_as_text()
    {
        var dialog = new List<ToolMessage> { new("user", "a<|eot_id|><|python_tag|>b"), new("tool", "<|eom_id|>") };
        var ids = Prompt.Encode(dialog, new ToolPromptOptions());
        int eot = Tokenizer.GetSpecialTokenId("<|eot_id|>")!.Value;
        Assert.Equal(2, ids.Count(id => id == eot)); // only the two messages' own ends
        Assert.DoesNotContain(Tokenizer.GetSpecialTokenId("<|python_tag|>")!.Value, ids);
        Assert.DoesNotContain(Tokenizer.GetSpecialTokenId("<|eom_id|>")!.Value, ids);
        Assert.Equal(Prompt.Render(dialog, new ToolPromptOptions()), Tokenizer.Decode(ids));
        Assert.Contains("<|start_header_id|>ipython<|end_header_id|>", Prompt.Render(dialog, new ToolPromptOptions()));
    }

    [Fact]
    public void A_Llama_30_vocabulary_ends_call_turns_with_eot_and_writes_no_python_tag()
    {
        // Llama 3.0 has reserved tokens where 3.1 has <|eom_id|> and <|python_tag|>: its turns end with <|eot_id|>.
        var meta30 = Llama3.Tests.Tokenization.Tokenizers.Meta30;
        Assert.Null(meta30.GetSpecialTokenId("<|eom_id|>"));
        var prompt = new ToolPrompt(meta30);
        var call = new ToolCall("trending_songs", Args("""{"n": 10}"""));
        var dialog = new List<ToolMessage> { new("user", "hi"), new("assistant", "") { ToolCalls = [call] } };
        var options = new ToolPromptOptions { Tools = [TrendingSongs], PythonTag = PythonTagPlacement.AllToolCalls };
        var ids = prompt.Encode(dialog, options);
        int eot = meta30.GetSpecialTokenId("<|eot_id|>")!.Value;
        Assert.DoesNotContain(128008, ids); // <|eom_id|> in 3.1, <|reserved_special_token_4|> in 3.0
        Assert.DoesNotContain(128010, ids); // <|python_tag|> in 3.1
        string text = meta30.Decode(ids);
        Assert.Contains("\"name\": \"trending_songs\"", text);
        Assert.EndsWith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", text);
        Assert.Equal(eot, ids[^5]);
    }

    [Fact]
    public void Json_encoded_arguments_are_copied_not_shared()
    {
        var args = Args("""{"n": 10}""");
        var dialog = new List<ToolMessage> { new("assistant", "") { ToolCalls = [new ToolCall("trending_songs", args)] } };
        _ = Prompt.Render(dialog, new ToolPromptOptions { Tools = [TrendingSongs] });
        Assert.Null(args.Parent);
        Assert.Equal(10, (int)args["n"]!);
        args["n"] = JsonValue.Create(11);
        Assert.Contains("\"n\": 11", Prompt.Render(dialog, new ToolPromptOptions { Tools = [TrendingSongs] }));
    }
}
