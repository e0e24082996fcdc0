using System.Text.Json;
using System.Text.Json.Nodes;

namespace Llama3.Tools;

/// <summary>
/// Reads tool calls out of an assistant answer, as Meta's <c>ChatFormat.decode_assistant_message_from_content</c> and
/// <c>ToolUtils</c> (llama-models <c>models/llama3/chat_format.py</c>, <c>tool_utils.py</c>) do.
/// </summary>
/// <remarks>
/// <para>
/// The forms, tried in Meta's order on the answer without surrounding whitespace, a leading <c>&lt;|python_tag|&gt;</c>
/// and a trailing <c>&lt;|eot_id|&gt;</c> / <c>&lt;|eom_id|&gt;</c>; like Meta's decoder, every form is recognised
/// whichever <see cref="ToolCallFormat"/> the prompt used:
/// </para>
/// <list type="number">
/// <item><c>&lt;function=name&gt;{...}&lt;/function&gt;</c> (Meta's function-tag format).</item>
/// <item>A JSON object <c>{"name": ..., "parameters": {...}}</c> (optionally with <c>"type": "function"</c>); also
/// <c>"arguments"</c> instead of <c>"parameters"</c>, as fine-tunes and OpenAI-style models write, and arguments
/// given as a JSON string. Meta accepts only <c>"parameters"</c>. A JSON call of a built-in tool gets the arguments
/// <c>{"query": first value}</c>, as Meta maps it.</item>
/// <item>A Python list of calls <c>[f(a=1), g(b="x")]</c> (Meta's <c>is_valid_python_list</c>); all calls are
/// returned, where Meta's decoder keeps only the first (its FIXME).</item>
/// <item>A built-in call <c>brave_search.call(query="...")</c>; read with Python's string syntax rather than Meta's
/// regular expression <c>query="[^"]*"</c>, so escapes and single quotes read too.</item>
/// <item>After <c>&lt;|python_tag|&gt;</c>, anything else is <c>code_interpreter</c> code, as in Meta's decoder.</item>
/// </list>
/// <para>
/// Stricter than Meta: the call must be the whole answer (Meta searches the function tag and the built-in call
/// anywhere in it); text before a <c>&lt;|python_tag|&gt;</c> that starts a call is kept as
/// <see cref="ToolParseResult.Content"/>. Several JSON objects (separated by <c>;</c> or not) are not calls: Meta's
/// parser does not accept them either.
/// </para>
/// </remarks>
public static class ToolCallParser
{
    /// <summary>The built-in web search tool's name.</summary>
    public const string BraveSearch = "brave_search";

    /// <summary>The built-in computation tool's name.</summary>
    public const string WolframAlpha = "wolfram_alpha";

    /// <summary>The built-in code interpreter's name.</summary>
    public const string CodeInterpreter = "code_interpreter";

    private const string PythonTag = "<|python_tag|>";
    private const string AssistantHeader = "<|start_header_id|>assistant<|end_header_id|>\n\n";
    private const string FunctionTagStart = "<function=";
    private const string FunctionTagEnd = "</function>";

    /// <summary>Whether <paramref name="name"/> is one of the built-in tools' names.</summary>
    public static bool IsBuiltinName(string name) => name is BraveSearch or WolframAlpha or CodeInterpreter;

    /// <summary>Reads an answer as text or tool calls. Never throws on malformed text.</summary>
    /// <param name="text">The assistant's generated text, with <c>&lt;|python_tag|&gt;</c> when it was generated.</param>
    /// <param name="format">The format the prompt asked for (every form is read whatever it is; see the remarks).</param>
    /// <param name="knownTools">
    /// The custom tools' names: a call of any other custom name makes the answer text. Null accepts every name.
    /// </param>
    /// <param name="builtins">
    /// The built-in tools that may be called. Null accepts all three, as Meta's decoder does; a built-in name listed in
    /// <paramref name="knownTools"/> is accepted too.
    /// </param>
    public static ToolParseResult Parse(string text, ToolCallFormat format, IReadOnlyCollection<string>? knownTools = null,
        BuiltinTools? builtins = null)
    {
        text ??= "";
        string body = StripEnd(text);
        int tag = body.IndexOf(PythonTag, StringComparison.Ordinal);
        string before = "";
        string callText = body;
        bool ipython = false;
        if (tag >= 0)
        {
            before = body[..tag];
            if (before.Trim().Length == 0) before = "";
            callText = body[(tag + PythonTag.Length)..];
            ipython = true;
        }

        var calls = TryCalls(callText, ipython, knownTools, builtins);
        if (calls is not null) return new ToolParseResult(before, calls);

        // Not a call: the text itself, without the python tag Meta's decoder removes.
        string content = tag >= 0 ? before + callText : body;
        return new ToolParseResult(content, []);
    }

