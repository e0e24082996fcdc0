using System.Text.Json.Nodes;

namespace Llama3.Tools;

/// <summary>A custom tool (function) the model may call: OpenAI's <c>{"type": "function", "function": {...}}</c>.</summary>
/// <param name="Name">The function's name.</param>
/// <param name="Description">What it does; Meta's templates write a missing description as <c>None</c>.</param>
/// <param name="Parameters">
/// The JSON-schema object of the arguments (OpenAI's <c>parameters</c>): <c>properties</c> (each with <c>type</c>,
/// <c>description</c>, <c>default</c>) and <c>required</c>, read as Meta's <c>ToolParamDefinition</c>s.
/// </param>
public sealed record ToolDefinition(string Name, string? Description, JsonObject? Parameters);

/// <summary>One call the model made, or made in an earlier assistant turn.</summary>
/// <param name="Name">
/// The tool's name. Built-in calls are named <c>brave_search</c> and <c>wolfram_alpha</c> with arguments
/// <c>{"query": ...}</c>, and <c>code_interpreter</c> with <c>{"code": ...}</c>.
/// </param>
/// <param name="Arguments">The arguments by name.</param>
/// <param name="Id">The call's id (OpenAI's <c>tool_call_id</c>); the parser leaves it null for the caller to assign.</param>
public sealed record ToolCall(string Name, JsonObject Arguments, string? Id = null);

/// <summary>How the model is told to write custom tool calls.</summary>
public enum ToolCallFormat
{
    /// <summary>Llama 3.1: <c>{"name": ..., "parameters": {...}}</c> (Meta's <c>ToolPromptFormat.json</c>).</summary>
    Json,

    /// <summary>Llama 3.2 / 3.3: <c>[f(a=1), g(b="x")]</c> (Meta's <c>ToolPromptFormat.python_list</c>).</summary>
    PythonList,
}

/// <summary>Llama 3.1's built-in tools, turned on by the system prompt (<c>Environment: ipython</c>).</summary>
[Flags]
public enum BuiltinTools
{
    /// <summary>No built-in tool.</summary>
    None = 0,

    /// <summary>Web search: <c>brave_search.call(query="...")</c>.</summary>
    BraveSearch = 1,

    /// <summary>Computation: <c>wolfram_alpha.call(query="...")</c>.</summary>
    WolframAlpha = 2,

    /// <summary>Python code after <c>&lt;|python_tag|&gt;</c>.</summary>
    CodeInterpreter = 4,
}

/// <summary>One message of a dialog with tools.</summary>
/// <param name="Role">
/// system, user, assistant or ipython (a tool result; <c>tool</c> is written as <c>ipython</c>, as Meta's
/// <c>ChatFormat</c> does); other roles are written as given.
/// </param>
/// <param name="Content">The content, written as given (Meta's llama-models does not strip it).</param>
public sealed record ToolMessage(string Role, string Content)
{
    /// <summary>The calls an assistant turn made; written after its content.</summary>
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];

    /// <summary>
    /// Whether the assistant turn ended with <c>&lt;|eom_id|&gt;</c> (Meta's <c>StopReason.end_of_message</c>) rather
    /// than <c>&lt;|eot_id|&gt;</c>. Null: as the model ends such a turn — <c>&lt;|eom_id|&gt;</c> after a built-in
    /// call, or after a JSON custom call (the JSON format puts <c>Environment: ipython</c> in the system prompt);
    /// <c>&lt;|eot_id|&gt;</c> otherwise (prompt_format.md, text_prompt_format.md). Ignored for other roles.
    /// </summary>
    public bool? EndOfMessage { get; init; }
}

/// <summary>Where <see cref="ToolPrompt"/> writes <c>&lt;|python_tag|&gt;</c> at the start of an assistant turn with calls.</summary>
public enum PythonTagPlacement
{
    /// <summary>
    /// Only when the first call is <c>code_interpreter</c>: Meta's llama-models <c>ChatFormat.encode_message</c> since
    /// "do not use python_tag when encoding non-code_interpreter tool_calls" (February 2025).
    /// </summary>
    CodeInterpreter,

