using System.Text;
using System.Text.Json.Nodes;
using Llama3.Tokenization;

namespace Llama3.Tools;

/// <summary>
/// A Llama 3.1 / 3.2 dialog with tools as the model reads it, following Meta's llama-models: the system prompt of
/// <c>LLama31Interface.system_messages</c> (JSON format) or of llama-stack's Llama 3.2 tool prompt (Python-list format),
/// then each message as <c>ChatFormat.encode_message</c> writes it, then the assistant header.
/// </summary>
/// <remarks>
/// <para>
/// Where the system prompt comes from. When the options declare custom or built-in tools (or ask for the date lines),
/// one system message is built and replaces the dialog's leading system message, whose text goes into it:
/// </para>
/// <list type="bullet">
/// <item><see cref="ToolCallFormat.Json"/>: <c>Environment: ipython</c> (+ <c>Tools: ...</c>), the date lines, the
/// dialog's system text, joined as Meta's <c>system_messages</c> joins them (<c>"\n"</c> after the tools block,
/// <c>"\n\n"</c> before the system text, a final <c>"\n"</c>). The custom tools
/// (<see cref="ToolPromptTemplates.JsonCustomTools"/>) go in a user message of their own when
/// <see cref="ToolPromptOptions.ToolsInUserMessage"/> is set (Meta's placement), else into the system message after
/// the date lines (the Hugging Face template's order; Meta has no system placement for them).</item>
/// <item><see cref="ToolCallFormat.PythonList"/>: as llama-stack's <c>augment_messages_for_tools_llama_3_2</c> (llama-models
/// has the generator but not the assembly): the built-in block and <c>"\n"</c>, the function prompt and <c>"\n"</c>,
/// then the dialog's system text, with newlines stripped from both ends.</item>
/// </list>
/// <para>
/// Without tools the dialog is written as given. Content is written as given, not stripped: Meta's llama-models
/// <c>ChatFormat</c> does not strip (the older <c>llama3</c> repository's, which <see cref="ChatFormat"/> follows, and
/// the Hugging Face template do).
/// </para>
/// <para>
/// Token ids are Meta's: every piece (the role, the <c>"\n\n"</c> after the header, the content, each tool call) is
/// encoded on its own, with special-token text in content encoded as plain text; only the format's own tokens are
/// special. So where content starts with whitespace the ids can differ from encoding <see cref="Render"/>'s text in
/// one go (<c>"\n\n"</c> + <c>"\n{"</c> is not <c>"\n\n\n"</c> + <c>"{"</c>).
/// </para>
/// </remarks>
public sealed class ToolPrompt
{
    private const string BeginOfText = "<|begin_of_text|>";
    private const string StartHeader = "<|start_header_id|>";
    private const string EndHeader = "<|end_header_id|>";
    private const string EndOfTurn = "<|eot_id|>";
    private const string EndOfMessage = "<|eom_id|>";
    private const string PythonTag = "<|python_tag|>";

    private readonly LlamaTokenizer _tokenizer;
    private readonly Dictionary<string, int> _special = new(StringComparer.Ordinal);

    /// <summary>A prompt builder over a tokenizer with Llama 3.1's special tokens (<c>&lt;|eom_id|&gt;</c>, <c>&lt;|python_tag|&gt;</c>).</summary>
    public ToolPrompt(LlamaTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        foreach (string name in (string[])[BeginOfText, StartHeader, EndHeader, EndOfTurn, EndOfMessage, PythonTag])
        {
            if (tokenizer.GetSpecialTokenId(name) is int id) _special[name] = id;
            else if (name is not (EndOfMessage or PythonTag))
                throw new InvalidOperationException($"{tokenizer.Source}: the vocabulary has no {name} token, so it cannot use the Llama 3 chat format");
        }
    }

    // A Llama 3.0 vocabulary has no <|eom_id|> or <|python_tag|> (reserved tokens stand there, and such a model was
    // not trained on them): a turn that would end with <|eom_id|> ends with <|eot_id|>, and no tag is written.
    private int? SpecialId(string name) => _special.TryGetValue(name, out int id) ? id
        : name == EndOfMessage ? _special[EndOfTurn]
        : null;

    /// <summary>The whole prompt as text, special tokens written as their names, ending with the assistant header.</summary>
    public string Render(IReadOnlyList<ToolMessage> dialog, ToolPromptOptions options)
    {
        var sb = new StringBuilder();
        foreach (var piece in Pieces(dialog, options)) sb.Append(piece.Text);
        return sb.ToString();
    }

    /// <summary>The same prompt as token ids (see the remarks on how pieces are encoded).</summary>
    public IReadOnlyList<int> Encode(IReadOnlyList<ToolMessage> dialog, ToolPromptOptions options)
    {
        var ids = new List<int>();
        foreach (var piece in Pieces(dialog, options))
        {
            if (piece.Special) { if (SpecialId(piece.Text) is int id) ids.Add(id); }
            else if (piece.Text.Length > 0) _tokenizer.EncodeToIds(piece.Text, ids); // special-token text stays text
        }
        return ids;
    }

