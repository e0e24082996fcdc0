using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Llama3.AI;
using Llama3.Generation;
using Llama3.Tools;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Llama3.Server;

/// <summary>Where and how the server listens.</summary>
public sealed record ServerOptions
{
    /// <summary>The address to bind: loopback unless told otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The port; 0 picks a free one (see <see cref="LlamaServer.Address"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, every request but <c>/health</c> needs <c>Authorization: Bearer {ApiKey}</c>.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Largest request body accepted, in bytes.</summary>
    public long MaxRequestBytes { get; init; } = 32 << 20;
}

/// <summary>
/// The OpenAI-compatible HTTP server (ASP.NET Core, Kestrel): <c>/v1/chat/completions</c> (tools, streaming, logprobs),
/// <c>/v1/completions</c>, <c>/v1/models</c>, <c>/health</c>, <c>/tokenize</c> and <c>/detokenize</c>, as
/// llama-server offers them. Every request goes to the <see cref="BatchScheduler"/>, which batches the decode steps of all
/// running requests. Bad requests get a 4xx in OpenAI's error shape; the server keeps serving.
/// </summary>
public sealed class LlamaServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ChatEngine _engine;
    private readonly ServerOptions _options;
    private readonly byte[]? _key;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private readonly ILogger _log;

    private LlamaServer(WebApplication app, ChatEngine engine, ServerOptions options)
    {
        _app = app;
        _engine = engine;
        _options = options;
        _key = options.ApiKey is { Length: > 0 } k ? Encoding.UTF8.GetBytes(k) : null;
        _log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("llama3.server");
    }

    /// <summary>Builds the server over <paramref name="engine"/>; <paramref name="logging"/> configures its logs (default: warnings and our request lines on the console).</summary>
    public static LlamaServer Create(ChatEngine engine, ServerOptions options, Action<ILoggingBuilder>? logging = null)
    {
        if (options.Port is < 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(options), options.Port, "the port must be in 0..65535");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (logging is not null) logging(builder.Logging);
        else
        {
            builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.Logging.AddFilter("llama3.server", LogLevel.Information);
        }
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            k.AddServerHeader = false;
            if (options.Host is "localhost") k.ListenLocalhost(options.Port);
            else if (System.Net.IPAddress.TryParse(options.Host, out var ip)) k.Listen(ip, options.Port);
            else throw new ArgumentException($"--host must be an IP address or 'localhost' (got '{options.Host}')", nameof(options));
        });
        var app = builder.Build();
        var server = new LlamaServer(app, engine, options);
        server.Map();
        return server;
    }

    /// <summary>The address the server listens on, once started (with the port it picked when asked for port 0).</summary>
    public Uri Address
    {
        get
        {
            var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
            string a = addresses?.FirstOrDefault() ?? throw new InvalidOperationException("the server is not started");
            return new Uri(a.Replace("[::]", "localhost").Replace("0.0.0.0", "localhost"));
        }
    }

    /// <summary>The chat engine behind the server.</summary>
    public ChatEngine Engine => _engine;

    /// <summary>Starts listening.</summary>
    public Task StartAsync(CancellationToken cancellationToken = default) => _app.StartAsync(cancellationToken);

    /// <summary>Waits for the host to shut down.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops listening; requests in flight are cancelled.</summary>
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    private void Map()
    {
        _app.Use(async (ctx, next) =>
        {
            try
            {
                if (_key is not null && ctx.Request.Path != "/health" && !Authorized(ctx.Request))
                    throw new ApiException(401, "invalid API key: send 'Authorization: Bearer <key>' with the server's --api-key", code: "invalid_api_key");
                await next(ctx).ConfigureAwait(false);
                if (ctx.Response.StatusCode is 404 or 405 && !ctx.Response.HasStarted && ctx.Response.ContentLength is null)
                    throw new ApiException(ctx.Response.StatusCode, ctx.Response.StatusCode == 404
                        ? $"no endpoint {ctx.Request.Method} {ctx.Request.Path}"
                        : $"{ctx.Request.Path} does not accept {ctx.Request.Method}", code: ctx.Response.StatusCode == 404 ? "not_found" : "method_not_allowed");
            }
            catch (ApiException e) when (!ctx.Response.HasStarted)
            {
                await WriteError(ctx, e.Status, e.Message, e.Type, e.Param, e.Code).ConfigureAwait(false);
            }
            catch (PromptTooLongException e) when (!ctx.Response.HasStarted)
            {
                await WriteError(ctx, 400, $"this model's context is {e.Context} tokens per request, but the prompt has {e.PromptTokens} tokens",
                    "invalid_request_error", "messages", "context_length_exceeded").ConfigureAwait(false);
            }
            catch (SchedulerFullException e) when (!ctx.Response.HasStarted)
            {
                ctx.Response.Headers.RetryAfter = "1";
                await WriteError(ctx, 429, e.Message, "rate_limit_error", null, "server_busy").ConfigureAwait(false);
            }
            catch (ArgumentException e) when (!ctx.Response.HasStarted)
            {
                await WriteError(ctx, 400, e.Message, "invalid_request_error", null, null).ConfigureAwait(false);
            }
            catch (BadHttpRequestException e) when (!ctx.Response.HasStarted)
            {
                await WriteError(ctx, e.StatusCode, e.Message, "invalid_request_error", null, null).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                // The client went away: its generation is cancelled and its slot freed; nothing to answer.
            }
            catch (Exception e) when (!ctx.Response.HasStarted)
            {
                _log.LogError(e, "{Method} {Path} failed", ctx.Request.Method, ctx.Request.Path);
                await WriteError(ctx, 500, "internal error: " + e.Message, "server_error", null, null).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException)
            {
                // The connection broke while streaming.
            }
        });

        _app.MapGet("/health", (HttpContext ctx) => WriteJson(ctx, 200, w =>
        {
            var s = _engine.Scheduler.Stats;
            w.WriteStartObject();
            w.WriteString("status", "ok");
            w.WriteNumber("slots_idle", s.Slots - s.Active);
            w.WriteNumber("slots_processing", s.Active);
            w.WriteNumber("requests_queued", s.Queued);
            w.WriteNumber("tokens_generated", s.TokensGenerated);
            w.WriteEndObject();
        }));
        _app.MapGet("/v1/health", (HttpContext ctx) => WriteJson(ctx, 200, w => { w.WriteStartObject(); w.WriteString("status", "ok"); w.WriteEndObject(); }));
        _app.MapGet("/v1/models", (HttpContext ctx) => WriteJson(ctx, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            WriteModel(w);
            w.WriteEndArray();
            w.WriteEndObject();
        }));
        _app.MapGet("/v1/models/{id}", (HttpContext ctx, string id) =>
        {
            if (id != _engine.Options.ModelId) throw new ApiException(404, $"the model '{id}' does not exist; this server serves '{_engine.Options.ModelId}'", "model", "model_not_found");
            return WriteJson(ctx, 200, WriteModel);
        });
        _app.MapPost("/v1/chat/completions", ChatCompletions);
        _app.MapPost("/chat/completions", ChatCompletions);
        _app.MapPost("/v1/completions", Completions);
        _app.MapPost("/completions", Completions);
        _app.MapPost("/tokenize", Tokenize);
        _app.MapPost("/detokenize", Detokenize);
    }

    private bool Authorized(HttpRequest request)
    {
        string? header = request.Headers.Authorization;
        if (header is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        var given = Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim());
        return CryptographicOperations.FixedTimeEquals(given, _key);
    }

    private void WriteModel(Utf8JsonWriter w)
    {
        var c = _engine.Scheduler.Config;
        w.WriteStartObject();
        w.WriteString("id", _engine.Options.ModelId);
        w.WriteString("object", "model");
        w.WriteNumber("created", _created);
        w.WriteString("owned_by", "llama3");
        w.WriteStartObject("meta");
        w.WriteNumber("vocab_size", c.VocabSize);
        w.WriteNumber("n_ctx", _engine.Scheduler.Context);
        w.WriteNumber("n_ctx_train", c.ContextLength);
        w.WriteNumber("n_embd", c.Dim);
        w.WriteNumber("n_layer", c.Layers);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static async Task<JsonDocument> ReadBody(HttpContext ctx)
    {
        try
        {
            return await JsonDocument.ParseAsync(ctx.Request.Body, new JsonDocumentOptions { MaxDepth = 64 }, ctx.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON: {e.Message}");
        }
    }

    private async Task ChatCompletions(HttpContext ctx)
    {
        using var doc = await ReadBody(ctx).ConfigureAwait(false);
        var request = OpenAIRequests.ReadChat(JsonFields.Root(doc), _engine.Scheduler.Context);
        var chat = _engine.Prepare(request.Conversation);
        if (chat.Prompt.Count > _engine.Scheduler.Context) throw new PromptTooLongException(chat.Prompt.Count, _engine.Scheduler.Context);
        var options = request.Options with { MaxTokens = Math.Min(request.Options.MaxTokens, Math.Max(_engine.Scheduler.Context - chat.Prompt.Count, 0)) };
        var run = _engine.Start(chat, options, ctx.RequestAborted);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string model = _engine.Options.ModelId;
        var tokenizer = _engine.Scheduler.Tokenizer;

        if (!request.Stream)
        {
            var text = new StringBuilder();
            var logprobs = new List<GenerationStep>();
            ChatUpdate? last = null;
            await foreach (var u in run.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
            {
                text.Append(u.Text);
                if (request.Logprobs && u.Step is { Token: >= 0 } s) logprobs.Add(s);
                last = u;
            }
            Log(ctx, last!.Usage!);
            await WriteJson(ctx, 200, w =>
            {
                Head(w, id, "chat.completion", created, model);
                w.WriteStartArray("choices");
                w.WriteStartObject();
                w.WriteNumber("index", 0);
                w.WriteStartObject("message");
                w.WriteString("role", "assistant");
                if (last.ToolCalls is { Count: > 0 } calls)
                {
                    if (text.Length > 0) w.WriteString("content", text.ToString()); else w.WriteNull("content");
                    w.WriteStartArray("tool_calls");
                    for (int i = 0; i < calls.Count; i++) WriteToolCall(w, calls[i], null);
                    w.WriteEndArray();
                }
                else w.WriteString("content", text.ToString());
                w.WriteEndObject();
                if (request.Logprobs) WriteChatLogprobs(w, tokenizer, logprobs); else w.WriteNull("logprobs");
                w.WriteString("finish_reason", FinishName(last.Finish!.Value));
                w.WriteEndObject();
                w.WriteEndArray();
                WriteUsage(w, last.Usage!);
                w.WriteEndObject();
            }).ConfigureAwait(false);
            return;
        }

        StartEvents(ctx);
        await WriteEvent(ctx, w => ChunkStart(w, id, created, model, w2 => { w2.WriteString("role", "assistant"); w2.WriteString("content", ""); }, null, null, request.IncludeUsage)).ConfigureAwait(false);
        ChatUsage? usage = null;
        await foreach (var u in run.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
        {
            var step = request.Logprobs && u.Step is { Token: >= 0 } s ? s : null;
            if (u.Text.Length > 0 || step is not null)
                await WriteEvent(ctx, w => ChunkStart(w, id, created, model, w2 => w2.WriteString("content", u.Text),
                    step is null ? null : w3 => WriteChatLogprobs(w3, tokenizer, [step]), null, request.IncludeUsage)).ConfigureAwait(false);
            if (u.ToolCalls is { Count: > 0 } calls)
                await WriteEvent(ctx, w => ChunkStart(w, id, created, model, w2 =>
                {
                    w2.WriteStartArray("tool_calls");
                    for (int i = 0; i < calls.Count; i++) WriteToolCall(w2, calls[i], i);
                    w2.WriteEndArray();
                }, null, null, request.IncludeUsage)).ConfigureAwait(false);
            if (u.Finish is { } finish)
            {
                usage = u.Usage;
                await WriteEvent(ctx, w => ChunkStart(w, id, created, model, _ => { }, null, FinishName(finish), request.IncludeUsage)).ConfigureAwait(false);
            }
        }
        if (request.IncludeUsage && usage is not null)
            await WriteUsageEvent(ctx, id, "chat.completion.chunk", created, model, usage).ConfigureAwait(false);
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted).ConfigureAwait(false);
        if (usage is not null) Log(ctx, usage);
    }

    // The fields every response object starts with.
    private static void Head(Utf8JsonWriter w, string id, string type, long created, string model)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", type);
        w.WriteNumber("created", created);
        w.WriteString("model", model);
    }

    // The last event of a stream with stream_options.include_usage: no choices, the usage.
    private static Task WriteUsageEvent(HttpContext ctx, string id, string type, long created, string model, ChatUsage usage) =>
        WriteEvent(ctx, w =>
        {
            Head(w, id, type, created, model);
            w.WriteStartArray("choices");
            w.WriteEndArray();
            WriteUsage(w, usage);
            w.WriteEndObject();
        });

    private static void ChunkStart(Utf8JsonWriter w, string id, long created, string model, Action<Utf8JsonWriter> delta,
        Action<Utf8JsonWriter>? logprobs, string? finish, bool nullUsage)
    {
        Head(w, id, "chat.completion.chunk", created, model);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteStartObject("delta");
        delta(w);
        w.WriteEndObject();
        if (logprobs is null) w.WriteNull("logprobs"); else logprobs(w);
        if (finish is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finish);
        w.WriteEndObject();
        w.WriteEndArray();
        if (nullUsage) w.WriteNull("usage");
        w.WriteEndObject();
    }

    private static void WriteToolCall(Utf8JsonWriter w, ToolCall call, int? index)
    {
        w.WriteStartObject();
        if (index is int i) w.WriteNumber("index", i);
        w.WriteString("id", call.Id ?? LlamaChatClient.NewCallId());
        w.WriteString("type", "function");
        w.WriteStartObject("function");
        w.WriteString("name", call.Name);
        w.WriteString("arguments", call.Arguments.ToJsonString());
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static string FinishName(AI.ChatFinishReason r) => r switch
    {
        AI.ChatFinishReason.Length => "length",
        AI.ChatFinishReason.ToolCalls => "tool_calls",
        _ => "stop",
    };

    private static void WriteUsage(Utf8JsonWriter w, ChatUsage u)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", u.PromptTokens);
        w.WriteNumber("completion_tokens", u.CompletionTokens);
        w.WriteNumber("total_tokens", u.TotalTokens);
        w.WriteEndObject();
    }

    // OpenAI's chat logprobs: {"content":[{"token","logprob","bytes","top_logprobs":[{"token","logprob","bytes"}]}]}.
    private static void WriteChatLogprobs(Utf8JsonWriter w, Tokenization.LlamaTokenizer tokenizer, IReadOnlyList<GenerationStep> steps)
    {
        w.WriteStartObject("logprobs");
        w.WriteStartArray("content");
        foreach (var s in steps)
        {
            w.WriteStartObject();
            WriteTokenLogprob(w, tokenizer, s.Token, s.Logprob ?? 0);
            w.WriteStartArray("top_logprobs");
            foreach (var t in s.TopLogprobs ?? [])
            {
                w.WriteStartObject();
                WriteTokenLogprob(w, tokenizer, t.Id, t.Logprob);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("refusal");
        w.WriteEndObject();
    }

    private static void WriteTokenLogprob(Utf8JsonWriter w, Tokenization.LlamaTokenizer tokenizer, int id, float logprob)
    {
        var bytes = tokenizer.GetTokenBytes(id);
        w.WriteString("token", Encoding.UTF8.GetString(bytes));
        w.WriteNumber("logprob", logprob);
        w.WriteStartArray("bytes");
        foreach (byte b in bytes) w.WriteNumberValue(b);
        w.WriteEndArray();
    }

    private async Task Completions(HttpContext ctx)
    {
        using var doc = await ReadBody(ctx).ConfigureAwait(false);
        var request = OpenAIRequests.ReadCompletion(JsonFields.Root(doc), _engine.Scheduler.Context);
        var tokenizer = _engine.Scheduler.Tokenizer;
        int vocab = _engine.Scheduler.Config.VocabSize;
        IReadOnlyList<int> prompt = request.Prompt switch
        {
            string s => tokenizer.EncodeToIds(s, addBos: tokenizer.AddBos && tokenizer.BosId is not null),
            int[] ids => ids.All(i => (uint)i < (uint)vocab) ? ids : throw new ApiException(400, $"'prompt' has a token id outside the vocabulary (0..{vocab - 1})", "prompt"),
            _ => throw new InvalidOperationException(),
        };
        if (prompt.Count == 0) throw new ApiException(400, "'prompt' is empty", "prompt");
        if (prompt.Count > _engine.Scheduler.Context) throw new PromptTooLongException(prompt.Count, _engine.Scheduler.Context);
        var options = request.Options with { MaxTokens = Math.Min(request.Options.MaxTokens, _engine.Scheduler.Context - prompt.Count) };
        var generation = _engine.Scheduler.Submit(prompt, options, ctx.RequestAborted);
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string model = _engine.Options.ModelId;
        string echo = !request.Echo ? "" : request.Prompt is string text ? text : tokenizer.Decode(prompt); // the prompt as sent

        if (!request.Stream)
        {
            var steps = new List<GenerationStep>();
            await foreach (var s in generation.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false)) steps.Add(s);
            var result = await generation.Result.ConfigureAwait(false);
            var usage = new ChatUsage(prompt.Count, result.Tokens.Count);
            Log(ctx, usage);
            await WriteJson(ctx, 200, w =>
            {
                Head(w, id, "text_completion", created, model);
                w.WriteStartArray("choices");
                w.WriteStartObject();
                w.WriteString("text", echo + result.Text);
                w.WriteNumber("index", 0);
                if (request.Logprobs is not null) WriteCompletionLogprobs(w, tokenizer, steps.Where(s => s.Token >= 0).ToList(), echo.Length);
                else w.WriteNull("logprobs");
                w.WriteString("finish_reason", result.FinishReason == FinishReason.Length ? "length" : "stop");
                w.WriteEndObject();
                w.WriteEndArray();
                WriteUsage(w, usage);
                w.WriteEndObject();
            }).ConfigureAwait(false);
            return;
        }

        StartEvents(ctx);
        void Chunk(Utf8JsonWriter w, string text, GenerationStep? step, string? finish)
        {
            Head(w, id, "text_completion", created, model);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteString("text", text);
            w.WriteNumber("index", 0);
            if (step is not null) WriteCompletionLogprobs(w, tokenizer, [step], 0); else w.WriteNull("logprobs");
            if (finish is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finish);
            w.WriteEndObject();
            w.WriteEndArray();
            if (request.IncludeUsage) w.WriteNull("usage");
            w.WriteEndObject();
        }
        if (echo.Length > 0) await WriteEvent(ctx, w => Chunk(w, echo, null, null)).ConfigureAwait(false);
        GenerationStep? lastStep = null;
        int generated = 0;
        await foreach (var s in generation.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
        {
            if (s.Token >= 0) generated++;
            string? finish = s.FinishReason is { } r ? (r == FinishReason.Length ? "length" : "stop") : null;
            var lp = request.Logprobs is not null && s.Token >= 0 ? s : null;
            if (s.Text.Length > 0 || finish is not null || lp is not null)
                await WriteEvent(ctx, w => Chunk(w, s.Text, lp, finish)).ConfigureAwait(false);
            lastStep = s;
        }
        var u = new ChatUsage(prompt.Count, generated);
        if (request.IncludeUsage)
            await WriteUsageEvent(ctx, id, "text_completion", created, model, u).ConfigureAwait(false);
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted).ConfigureAwait(false);
        Log(ctx, u);
    }

    // The legacy completions logprobs: {"tokens","token_logprobs","top_logprobs":[{token: logprob}],"text_offset"}.
    private static void WriteCompletionLogprobs(Utf8JsonWriter w, Tokenization.LlamaTokenizer tokenizer, IReadOnlyList<GenerationStep> steps, int offset)
    {
        w.WriteStartObject("logprobs");
        w.WriteStartArray("tokens");
        foreach (var s in steps) w.WriteStringValue(Encoding.UTF8.GetString(tokenizer.GetTokenBytes(s.Token)));
        w.WriteEndArray();
        w.WriteStartArray("token_logprobs");
        foreach (var s in steps) w.WriteNumberValue(s.Logprob ?? 0);
        w.WriteEndArray();
        w.WriteStartArray("top_logprobs");
        foreach (var s in steps)
        {
            w.WriteStartObject();
            foreach (var t in s.TopLogprobs ?? [])
            {
                string piece = Encoding.UTF8.GetString(tokenizer.GetTokenBytes(t.Id));
                w.WriteNumber(piece, t.Logprob); // two ids with the same text keep the more likely (first) one in most readers
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("text_offset");
        int at = offset;
        foreach (var s in steps)
        {
            w.WriteNumberValue(at);
            at += s.Text.Length;
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private async Task Tokenize(HttpContext ctx)
    {
        using var doc = await ReadBody(ctx).ConfigureAwait(false);
        var f = JsonFields.Root(doc);
        string content = f.String("content", required: true)!;
        bool addSpecial = f.Bool("add_special") ?? false;
        bool parseSpecial = f.Bool("parse_special") ?? true;
        bool withPieces = f.Bool("with_pieces") ?? false;
        var tokenizer = _engine.Scheduler.Tokenizer;
        var ids = tokenizer.EncodeToIds(content, addBos: addSpecial && tokenizer.BosId is not null,
            specials: parseSpecial ? Tokenization.SpecialTokenMode.Allow : Tokenization.SpecialTokenMode.AsText);
        await WriteJson(ctx, 200, w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("tokens");
            foreach (int id in ids)
            {
                if (!withPieces) { w.WriteNumberValue(id); continue; }
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("piece", Encoding.UTF8.GetString(tokenizer.GetTokenBytes(id)));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private async Task Detokenize(HttpContext ctx)
    {
        using var doc = await ReadBody(ctx).ConfigureAwait(false);
        var f = JsonFields.Root(doc);
        var arr = f.Array("tokens", required: true)!.Value;
        int vocab = _engine.Scheduler.Config.VocabSize;
        var ids = new List<int>();
        foreach (var e in arr.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id)) throw new ApiException(400, "'tokens' must be an array of integers", "tokens");
            if ((uint)id >= (uint)vocab) throw new ApiException(400, $"token {id} is outside the vocabulary (0..{vocab - 1})", "tokens");
            ids.Add(id);
        }
        string text = _engine.Scheduler.Tokenizer.Decode(ids);
        await WriteJson(ctx, 200, w => { w.WriteStartObject(); w.WriteString("content", text); w.WriteEndObject(); }).ConfigureAwait(false);
    }

    private void Log(HttpContext ctx, ChatUsage usage) =>
        _log.LogInformation("{Method} {Path} 200: {Prompt} prompt + {Completion} completion tokens", ctx.Request.Method, ctx.Request.Path,
            usage.PromptTokens, usage.CompletionTokens);

    private static void StartEvents(HttpContext ctx)
    {
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Response.Headers["X-Accel-Buffering"] = "no";
    }

    // Text as UTF-8, not \uXXXX escapes (as llama-server writes it): the bodies are JSON for API clients, never HTML.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static async Task WriteEvent(HttpContext ctx, Action<Utf8JsonWriter> write)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        buffer.Write("data: "u8);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions)) write(w);
        buffer.Write("\n\n"u8);
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted).ConfigureAwait(false);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
    }

    private static async Task WriteJson(HttpContext ctx, int status, Action<Utf8JsonWriter> write)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions)) write(w);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted).ConfigureAwait(false);
    }

    private static Task WriteError(HttpContext ctx, int status, string message, string type, string? param, string? code) =>
        WriteJson(ctx, status, w => ApiException.WriteError(w, message, type, param, code));
}