    /// <summary>The answer without a trailing end token (and, as Meta, without a leading assistant header).</summary>
    private static string StripEnd(string text)
    {
        string s = text;
        string trimmed = s.TrimEnd();
        foreach (string end in (string[])["<|eot_id|>", "<|eom_id|>"])
        {
            if (trimmed.EndsWith(end, StringComparison.Ordinal))
            {
                s = trimmed[..^end.Length];
                break;
            }
        }
        string lead = s.TrimStart(' ');
        if (lead.StartsWith(AssistantHeader, StringComparison.Ordinal)) s = lead[AssistantHeader.Length..];
        return s;
    }

    private static List<ToolCall>? TryCalls(string text, bool ipython, IReadOnlyCollection<string>? known, BuiltinTools? builtins)
    {
        string t = text.Trim();
        if (t.StartsWith(FunctionTagStart, StringComparison.Ordinal))
            return TryFunctionTag(t, known, builtins);
        if (t.StartsWith('{'))
        {
            var json = TryJsonCall(t, known, builtins, out bool wasCall);
            if (wasCall) return json;
        }
        if (t.StartsWith('[') && PythonCallSyntax.TryParseCallList(t, out var list))
        {
            var calls = new List<ToolCall>(list.Count);
            foreach (var (name, args) in list)
            {
                var call = Custom(name, args, known, builtins);
                if (call is null) return null;
                calls.Add(call);
            }
            return calls;
        }
        if (PythonCallSyntax.TryParseBuiltinCall(t, out string tool, out var arguments))
        {
            // Meta reads any `name.call(query="...")`; a name that is no built-in tool must be a known custom one.
            bool ok = IsBuiltinName(tool) ? BuiltinAllowed(tool, known, builtins) : known is not null && known.Contains(tool);
            return ok ? [new ToolCall(tool, arguments)] : null;
        }
        if (ipython && BuiltinAllowed(CodeInterpreter, known, builtins))
        {
            // Meta: anything after <|python_tag|> that is no other call is code for the interpreter.
            return [new ToolCall(CodeInterpreter, new JsonObject { ["code"] = text })];
        }
        return null;
    }

    /// <summary>
    /// <c>&lt;function=name&gt;{json}&lt;/function&gt;</c>; as Meta, the closing tag may be missing and, when the JSON
    /// does not read, it is read again with <c>'</c> as <c>"</c> (Meta always replaces them).
    /// </summary>
    private static List<ToolCall>? TryFunctionTag(string t, IReadOnlyCollection<string>? known, BuiltinTools? builtins)
    {
        int close = t.IndexOf('>', FunctionTagStart.Length);
        if (close < 0) return null;
        string name = t[FunctionTagStart.Length..close];
        if (name.Length == 0 || name.Contains('}')) return null; // Meta's [^}]+
        string rest = t[(close + 1)..];
        if (rest.EndsWith(FunctionTagEnd, StringComparison.Ordinal)) rest = rest[..^FunctionTagEnd.Length];
        var args = ParseObject(rest.Trim()) ?? ParseObject(rest.Trim().Replace('\'', '"'));
        if (args is null) return null;
        var call = Custom(name, args, known, builtins);
        return call is null ? null : [call];
    }