    /// <summary>The system message text the options give for a dialog's system text (null when the dialog has none).</summary>
    public static string BuildSystemPrompt(string? systemText, ToolPromptOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        bool hasCustom = options.Tools.Count > 0;
        bool dates = options.IncludeDateLines ?? options.Format == ToolCallFormat.Json;
        DateOnly today = options.TodayDate ?? DateOnly.FromDateTime(DateTime.Now);
        if (options.Format == ToolCallFormat.Json)
        {
            // LLama31Interface.system_messages: tools block + "\n", the default (date) block, "\n\n" + instruction, "\n".
            var sb = new StringBuilder();
            if (options.Builtin != BuiltinTools.None || hasCustom)
                sb.Append(ToolPromptTemplates.BuiltinToolsBlock(options.Builtin, hasCustom)).Append('\n');
            var blocks = new List<string>(3);
            if (dates) blocks.Add(ToolPromptTemplates.SystemDefault(today, options.KnowledgeCutoff));
            if (hasCustom && !options.ToolsInUserMessage) blocks.Add(ToolPromptTemplates.JsonCustomTools(options.Tools));
            if (!string.IsNullOrEmpty(systemText)) blocks.Add(systemText); // Python: `if instruction:`
            sb.AppendJoin("\n\n", blocks).Append('\n');
            return sb.ToString();
        }
        else
        {
            // llama-stack augment_messages_for_tools_llama_3_2: builtin block + "\n", tools + "\n", system text, strip("\n").
            var sb = new StringBuilder();
            if (options.Builtin != BuiltinTools.None)
                sb.Append(ToolPromptTemplates.BuiltinToolsBlock(options.Builtin, hasCustomTools: false)).Append('\n');
            if (dates) sb.Append(ToolPromptTemplates.SystemDefault(today, options.KnowledgeCutoff)).Append('\n');
            if (hasCustom) sb.Append(ToolPromptTemplates.PythonListCustomTools(options.Tools, options.PythonListSystemPrompt)).Append('\n');
            if (systemText is not null) sb.Append(systemText);
            return sb.ToString().Trim('\n');
        }
    }

    private readonly record struct Piece(string Text, bool Special);

    private List<Piece> Pieces(IReadOnlyList<ToolMessage> dialog, ToolPromptOptions options)
    {
        ArgumentNullException.ThrowIfNull(dialog);
        ArgumentNullException.ThrowIfNull(options);
        var pieces = new List<Piece> { new(BeginOfText, true) };
        int next = 0;
        bool hasCustom = options.Tools.Count > 0;
        if (hasCustom || options.Builtin != BuiltinTools.None || options.IncludeDateLines == true)
        {
            string? systemText = null;
            if (dialog.Count > 0 && dialog[0].Role == "system")
            {
                systemText = dialog[0].Content;
                next = 1;
            }
            AddMessage(pieces, "system", BuildSystemPrompt(systemText, options));
            if (hasCustom && options.Format == ToolCallFormat.Json && options.ToolsInUserMessage)
            {
                string tools = ToolPromptTemplates.JsonCustomTools(options.Tools);
                if (options.MergeToolsIntoFirstUserMessage && next < dialog.Count && dialog[next].Role == "user")
                {
                    // The Hugging Face template's placement: the declarations, a blank line, the first user message.
                    AddMessage(pieces, "user", tools + "\n\n" + dialog[next].Content);
                    next++;
                }
                else
                {
                    AddMessage(pieces, "user", tools);
                }
            }
        }
        for (; next < dialog.Count; next++) AddMessage(pieces, dialog[next], options);
        AddHeader(pieces, "assistant");
        return pieces;
    }

    private static void AddHeader(List<Piece> pieces, string role)
    {
        pieces.Add(new(StartHeader, true));
        pieces.Add(new(role == "tool" ? "ipython" : role, false)); // Meta's _encode_header: tool is written ipython
        pieces.Add(new(EndHeader, true));
        pieces.Add(new("\n\n", false));
    }

    private static void AddMessage(List<Piece> pieces, string role, string content)
    {
        AddHeader(pieces, role);
        pieces.Add(new(content, false));
        pieces.Add(new(EndOfTurn, true));
    }

