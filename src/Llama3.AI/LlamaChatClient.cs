using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Llama3.Generation;
using Llama3.Model;
using Llama3.Tools;
using Microsoft.Extensions.AI;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AIFinishReason = Microsoft.Extensions.AI.ChatFinishReason;

namespace Llama3.AI;

/// <summary>
/// A Microsoft.Extensions.AI <see cref="IChatClient"/> over a local Llama 3 model. <see cref="ChatOptions"/> map to the
/// sampler (temperature, top-p, top-k, penalties, seed, max output tokens, stop sequences); <see cref="AIFunctionDeclaration"/>
/// tools are declared in Llama 3.1's format, the model's calls come back as <see cref="FunctionCallContent"/> and
/// <see cref="FunctionResultContent"/> goes back as <c>ipython</c> messages, so <c>FunctionInvokingChatClient</c> runs a
/// tool loop. Requests from several threads are batched by the <see cref="BatchScheduler"/>.
/// </summary>
public sealed class LlamaChatClient : IChatClient
{
    private readonly ChatEngine _engine;
    private readonly IDisposable? _owned;

    /// <summary>A client over <paramref name="engine"/> (the caller keeps ownership of the model).</summary>
    public LlamaChatClient(ChatEngine engine)
    {
        _engine = engine;
        Metadata = new ChatClientMetadata("llama3", null, engine.Options.ModelId);
    }

    private LlamaChatClient(ChatEngine engine, IDisposable owned) : this(engine) => _owned = owned;

