using System.Text;
using Llama3.Generation;
using Llama3.Tokenization;
using Llama3.Tools;

namespace Llama3.AI;

/// <summary>Whether and how the model should call tools (OpenAI's <c>tool_choice</c>, Microsoft.Extensions.AI's <c>ChatToolMode</c>).</summary>
public enum ToolChoiceMode
{
    /// <summary>The model decides whether to call a tool.</summary>
    Auto,

    /// <summary>Tools are not offered: the prompt does not declare them and the answer is text.</summary>
    None,

    /// <summary>The model must call one of the tools: its answer starts with the beginning of a call.</summary>
    Required,

    /// <summary>The model must call the tool named in <see cref="ToolChoice.Name"/>.</summary>
    Named,
}

/// <summary>A tool choice: a mode and, for <see cref="ToolChoiceMode.Named"/>, the tool's name.</summary>
public readonly record struct ToolChoice(ToolChoiceMode Mode, string? Name = null)
{
    /// <summary>The model decides.</summary>
    public static ToolChoice Auto => new(ToolChoiceMode.Auto);
}

/// <summary>A chat to answer: the messages (system, user, assistant with or without tool calls, ipython results) and the tools.</summary>
public sealed record ChatConversation(IReadOnlyList<ToolMessage> Messages)
{
    /// <summary>Custom tools the model may call.</summary>
    public IReadOnlyList<ToolDefinition> Tools { get; init; } = [];

    /// <summary>Built-in tools (Llama 3.1's <c>Environment: ipython</c> tools).</summary>
    public BuiltinTools BuiltinTools { get; init; }

    /// <summary>Whether the model must, may or must not call tools.</summary>
    public ToolChoice ToolChoice { get; init; } = ToolChoice.Auto;
}

/// <summary>How a <see cref="ChatEngine"/> renders tools for its model.</summary>
public sealed record ChatEngineOptions
{
    /// <summary>The model's name in responses (OpenAI's <c>model</c>).</summary>
    public string ModelId { get; init; } = "llama3";

    /// <summary>
    /// How custom tools are declared and called: Llama 3.1's JSON (<c>{"name": ..., "parameters": ...}</c>), which Llama
    /// 3.1 and 3.2 models both follow, or Llama 3.2's pythonic call list.
    /// </summary>
    public ToolCallFormat ToolFormat { get; init; } = ToolCallFormat.Json;

    /// <summary>Declare JSON custom tools in the first user message (as Meta's Llama 3.1 example and chat template do) instead of the system message.</summary>
    public bool ToolsInUserMessage { get; init; } = true;

    /// <summary>The "Today Date" of the tool system prompt; null means the day of the request (UTC).</summary>
    public DateOnly? TodayDate { get; init; }
}

/// <summary>A chat rendered for the model: the prompt's ids and what the answer's start was forced to.</summary>
/// <param name="Prompt">The prompt's ids, ending with the assistant header (and the forced start, if any).</param>
/// <param name="ForcedPrefix">Text the prompt already put at the start of the answer, to make the model call a tool.</param>
/// <param name="ToolsOffered">Whether tools were declared, so the answer may be a tool call.</param>
/// <param name="ToolNames">The declared tools' names.</param>
public sealed record PreparedChat(IReadOnlyList<int> Prompt, string ForcedPrefix, bool ToolsOffered, IReadOnlyCollection<string> ToolNames);

/// <summary>Why a chat answer ended (OpenAI's <c>finish_reason</c>).</summary>
public enum ChatFinishReason
{
    /// <summary>The model ended its turn, or a stop sequence appeared.</summary>
    Stop,

    /// <summary>The token limit or the end of the context.</summary>
    Length,

    /// <summary>The answer is one or more tool calls.</summary>
    ToolCalls,
}