    /// <summary>Meta's <c>ChatFormat.encode_message</c>: header, <c>&lt;|python_tag|&gt;</c> where placed, content, each call, end token.</summary>
    private static void AddMessage(List<Piece> pieces, ToolMessage message, ToolPromptOptions options)
    {
        ArgumentNullException.ThrowIfNull(message);
        AddHeader(pieces, message.Role);
        bool assistant = message.Role == "assistant";
        var calls = assistant ? message.ToolCalls : [];
        if (calls.Count > 0 && TagFirstCall(calls[0], options)) pieces.Add(new(PythonTag, true));
        pieces.Add(new(message.Content, false));
        foreach (string call in EncodeCalls(calls, options)) pieces.Add(new(call, false));
        bool eom = assistant && (message.EndOfMessage ?? EndsWithEom(calls, options));
        pieces.Add(new(eom ? EndOfMessage : EndOfTurn, true));
    }

    private static bool TagFirstCall(ToolCall first, ToolPromptOptions options) => options.PythonTag switch
    {
        PythonTagPlacement.CodeInterpreter => IsBuiltin(first, options) && first.Name == ToolCallParser.CodeInterpreter,
        PythonTagPlacement.BuiltinTools => IsBuiltin(first, options),
        _ => true,
    };

    /// <summary>
    /// What the model ends a turn with when nobody says: <c>&lt;|eom_id|&gt;</c> after a built-in call ("builtin tool
    /// calls end with a &lt;|eom_id|&gt;", text_prompt_format.md) and after a JSON custom call, whose prompt has
    /// <c>Environment: ipython</c> ("Model responds with &lt;|python_tag|&gt; and &lt;|eom_id|&gt;", prompt_format.md);
    /// <c>&lt;|eot_id|&gt;</c> after Python-list calls ("notice the &lt;|eot_id|&gt; for zero shot tool calls") and without calls.
    /// </summary>
    private static bool EndsWithEom(IReadOnlyList<ToolCall> calls, ToolPromptOptions options)
    {
        if (calls.Count == 0) return false;
        if (calls.Any(c => IsBuiltin(c, options))) return true;
        return options.Format == ToolCallFormat.Json;
    }

    /// <summary>A call of a built-in tool: named as one, unless a custom tool of the options has that name.</summary>
    private static bool IsBuiltin(ToolCall call, ToolPromptOptions options) =>
        ToolCallParser.IsBuiltinName(call.Name) && !options.Tools.Any(t => t.Name == call.Name);

    /// <summary>
    /// Meta's <c>ToolUtils.encode_tool_call</c>, one piece per call. Deviation: Python-list calls of one turn are
    /// written as one list <c>[f(...), g(...)]</c>, as the model writes parallel calls (text_prompt_format.md), where
    /// Meta's loop writes <c>[f(...)][g(...)]</c>.
    /// </summary>
    private static IEnumerable<string> EncodeCalls(IReadOnlyList<ToolCall> calls, ToolPromptOptions options)
    {
        if (calls.Count == 0) yield break;
        if (options.Format == ToolCallFormat.PythonList && calls.All(c => !IsBuiltin(c, options)))
        {
            yield return "[" + string.Join(", ", calls.Select(PythonCall)) + "]";
            yield break;
        }
        foreach (var call in calls)
        {
            ArgumentNullException.ThrowIfNull(call);
            if (IsBuiltin(call, options))
            {
                string key = call.Name == ToolCallParser.CodeInterpreter ? "code" : "query";
                if (call.Arguments.TryGetPropertyValue(key, out var value))
                {
                    // Meta's f-strings: f'brave_search.call(query="{q}")' (no escaping), and the code as it is.
                    yield return key == "code" ? PythonText.Str(value) : $"{call.Name}.call(query=\"{PythonText.Str(value)}\")";
                    continue;
                }
                // Without the argument Meta's code fails (KeyError); here the call is written as a custom one.
            }
            yield return options.Format == ToolCallFormat.Json
                ? PythonText.JsonDumps(new JsonObject
                {
                    ["type"] = "function",
                    ["name"] = call.Name,
                    ["parameters"] = call.Arguments.DeepClone(),
                })
                : "[" + PythonCall(call) + "]";
        }
    }

    /// <summary>
    /// <c>name(k=v, ...)</c> as Meta's <c>format_value</c> writes values: strings in double quotes without escaping,
    /// <c>True</c>/<c>None</c>, numbers as Python's <c>str()</c>, lists <c>[a, b]</c>, dicts <c>{k=v}</c> (Meta's form).
    /// </summary>
    private static string PythonCall(ToolCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Name + "(" + string.Join(", ", call.Arguments.Select(kv => kv.Key + "=" + FormatValue(kv.Value))) + ")";
    }

    private static string FormatValue(JsonNode? value) => value switch
    {
        JsonArray a => "[" + string.Join(", ", a.Select(FormatValue)) + "]",
        JsonObject o => "{" + string.Join(", ", o.Select(kv => kv.Key + "=" + FormatValue(kv.Value))) + "}",
        JsonValue v when v.GetValueKind() == System.Text.Json.JsonValueKind.String => "\"" + v.GetValue<string>() + "\"",
        _ => PythonText.Str(value),
    };
}
