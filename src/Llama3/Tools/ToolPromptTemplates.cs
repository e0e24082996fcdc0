using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Llama3.Tools;

/// <summary>
/// The texts of Meta's prompt generators (llama-models <c>models/llama3/prompt_templates/system_prompts.py</c> and
/// <c>tool_response.py</c>, the last version before they moved to llama-stack), written out as their Jinja templates
/// render: each template loses its one trailing newline, <c>{{ x }}</c> writes Python's <c>str(x)</c> (so a missing
/// description is <c>None</c>) without escaping, and <c>tojson</c> is Jinja's HTML-safe <c>json.dumps</c>.
/// </summary>
public static class ToolPromptTemplates
{
    /// <summary>The placeholder Meta's <c>PythonListCustomToolGenerator</c> fills with the function list.</summary>
    public const string FunctionDescriptionPlaceholder = "{{ function_description }}";

    /// <summary>
    /// <c>PythonListCustomToolGenerator.DEFAULT_PROMPT</c> as written (its placeholder not yet filled).
    /// llama-stack later changed this text; llama-models' version is the one in text_prompt_format.md.
    /// </summary>
    public const string PythonListDefaultPrompt =
        "You are an expert in composing functions. You are given a question and a set of possible functions.\n" +
        "Based on the question, you will need to make one or more function/tool calls to achieve the purpose.\n" +
        "If none of the function can be used, point it out. If the given question lacks the parameters required by the function,\n" +
        "also point it out. You should only return the function call in tools call sections.\n" +
        "\n" +
        FunctionDescriptionPlaceholder + "\n";

    /// <summary>A date as Meta's <c>SystemDefaultGenerator</c> writes it: <c>strftime("%d %B %Y")</c>, e.g. <c>21 September 2024</c>.</summary>
    /// <remarks>The Hugging Face Llama 3.1 template writes <c>26 Jul 2024</c> (<c>%d %b %Y</c>) instead.</remarks>
    public static string FormatDate(DateOnly date) => date.ToString("dd MMMM yyyy", CultureInfo.InvariantCulture);

    /// <summary><c>SystemDefaultGenerator</c>: <c>Cutting Knowledge Date: December 2023\nToday Date: 21 September 2024</c>.</summary>
    public static string SystemDefault(DateOnly today, string knowledgeCutoff = "December 2023") =>
        $"Cutting Knowledge Date: {knowledgeCutoff}\nToday Date: {FormatDate(today)}";

    /// <summary>
    /// <c>BuiltinToolGenerator</c>: <c>Environment: ipython</c> when there is any tool, then
    /// <c>Tools: brave_search, wolfram_alpha</c> for the built-in tools other than the code interpreter (which
    /// <c>Environment: ipython</c> alone turns on). With tools but no <c>Tools:</c> line the text ends with a
    /// newline; without tools it is empty.
    /// </summary>
    public static string BuiltinToolsBlock(BuiltinTools builtin, bool hasCustomTools)
    {
        if (builtin == BuiltinTools.None && !hasCustomTools) return "";
        var names = BuiltinToolNames(builtin & ~BuiltinTools.CodeInterpreter);
        return names.Count == 0 ? "Environment: ipython\n" : "Environment: ipython\nTools: " + string.Join(", ", names);
    }

    /// <summary>The built-in tools' names (<c>brave_search</c>, <c>wolfram_alpha</c>, <c>code_interpreter</c>), in that order.</summary>
    public static IReadOnlyList<string> BuiltinToolNames(BuiltinTools builtin)
    {
        var names = new List<string>(3);
        if (builtin.HasFlag(BuiltinTools.BraveSearch)) names.Add(ToolCallParser.BraveSearch);
        if (builtin.HasFlag(BuiltinTools.WolframAlpha)) names.Add(ToolCallParser.WolframAlpha);
        if (builtin.HasFlag(BuiltinTools.CodeInterpreter)) names.Add(ToolCallParser.CodeInterpreter);
        return names;
    }