/// <summary>One update of a streamed chat answer.</summary>
/// <param name="Text">New answer text (empty while a possible tool call is held back).</param>
/// <param name="Step">The generation step this update comes from, with its token and log-probabilities; null for an update that only releases held text.</param>
/// <param name="ToolCalls">The tool calls, on the last update, when the answer was calls.</param>
/// <param name="Finish">On the last update: why the answer ended.</param>
/// <param name="Usage">On the last update: tokens of prompt and answer.</param>
public sealed record ChatUpdate(string Text, GenerationStep? Step, IReadOnlyList<ToolCall>? ToolCalls = null,
    ChatFinishReason? Finish = null, ChatUsage? Usage = null);

/// <summary>Token counts of one request.</summary>
/// <param name="PromptTokens">Tokens of the prompt.</param>
/// <param name="CompletionTokens">Tokens generated.</param>
public sealed record ChatUsage(int PromptTokens, int CompletionTokens)
{
    /// <summary>Both together.</summary>
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>
/// The chat layer shared by the <c>IChatClient</c> and the server: renders messages and tools in the Llama 3.1 / 3.2
/// prompt format, submits the prompt to the <see cref="BatchScheduler"/>, and turns the generated text into answer text
/// or tool calls. While tools are offered, text that may still become a tool call is held back, so a stream never shows
/// the start of a call as content.
/// </summary>
public sealed class ChatEngine
{
    private readonly ToolPrompt? _prompt;
    private readonly ChatFormat? _chatFormat;

    /// <summary>A chat engine over <paramref name="scheduler"/>.</summary>
    public ChatEngine(IGenerationScheduler scheduler, ChatEngineOptions? options = null)
    {
        Scheduler = scheduler;
        Options = options ?? new ChatEngineOptions();
        _chatFormat = ChatFormat.TryCreate(scheduler.Tokenizer);
        if (_chatFormat is not null) _prompt = new ToolPrompt(scheduler.Tokenizer);
    }

    /// <summary>Whether the model's vocabulary has the Llama 3 chat format (else <see cref="Prepare"/> refuses every chat).</summary>
    public bool CanChat => _prompt is not null;

    /// <summary>The scheduler that runs the model.</summary>
    public IGenerationScheduler Scheduler { get; }

    /// <summary>The engine's settings.</summary>
    public ChatEngineOptions Options { get; }

    /// <summary>Renders <paramref name="chat"/> as the model's prompt. Throws <see cref="ArgumentException"/> for a chat that cannot be rendered.</summary>
    public PreparedChat Prepare(ChatConversation chat)
    {
        if (_prompt is null)
            throw new ArgumentException("this model's vocabulary has no Llama 3 chat tokens, so it cannot chat; give it raw text to complete instead", nameof(chat));
        if (chat.Messages.Count == 0) throw new ArgumentException("the chat has no messages", nameof(chat));
        var choice = chat.ToolChoice;
        bool offered = choice.Mode != ToolChoiceMode.None && (chat.Tools.Count > 0 || chat.BuiltinTools != BuiltinTools.None);
        if (choice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Named && chat.Tools.Count == 0)
            throw new ArgumentException("tool_choice asks for a tool call, but no tools are given", nameof(chat));
        if (choice.Mode == ToolChoiceMode.Named && !chat.Tools.Any(t => t.Name == choice.Name))
            throw new ArgumentException($"tool_choice names the tool '{choice.Name}', which is not among the tools", nameof(chat));
        var names = chat.Tools.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var options = new ToolPromptOptions
        {
            Tools = offered ? chat.Tools : [],
            Builtin = offered ? chat.BuiltinTools : BuiltinTools.None,
            Format = Options.ToolFormat,
            ToolsInUserMessage = Options.ToolsInUserMessage,
            TodayDate = Options.TodayDate ?? DateOnly.FromDateTime(DateTime.UtcNow),
        };
        // A chat without tools is Meta's Llama 3 ChatFormat (llama3's tokenizer.py: content stripped); one with tools
        // or tool turns is llama-models' Llama 3.1 format (content as given, tool prompts, <|eom_id|>).
        bool plain = !offered && chat.Messages.All(m => m.ToolCalls.Count == 0);
        var ids = plain
            ? new List<int>(_chatFormat!.EncodeDialogPrompt(chat.Messages.Select(m => new ChatMessage(m.Role, m.Content))))
            : new List<int>(_prompt.Encode(chat.Messages, options));
        // Without constrained decoding, a required call is forced by writing its start into the answer, which the
        // model then continues (the declared format leaves it one way to go on).
        string forced = choice.Mode switch
        {
            ToolChoiceMode.Required => Options.ToolFormat == ToolCallFormat.Json ? "{\"name\": \"" : "[",
            ToolChoiceMode.Named => Options.ToolFormat == ToolCallFormat.Json ? $"{{\"name\": \"{choice.Name}\", \"parameters\": " : $"[{choice.Name}(",
            _ => "",
        };
        if (forced.Length > 0) Scheduler.Tokenizer.EncodeToIds(forced, ids);
        return new PreparedChat(ids, forced, offered, names);
    }