    /// <summary>
    /// Opens a model (a GGUF file, a Hugging Face directory or a Meta directory) and serves it with <paramref name="slots"/>
    /// sequences at once, each with <paramref name="context"/> positions in a cache of <paramref name="cacheType"/>.
    /// Disposing the client closes the model.
    /// </summary>
    public static LlamaChatClient Open(string path, int context = 4096, int slots = 1, ChatEngineOptions? options = null, ModelLoadOptions? load = null,
        KvCacheType cacheType = KvCacheType.F32)
    {
        var files = ModelFiles.Open(path, load);
        try
        {
            var tokenizer = files.Tokenizer ?? throw new ArgumentException($"{path}: the model has no tokenizer", nameof(path));
            var model = new Transformer(files, cacheType: cacheType);
            var scheduler = new BatchScheduler(model, tokenizer, new BatchSchedulerOptions { Slots = slots, Context = context });
            var engine = new ChatEngine(scheduler, (options ?? new ChatEngineOptions()) with
            {
                ModelId = options?.ModelId is { } id && id != "llama3" ? id : Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(path)),
            });
            return new LlamaChatClient(engine, new Owned(scheduler, model, files));
        }
        catch
        {
            files.Dispose();
            throw;
        }
    }

    /// <summary>The client's metadata (provider "llama3", the model id).</summary>
    public ChatClientMetadata Metadata { get; }

    /// <summary>The chat engine underneath.</summary>
    public ChatEngine Engine => _engine;

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
            updates.Add(u);
        return updates.ToChatResponse();
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var chat = _engine.Prepare(ToConversation(messages, options));
        var run = _engine.Start(chat, ToGenerationOptions(options), cancellationToken);
        string responseId = "chatcmpl-" + Guid.NewGuid().ToString("N");
        string messageId = "msg-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow;
        string modelId = _engine.Options.ModelId;
        await foreach (var u in run.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            var contents = new List<AIContent>();
            if (u.Text.Length > 0) contents.Add(new TextContent(u.Text));
            if (u.ToolCalls is { } calls)
                foreach (var call in calls)
                    contents.Add(new FunctionCallContent(call.Id ?? NewCallId(), call.Name, ToArguments(call.Arguments)));
            if (u.Usage is { } usage)
                contents.Add(new UsageContent(new UsageDetails
                {
                    InputTokenCount = usage.PromptTokens,
                    OutputTokenCount = usage.CompletionTokens,
                    TotalTokenCount = usage.TotalTokens,
                }));
            if (contents.Count == 0 && u.Finish is null) continue;
            yield return new ChatResponseUpdate(ChatRole.Assistant, contents)
            {
                ResponseId = responseId,
                MessageId = messageId,
                CreatedAt = created,
                ModelId = modelId,
                FinishReason = u.Finish switch
                {
                    ChatFinishReason.Stop => AIFinishReason.Stop,
                    ChatFinishReason.Length => AIFinishReason.Length,
                    ChatFinishReason.ToolCalls => AIFinishReason.ToolCalls,
                    _ => null,
                },
            };
        }
    }

    /// <summary>A new tool call id, in OpenAI's shape.</summary>
    public static string NewCallId() => "call_" + Guid.NewGuid().ToString("N")[..24];

    /// <summary>Maps Microsoft.Extensions.AI messages and options to a conversation in Llama 3.1's roles.</summary>
    public static ChatConversation ToConversation(IEnumerable<AIChatMessage> messages, ChatOptions? options)
    {
        var list = new List<ToolMessage>();
        if (options?.Instructions is { Length: > 0 } instructions) list.Add(new ToolMessage("system", instructions));
        foreach (var m in messages)
        {
            string role = m.Role.Value;
            var calls = new List<ToolCall>();
            var text = new System.Text.StringBuilder();
            foreach (var c in m.Contents)
            {
                switch (c)
                {
                    case TextContent t:
                        text.Append(t.Text);
                        break;
                    case FunctionCallContent f:
                        calls.Add(new ToolCall(f.Name, ToJsonObject(f.Arguments), f.CallId));
                        break;
                    case FunctionResultContent r:
                        // Llama 3.1 returns tool output in the ipython role, one message per result.
                        list.Add(new ToolMessage("ipython", ResultText(r)));
                        break;
                }
            }
            if (role == ChatRole.Tool.Value)
            {
                if (text.Length > 0) list.Add(new ToolMessage("ipython", text.ToString()));
                continue;
            }
            if (text.Length > 0 || calls.Count > 0 || !m.Contents.OfType<FunctionResultContent>().Any())
                list.Add(new ToolMessage(role, text.ToString()) { ToolCalls = calls });
        }

        var tools = new List<ToolDefinition>();
        var builtin = BuiltinTools.None;
        foreach (var tool in options?.Tools ?? [])
        {
            switch (tool)
            {
                case AIFunctionDeclaration f:
                    tools.Add(new ToolDefinition(f.Name, string.IsNullOrEmpty(f.Description) ? null : f.Description,
                        JsonNode.Parse(f.JsonSchema.GetRawText()) as JsonObject));
                    break;
                // The hosted tools Llama 3.1 was trained to call (its built-in brave_search and code_interpreter); the
                // caller runs them and returns the result like a function's.
                case HostedWebSearchTool:
                    builtin |= BuiltinTools.BraveSearch;
                    break;
                case HostedCodeInterpreterTool:
                    builtin |= BuiltinTools.CodeInterpreter;
                    break;
            }
        }
        var choice = options?.ToolMode switch
        {
            NoneChatToolMode => new ToolChoice(ToolChoiceMode.None),
            RequiredChatToolMode { RequiredFunctionName: { } name } => new ToolChoice(ToolChoiceMode.Named, name),
            RequiredChatToolMode => new ToolChoice(ToolChoiceMode.Required),
            _ => ToolChoice.Auto,
        };
        return new ChatConversation(list) { Tools = tools, BuiltinTools = builtin, ToolChoice = tools.Count == 0 ? ToolChoice.Auto : choice };
    }

    /// <summary>Maps <see cref="ChatOptions"/> to generation options (defaults: Meta's temperature 0.6 and top-p 0.9).</summary>
    public static GenerationOptions ToGenerationOptions(ChatOptions? options)
    {
        var s = new SamplerOptions();
        if (options is null) return new GenerationOptions { Sampling = s };
        s = s with
        {
            Temperature = options.Temperature ?? s.Temperature,
            TopP = options.TopP ?? s.TopP,
            TopK = options.TopK ?? s.TopK,
            FrequencyPenalty = options.FrequencyPenalty ?? s.FrequencyPenalty,
            PresencePenalty = options.PresencePenalty ?? s.PresencePenalty,
            Seed = options.Seed is long seed ? unchecked((ulong)seed) : null,
        };
        return new GenerationOptions
        {
            Sampling = s,
            MaxTokens = options.MaxOutputTokens ?? new GenerationOptions().MaxTokens,
            StopStrings = options.StopSequences?.ToArray() ?? [],
        };
    }

    private static string ResultText(FunctionResultContent r) => r.Result switch
    {
        null => r.Exception is { } e ? "Error: " + e.Message : "",
        string s => s,
        JsonElement e when e.ValueKind == JsonValueKind.String => e.GetString() ?? "",
        JsonElement e => e.GetRawText(),
        _ => JsonSerializer.Serialize(r.Result, AIJsonUtilities.DefaultOptions.GetTypeInfo(r.Result.GetType())),
    };

    private static JsonObject ToJsonObject(IDictionary<string, object?>? arguments)
    {
        var o = new JsonObject();
        if (arguments is null) return o;
        foreach (var (k, v) in arguments)
            o[k] = v switch
            {
                null => null,
                JsonElement e => JsonNode.Parse(e.GetRawText()),
                JsonNode n => n.DeepClone(),
                _ => JsonSerializer.SerializeToNode(v, AIJsonUtilities.DefaultOptions.GetTypeInfo(v.GetType())),
            };
        return o;
    }

    private static Dictionary<string, object?> ToArguments(JsonObject arguments)
    {
        var d = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in arguments)
            d[k] = v is null ? null : JsonSerializer.Deserialize<JsonElement>(v.ToJsonString());
        return d;
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(_engine)) return _engine;
        if (serviceType.IsInstanceOfType(_engine.Scheduler)) return _engine.Scheduler;
        return null;
    }

    /// <summary>Closes the model when the client opened it.</summary>
    public void Dispose() => _owned?.Dispose();

    private sealed class Owned(BatchScheduler scheduler, Transformer model, ModelFiles files) : IDisposable
    {
        public void Dispose()
        {
            scheduler.Dispose();
            model.Dispose();
            files.Dispose();
        }
    }
}