    /// <summary>
    /// <c>JsonCustomToolGenerator</c> (Llama 3.1): the instructions and, per tool, Meta's hand-written JSON — every
    /// parameter as <c>"type": "object"</c> in a list, and the required names — then "Return function calls in JSON format."
    /// </summary>
    public static string JsonCustomTools(IReadOnlyList<ToolDefinition> tools)
    {
        ArgumentNullException.ThrowIfNull(tools);
        var sb = new StringBuilder();
        sb.Append("Answer the user's question by making use of the following functions if needed.\n");
        sb.Append("If none of the function can be used, please say so.\n");
        sb.Append("Here is a list of functions in JSON format:\n");
        foreach (var tool in tools)
        {
            var parameters = ToolParameter.Read(tool.Parameters);
            sb.Append("{\n");
            sb.Append("    \"type\": \"function\",\n");
            sb.Append("    \"function\": {\n");
            sb.Append("        \"name\": \"").Append(tool.Name).Append("\",\n");
            sb.Append("        \"description\": \"").Append(tool.Description ?? "None").Append("\",\n");
            sb.Append("        \"parameters\": {\n");
            sb.Append("            \"type\": \"object\",\n");
            sb.Append("            \"properties\": [");
            for (int i = 0; i < parameters.Count; i++)
            {
                sb.Append("\n                {\n");
                sb.Append("                    \"").Append(parameters[i].Name).Append("\": {\n");
                sb.Append("                        \"type\": \"object\",\n");
                sb.Append("                        \"description\": \"").Append(parameters[i].Description ?? "None").Append("\"\n");
                sb.Append("                    }\n");
                sb.Append("                }");
                if (i < parameters.Count - 1) sb.Append(',');
            }
            sb.Append("\n            ],\n");
            sb.Append("            \"required\": ").Append(PythonText.JinjaToJson(RequiredNames(parameters))).Append('\n');
            sb.Append("        }\n");
            sb.Append("    }\n");
            sb.Append("}\n");
        }
        sb.Append("\nReturn function calls in JSON format.");
        return sb.ToString();
    }

    /// <summary>
    /// <c>PythonListCustomToolGenerator</c> (Llama 3.2): <paramref name="systemPrompt"/> (by default
    /// <see cref="PythonListDefaultPrompt"/>) with <see cref="FunctionDescriptionPlaceholder"/> replaced by the
    /// call-format instructions and Meta's hand-written JSON list of the functions.
    /// </summary>
    /// <remarks>
    /// Meta renders <paramref name="systemPrompt"/> as a Jinja template; here only the placeholder is replaced, line
    /// ends become <c>\n</c> and one trailing newline is dropped, as Jinja does.
    /// </remarks>
    public static string PythonListCustomTools(IReadOnlyList<ToolDefinition> tools, string? systemPrompt = null)
    {
        ArgumentNullException.ThrowIfNull(tools);
        string template = string.IsNullOrEmpty(systemPrompt) ? PythonListDefaultPrompt : systemPrompt; // Python: system_prompt or DEFAULT_PROMPT
        template = template.Replace("\r\n", "\n").Replace('\r', '\n');
        if (template.EndsWith('\n')) template = template[..^1];
        string description = PythonListFunctionDescription(tools);
        return template.Replace(FunctionDescriptionPlaceholder, description).Replace("{{function_description}}", description);
    }