    /// <summary>A JSON call. <paramref name="wasCall"/> is false when the text is no JSON call at all (so other forms are tried).</summary>
    private static List<ToolCall>? TryJsonCall(string t, IReadOnlyCollection<string>? known, BuiltinTools? builtins, out bool wasCall)
    {
        wasCall = false;
        var obj = ParseObject(t);
        if (obj is null) return null;
        // Meta: ("type" in response and response["type"] == "function") or ("name" in response).
        if (!(obj.TryGetPropertyValue("name", out var nameNode) && nameNode is JsonValue nv && nv.TryGetValue(out string? name)))
            return null;
        JsonNode? argsNode = null;
        if (!obj.TryGetPropertyValue("parameters", out argsNode) && !obj.TryGetPropertyValue("arguments", out argsNode))
            return null;
        var args = argsNode switch
        {
            JsonObject o => (JsonObject)o.DeepClone(),
            JsonValue v when v.TryGetValue(out string? s) => ParseObject(s.Trim()),
            null => [],
            _ => null,
        };
        if (args is null) return null;
        wasCall = true;
        var call = Custom(name, args, known, builtins);
        return call is null ? null : [call];
    }

    /// <summary>
    /// A call in a custom-tool form. A built-in name is taken as the built-in tool with Meta's mapping: arguments
    /// <c>{"query": first value}</c> (for the code interpreter <c>{"code": ...}</c>) unless they already have that key.
    /// </summary>
    private static ToolCall? Custom(string name, JsonObject args, IReadOnlyCollection<string>? known, BuiltinTools? builtins)
    {
        bool customKnown = known is null || known.Contains(name);
        if (IsBuiltinName(name) && !(known is not null && known.Contains(name)))
        {
            if (!BuiltinAllowed(name, known, builtins)) return null;
            string key = name == CodeInterpreter ? "code" : "query";
            if (!args.ContainsKey(key) && args.Count > 0)
            {
                var first = args.First().Value?.DeepClone();
                args = new JsonObject { [key] = first };
            }
            return new ToolCall(name, args);
        }
        return customKnown ? new ToolCall(name, args) : null;
    }

    private static bool BuiltinAllowed(string name, IReadOnlyCollection<string>? known, BuiltinTools? builtins)
    {
        if (known is not null && known.Contains(name)) return true;
        if (builtins is null) return true;
        var flag = name switch
        {
            BraveSearch => BuiltinTools.BraveSearch,
            WolframAlpha => BuiltinTools.WolframAlpha,
            CodeInterpreter => BuiltinTools.CodeInterpreter,
            _ => BuiltinTools.None,
        };
        return flag != BuiltinTools.None && builtins.Value.HasFlag(flag);
    }