    /// <summary>When the first call is a built-in tool (the Hugging Face Llama 3.1 chat template's placement).</summary>
    BuiltinTools,

    /// <summary>Whenever the turn has calls: llama-models before February 2025, which produced prompt_format.md's examples.</summary>
    AllToolCalls,
}

/// <summary>What the prompt declares and how it is written.</summary>
public sealed record ToolPromptOptions
{
    /// <summary>Custom tools.</summary>
    public IReadOnlyList<ToolDefinition> Tools { get; init; } = [];

    /// <summary>Built-in tools.</summary>
    public BuiltinTools Builtin { get; init; }

    /// <summary>How custom tools are declared and earlier custom calls are written.</summary>
    public ToolCallFormat Format { get; init; } = ToolCallFormat.Json;

    /// <summary>
    /// <see cref="ToolCallFormat.Json"/> only: declare the custom tools in a user message of their own after the system
    /// message, as Meta's llama-models does (prompt_format.md: "Instructions for tools added as a user message"),
    /// instead of in the system message. See <see cref="MergeToolsIntoFirstUserMessage"/> for the Hugging Face placement.
    /// </summary>
    public bool ToolsInUserMessage { get; init; }

    /// <summary>
    /// With <see cref="ToolsInUserMessage"/>: put the tool declarations at the start of the dialog's first user message
    /// (joined by a blank line) instead of in a message of their own, as the Hugging Face Llama 3.1 template does.
    /// </summary>
    public bool MergeToolsIntoFirstUserMessage { get; init; }

    /// <summary>
    /// The "Today Date: 21 September 2024" line (Meta's <c>SystemDefaultGenerator</c>, <c>%d %B %Y</c>); null means the
    /// local date at rendering, as Meta's <c>datetime.now()</c>.
    /// </summary>
    public DateOnly? TodayDate { get; init; }

    /// <summary>The "Cutting Knowledge Date: ..." line's date.</summary>
    public string KnowledgeCutoff { get; init; } = "December 2023";

    /// <summary>
    /// Whether the system prompt has the "Cutting Knowledge Date" and "Today Date" lines. Null: yes for
    /// <see cref="ToolCallFormat.Json"/> (Meta's Llama 3.1 system prompt always has them), no for
    /// <see cref="ToolCallFormat.PythonList"/> (Meta's Llama 3.2 tool prompt has none). True also makes a dialog
    /// without tools get Meta's system prompt.
    /// </summary>
    public bool? IncludeDateLines { get; init; }

    /// <summary>
    /// <see cref="ToolCallFormat.PythonList"/> only: replaces Meta's default instructions
    /// (<c>PythonListCustomToolGenerator.DEFAULT_PROMPT</c>); <c>{{ function_description }}</c> in it is replaced by the
    /// function list, as Meta's <c>gen(custom_tools, system_prompt)</c> does.
    /// </summary>
    public string? PythonListSystemPrompt { get; init; }

    /// <summary>Where <c>&lt;|python_tag|&gt;</c> goes in earlier assistant turns with calls.</summary>
    public PythonTagPlacement PythonTag { get; init; } = PythonTagPlacement.CodeInterpreter;
}

/// <summary>What an assistant answer was: text, calls, or text followed by calls.</summary>
/// <param name="Content">
/// The text: the whole answer when it is not a call (without a leading <c>&lt;|python_tag|&gt;</c> or a trailing
/// <c>&lt;|eot_id|&gt;</c> / <c>&lt;|eom_id|&gt;</c>), empty for a call (as Meta's decoder), or the text before a
/// <c>&lt;|python_tag|&gt;</c> that starts a call.
/// </param>
/// <param name="Calls">The calls; empty when the answer is text.</param>
public sealed record ToolParseResult(string Content, IReadOnlyList<ToolCall> Calls);