    /// <summary><c>PythonListCustomToolGenerator._gen_function_description</c>: the call format and the function list.</summary>
    public static string PythonListFunctionDescription(IReadOnlyList<ToolDefinition> tools)
    {
        ArgumentNullException.ThrowIfNull(tools);
        var sb = new StringBuilder();
        sb.Append("If you decide to invoke any of the function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n");
        sb.Append("You SHOULD NOT include any other text in the response.\n");
        sb.Append('\n');
        sb.Append("Here is a list of functions in JSON format that you can invoke.\n");
        sb.Append('\n');
        sb.Append("[\n    ");
        for (int t = 0; t < tools.Count; t++)
        {
            var tool = tools[t];
            var parameters = ToolParameter.Read(tool.Parameters);
            sb.Append("{\n");
            sb.Append("        \"name\": \"").Append(tool.Name).Append("\",\n");
            sb.Append("        \"description\": \"").Append(tool.Description ?? "None").Append("\",\n");
            sb.Append("        \"parameters\": {\n");
            sb.Append("            \"type\": \"dict\",\n");
            sb.Append("            \"required\": ").Append(PythonText.JinjaToJson(RequiredNames(parameters))).Append(",\n");
            sb.Append("            \"properties\": {");
            for (int i = 0; i < parameters.Count; i++)
            {
                var p = parameters[i];
                sb.Append("\n                \"").Append(p.Name).Append("\": {\n");
                sb.Append("                    \"type\": \"").Append(p.Type).Append("\",\n");
                sb.Append("                    \"description\": \"").Append(p.Description ?? "None").Append('"');
                // {% if param.default %}: Python truthiness, so a default of 0, false or "" is left out, as Meta's does.
                if (PythonText.IsTruthy(p.Default))
                    sb.Append(",\n                    \"default\": \"").Append(PythonText.Str(p.Default)).Append('"');
                sb.Append("\n                }");
                if (i < parameters.Count - 1) sb.Append(',');
            }
            sb.Append("\n            }\n");
            sb.Append("        }\n");
            sb.Append("    }");
            if (t < tools.Count - 1) sb.Append(",\n    ");
        }
        sb.Append("\n]");
        return sb.ToString();
    }

    /// <summary>
    /// <c>ToolResponseGenerator</c>: a code-interpreter result as Meta writes it for the <c>ipython</c> turn —
    /// <c>completed</c> or <c>failed</c>, then <c>[stdout]...[/stdout]</c> and <c>[stderr]...[/stderr]</c> lines for
    /// the streams that are not empty.
    /// </summary>
    public static string ToolResponse(bool success, string? stdout = null, string? stderr = null)
    {
        var sb = new StringBuilder(success ? "completed" : "failed");
        if (!string.IsNullOrEmpty(stdout)) sb.Append("\n[stdout]").Append(stdout).Append("[/stdout]");
        if (!string.IsNullOrEmpty(stderr)) sb.Append("\n[stderr]").Append(stderr).Append("[/stderr]");
        return sb.ToString();
    }

    private static IEnumerable<string> RequiredNames(List<ToolParameter> parameters) =>
        parameters.Where(p => p.Required).Select(p => p.Name);
}

/// <summary>
/// One JSON-schema property read as Meta's <c>ToolParamDefinition</c> (<c>param_type</c>, <c>description</c>,
/// <c>required</c>, <c>default</c>), in the schema's order.
/// </summary>
internal sealed record ToolParameter(string Name, string Type, string? Description, bool Required, JsonNode? Default)
{
    /// <summary>
    /// The properties of a schema. <c>required</c> is whether the schema's <c>required</c> list names the property (a
    /// JSON schema's meaning; Meta's own definitions default to required); a missing <c>type</c> is <c>string</c>,
    /// and a non-string one is written as Python's <c>str()</c> of it.
    /// </summary>
    public static List<ToolParameter> Read(JsonObject? schema)
    {
        var result = new List<ToolParameter>();
        if (schema is null || schema["properties"] is not JsonObject properties) return result;
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (schema["required"] is JsonArray list)
        {
            foreach (var item in list)
                if (item is JsonValue v && v.TryGetValue(out string? name)) required.Add(name);
        }
        foreach (var (name, node) in properties)
        {
            var property = node as JsonObject;
            string type = property?["type"] is { } t ? PythonText.Str(t) : "string";
            string? description = property?["description"] is { } d ? PythonText.Str(d) : null;
            JsonNode? defaultValue = property is not null && property.TryGetPropertyValue("default", out var dv) ? dv : null;
            result.Add(new ToolParameter(name, type, description, required.Contains(name), defaultValue));
        }
        return result;
    }
}