    /// <summary>
    /// Submits <paramref name="chat"/>; bad input and a full queue throw here (see <see cref="IGenerationScheduler.Submit"/>),
    /// so a server can answer with an error before it starts a stream.
    /// </summary>
    public ChatRun Start(PreparedChat chat, GenerationOptions options, CancellationToken cancellationToken = default) =>
        new(this, chat, Scheduler.Submit(chat.Prompt, options, cancellationToken));

    /// <summary>Turns a finished answer into text or tool calls.</summary>
    public ToolParseResult ParseAnswer(PreparedChat chat, string text)
    {
        if (!chat.ToolsOffered) return new ToolParseResult(text, []);
        return ToolCallParser.Parse(text, Options.ToolFormat, chat.ToolNames.Count > 0 ? chat.ToolNames : null);
    }
}

/// <summary>A submitted chat answer.</summary>
public sealed class ChatRun
{
    private readonly ChatEngine _engine;
    private readonly PreparedChat _chat;
    private readonly ScheduledGeneration _generation;

    internal ChatRun(ChatEngine engine, PreparedChat chat, ScheduledGeneration generation)
    {
        _engine = engine;
        _chat = chat;
        _generation = generation;
    }

    /// <summary>Streams the answer: text as it is generated (held back while it may be a tool call), then a last update with the finish reason, tool calls and usage.</summary>
    public async IAsyncEnumerable<ChatUpdate> ReadAllAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var format = _engine.Options.ToolFormat;
        var held = new StringBuilder(_chat.ForcedPrefix);
        var all = new StringBuilder(_chat.ForcedPrefix);
        bool holding = _chat.ToolsOffered;
        int generated = 0;
        await foreach (var step in _generation.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            if (step.Token >= 0) generated++;
            all.Append(step.Text);
            string text = step.Text;
            if (holding)
            {
                held.Append(step.Text);
                text = "";
                if (!ToolCallParser.MayBeToolCall(held.ToString(), format))
                {
                    holding = false;
                    text = held.ToString();
                    held.Clear();
                }
            }
            if (step.FinishReason is not { } reason)
            {
                if (text.Length > 0 || step.Token >= 0) yield return new ChatUpdate(text, step);
                continue;
            }
            var usage = new ChatUsage(_chat.Prompt.Count, generated);
            var finish = reason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;
            if (holding)
            {
                var parsed = _engine.ParseAnswer(_chat, all.ToString());
                if (parsed.Calls.Count > 0)
                {
                    yield return new ChatUpdate(parsed.Content, step, parsed.Calls, ChatFinishReason.ToolCalls, usage);
                    yield break;
                }
                text = held.ToString();
            }
            yield return new ChatUpdate(text, step, null, finish, usage);
        }
    }
}