    /// <summary>
    /// A JSON object, or null for anything else (other JSON, malformed text, nested deeper than 64). A repeated
    /// property keeps its last value, as Python's <c>json.loads</c> does.
    /// </summary>
    private static JsonObject? ParseObject(string s)
    {
        if (!s.StartsWith('{')) return null;
        try
        {
            using var doc = JsonDocument.Parse(s);
            return ToNode(doc.RootElement) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static JsonNode? ToNode(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                var obj = new JsonObject();
                foreach (var p in e.EnumerateObject()) obj[p.Name] = ToNode(p.Value);
                return obj;
            case JsonValueKind.Array:
                var array = new JsonArray();
                foreach (var item in e.EnumerateArray()) array.Add(ToNode(item));
                return array;
            case JsonValueKind.String:
                return JsonValue.Create(e.GetString());
            case JsonValueKind.True:
                return JsonValue.Create(true);
            case JsonValueKind.False:
                return JsonValue.Create(false);
            case JsonValueKind.Number:
                return JsonValue.Create(e.Clone()); // keeps the number's text
            default:
                return null;
        }
    }

    /// <summary>
    /// Whether text generated so far could still become a tool call (so a server holds it back instead of streaming it
    /// as content): empty or whitespace; a start of <c>&lt;|python_tag|&gt;</c> or anything after it; a start of
    /// <c>&lt;function=</c>; a JSON object not yet closed (or closed with nothing after it); a Python list of calls so
    /// far well formed; a start of <c>brave_search.call(</c> / <c>wolfram_alpha.call(</c>. Every form counts whatever
    /// the format, as in <see cref="Parse"/>. Answers that begin as plain text return false at once.
    /// </summary>
    public static bool MayBeToolCall(string prefix, ToolCallFormat format)
    {
        if (prefix is null) return true;
        string s = prefix.TrimStart();
        if (s.Length == 0) return true;
        if (IsPrefixEitherWay(s, PythonTag)) return true;
        if (IsPrefixEitherWay(s, FunctionTagStart)) return true;
        if (s[0] == '{') return JsonPrefix(s);
        if (s[0] == '[') return CallListPrefix(s);
        foreach (string start in (string[])[BraveSearch + ".call(", WolframAlpha + ".call("])
        {
            if (start.StartsWith(s, StringComparison.Ordinal)) return true;
            if (s.StartsWith(start, StringComparison.Ordinal)) return ClosedAtMostOnce(s, start.Length - 1, ')', pythonQuotes: true);
        }
        return false;
    }

    private static bool IsPrefixEitherWay(string s, string token) =>
        token.StartsWith(s, StringComparison.Ordinal) || s.StartsWith(token, StringComparison.Ordinal);

    /// <summary>A JSON object so far: its first key starts with <c>"</c>, and nothing but whitespace follows its end.</summary>
    private static bool JsonPrefix(string s)
    {
        int i = 1;
        while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
        if (i < s.Length && s[i] != '"' && s[i] != '}') return false;
        return ClosedAtMostOnce(s, 0, '}', pythonQuotes: false);
    }

    /// <summary>
    /// Whether the bracket opened at <paramref name="open"/> is still open, or is closed by <paramref name="closeChar"/>
    /// with only whitespace after.
    /// </summary>
    private static bool ClosedAtMostOnce(string s, int open, char closeChar, bool pythonQuotes)
    {
        int end = MatchingClose(s, open, pythonQuotes);
        return end < 0 || (s[end] == closeChar && s.AsSpan(end + 1).IsWhiteSpace());
    }

    /// <summary>A Python list of calls so far: <c>[</c>, then names each followed by <c>(</c> ... <c>)</c>, commas, <c>]</c>.</summary>
    private static bool CallListPrefix(string s)
    {
        int i = 1;
        bool any = false;
        while (true)
        {
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
            if (i >= s.Length) return true;
            if (s[i] == ']') return any && s.AsSpan(i + 1).IsWhiteSpace();
            if (!(s[i] == '_' || char.IsLetter(s[i]))) return false;
            while (i < s.Length && (s[i] == '_' || char.IsLetterOrDigit(s[i]))) i++;
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
            if (i >= s.Length) return true;
            if (s[i] != '(') return false;
            int end = MatchingClose(s, i, pythonQuotes: true);
            if (end < 0) return true; // the arguments are still being written
            any = true;
            i = end + 1;
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
            if (i >= s.Length) return true;
            if (s[i] == ',') { i++; continue; }
            if (s[i] == ']') return s.AsSpan(i + 1).IsWhiteSpace();
            return false;
        }
    }

    /// <summary>
    /// The index of the bracket closing the one at <paramref name="open"/> (of any kind), or -1 when the text ends
    /// first; quoted strings (<c>"</c>, and for Python also <c>'</c>, with backslash escapes) are skipped.
    /// </summary>
    private static int MatchingClose(string s, int open, bool pythonQuotes)
    {
        int depth = 0;
        char quote = '\0';
        for (int i = open; i < s.Length; i++)
        {
            char c = s[i];
            if (quote != '\0')
            {
                if (c == '\\') i++;
                else if (c == quote) quote = '\0';
                continue;
            }
            if (c == '"' || (pythonQuotes && c == '\'')) quote = c;
            else if (c is '(' or '[' or '{') depth++;
            else if (c is ')' or ']' or '}')
            {
                depth--;
                if (depth == 0) return i;
            }
        }
        return -1;
    }
}
