using Llama3.Tools;
using static Llama3.Tests.Tools.ToolTestData;

namespace Llama3.Tests.Tools;

/// <summary>Meta's prompt generators (llama-models <c>prompt_templates/system_prompts.py</c>) against Meta's own tests.</summary>
public class ToolPromptTemplatesTests
{
    [Fact]
    public void Builtin_tools_block_matches_test_system_builtin_only()
    {
        Assert.Equal(MetaExamples.BuiltinToolsOnly,
            ToolPromptTemplates.BuiltinToolsBlock(BuiltinTools.CodeInterpreter | BuiltinTools.BraveSearch | BuiltinTools.WolframAlpha, hasCustomTools: false));
        // Jinja: "Environment: ipython\n" is kept when no Tools: line follows (prompt_format.md's JSON example shows the blank line).
        Assert.Equal("Environment: ipython\n", ToolPromptTemplates.BuiltinToolsBlock(BuiltinTools.CodeInterpreter, hasCustomTools: false));
        Assert.Equal("Environment: ipython\n", ToolPromptTemplates.BuiltinToolsBlock(BuiltinTools.None, hasCustomTools: true));
        Assert.Equal("Environment: ipython\nTools: wolfram_alpha", ToolPromptTemplates.BuiltinToolsBlock(BuiltinTools.WolframAlpha, hasCustomTools: true));
        Assert.Equal("", ToolPromptTemplates.BuiltinToolsBlock(BuiltinTools.None, hasCustomTools: false));
    }

    [Fact]
    public void Json_custom_tools_match_test_system_custom_only()
    {
        Assert.Equal(MetaExamples.JsonCustomToolsOnly, ToolPromptTemplates.JsonCustomTools([TrendingSongs]));
    }

    [Fact]
    public void Python_list_tools_match_test_llama_3_2_system_zero_shot()
    {
        Assert.Equal(MetaExamples.PythonListZeroShot, ToolPromptTemplates.PythonListCustomTools([GetWeather]));
    }

    [Fact]
    public void Python_list_tools_with_a_system_prompt_match_test_llama_3_2_provided_system_prompt()
    {
        Assert.Equal(MetaExamples.PythonListOverride,
            ToolPromptTemplates.PythonListCustomTools([GetWeather], MetaExamples.PythonListOverrideTemplate));
        // Jinja turns CRLF line ends into "\n".
        Assert.Equal(MetaExamples.PythonListOverride,
            ToolPromptTemplates.PythonListCustomTools([GetWeather], MetaExamples.PythonListOverrideTemplate.Replace("\n", "\r\n")));
    }

    [Fact]
    public void System_default_matches_test_system_default()
    {
        // f"Cutting Knowledge Date: December 2023\nToday Date: {today}" with today = strftime("%d %B %Y")
        Assert.Equal("Cutting Knowledge Date: December 2023\nToday Date: 21 September 2024",
            ToolPromptTemplates.SystemDefault(new DateOnly(2024, 9, 21)));
        Assert.Equal("05 July 2024", ToolPromptTemplates.FormatDate(new DateOnly(2024, 7, 5))); // %d pads
        Assert.Equal("Cutting Knowledge Date: March 2025\nToday Date: 01 January 2026",
            ToolPromptTemplates.SystemDefault(new DateOnly(2026, 1, 1), "March 2025"));
    }

    // ToolResponseGenerator.data_examples() rendered by its Jinja template (whitespace control: "{%- if stdout %}\n[stdout]").
    [Fact]
    public void Tool_response_follows_Meta_template()
    {
        Assert.Equal("completed\n[stdout]{\"results\":[\"something something\"]}[/stdout]",
            ToolPromptTemplates.ToolResponse(true, stdout: "{\"results\":[\"something something\"]}"));
        Assert.Equal("failed\n[stderr]brave_search encounter an error: could not communicate with api.brave.com[/stderr]",
            ToolPromptTemplates.ToolResponse(false, stderr: "brave_search encounter an error: could not communicate with api.brave.com"));
        Assert.Equal("completed\n[stdout]1[/stdout]\n[stderr]w[/stderr]", ToolPromptTemplates.ToolResponse(true, "1", "w"));
        Assert.Equal("completed", ToolPromptTemplates.ToolResponse(true, "", null));
    }

    [Fact]
    public void Json_tools_several_and_without_parameters_or_descriptions()
    {
        var tools = new[]
        {
            new ToolDefinition("now", null, null),
            new ToolDefinition("f", "d", Schema("""{"type": "object", "properties": {"a<b": {"type": "string"}}, "required": ["a<b"]}""")),
        };
        // Jinja writes None for a missing description, and tojson escapes < as \u003c.
        const string expected =
            """
            Answer the user's question by making use of the following functions if needed.
            If none of the function can be used, please say so.
            Here is a list of functions in JSON format:
            {
                "type": "function",
                "function": {
                    "name": "now",
                    "description": "None",
                    "parameters": {
                        "type": "object",
                        "properties": [
                        ],
                        "required": []
                    }
                }
            }
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "description": "d",
                    "parameters": {
                        "type": "object",
                        "properties": [
                            {
                                "a<b": {
                                    "type": "object",
                                    "description": "None"
                                }
                            }
                        ],
                        "required": ["a\u003cb"]
                    }
                }
            }

            Return function calls in JSON format.
            """;
        Assert.Equal(expected, ToolPromptTemplates.JsonCustomTools(tools));
    }

    [Fact]
    public void Python_list_tools_several_defaults_by_Python_truthiness()
    {
        var tools = new[]
        {
            new ToolDefinition("a", "first", Schema("""
                {"type": "object", "properties": {
                   "x": {"type": "integer", "description": "zero default", "default": 0},
                   "y": {"type": "boolean", "description": "true default", "default": true},
                   "z": {"type": ["string", "null"], "default": ["p", 1.0]}},
                 "required": ["x", "y"]}
                """)),
            new ToolDefinition("b", "second", null),
        };
        const string expected =
            """
            [
                {
                    "name": "a",
                    "description": "first",
                    "parameters": {
                        "type": "dict",
                        "required": ["x", "y"],
                        "properties": {
                            "x": {
                                "type": "integer",
                                "description": "zero default"
                            },
                            "y": {
                                "type": "boolean",
                                "description": "true default",
                                "default": "True"
                            },
                            "z": {
                                "type": "['string', 'null']",
                                "description": "None",
                                "default": "['p', 1.0]"
                            }
                        }
                    }
                },
                {
                    "name": "b",
                    "description": "second",
                    "parameters": {
                        "type": "dict",
                        "required": [],
                        "properties": {
                        }
                    }
                }
            ]
            """;
        string text = ToolPromptTemplates.PythonListFunctionDescription(tools);
        Assert.Equal(expected, text[text.IndexOf("\n[\n", StringComparison.Ordinal)..].TrimStart('\n'));
    }
}
