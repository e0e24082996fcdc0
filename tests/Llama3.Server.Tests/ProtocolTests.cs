using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Llama3.AI;
using Llama3.Generation;
using Microsoft.Extensions.Logging;

namespace Llama3.Server.Tests;

/// <summary>The HTTP protocol itself, with a plain HttpClient: event streams, the other endpoints, and bad requests.</summary>
[Collection("server")]
public sealed class ProtocolTests(ServerFixture fx)
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromMinutes(2) };

    private Task<HttpResponseMessage> Post(string path, string body) =>
        Http.PostAsync(new Uri(fx.BaseAddress, path), new StringContent(body, Encoding.UTF8, "application/json"));

    private static async Task<JsonElement> Json(HttpResponseMessage r) => JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;

    private const string Chat = """{"model":"llama3-tiny","messages":[{"role":"user","content":"Hello"}],"temperature":0,"max_tokens":6""";

    [Fact]
    public async Task Chat_stream_is_server_sent_events_ending_with_done()
    {
        var r = await Post("/v1/chat/completions", Chat + ""","stream":true,"stream_options":{"include_usage":true}}""");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType!.MediaType);
        string body = await r.Content.ReadAsStringAsync();
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        var usage = chunks[^1];
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        Assert.Equal(6, usage.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        var finishes = chunks.Select(c => c.GetProperty("choices")).Where(c => c.GetArrayLength() > 0)
            .Select(c => c[0].GetProperty("finish_reason")).Where(f => f.ValueKind != JsonValueKind.Null).ToList();
        Assert.Equal("length", Assert.Single(finishes).GetString());
    }

    [Fact]
    public async Task Text_completion_echo_and_stream_agree()
    {
        const string body = """{"prompt":"Once upon a time","max_tokens":8,"temperature":0""";
        var plain = await Json(await Post("/v1/completions", body + "}"));
        var echo = await Json(await Post("/v1/completions", body + ""","echo":true}"""));
        string text = plain.GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.Equal("text_completion", plain.GetProperty("object").GetString());
        Assert.Equal("Once upon a time" + text, echo.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal("length", plain.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        var prompt = fx.Files.Tokenizer!.EncodeToIds("Once upon a time", addBos: fx.Files.Tokenizer.AddBos);
        Assert.Equal(prompt.Count, plain.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        string streamed = await (await Post("/v1/completions", body + ""","stream":true}""")).Content.ReadAsStringAsync();
        var pieces = streamed.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => e != "data: [DONE]")
            .Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(text, string.Concat(pieces));
        Assert.EndsWith("data: [DONE]\n\n", streamed);
    }

    [Fact]
    public async Task Completion_logprobs_have_the_legacy_shape()
    {
        var r = await Json(await Post("/v1/completions", """{"prompt":"Hi","max_tokens":4,"temperature":0,"logprobs":2}"""));
        var lp = r.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(4, lp.GetProperty("tokens").GetArrayLength());
        Assert.Equal(4, lp.GetProperty("token_logprobs").GetArrayLength());
        Assert.All(lp.GetProperty("top_logprobs").EnumerateArray(), t => Assert.InRange(t.EnumerateObject().Count(), 1, 2));
        Assert.Equal(0, lp.GetProperty("text_offset")[0].GetInt32());
    }

    [Fact]
    public async Task Tokenize_and_detokenize_round_trip_with_the_models_tokenizer()
    {
        var tok = await Json(await Post("/tokenize", """{"content":"Hello, world! <|eot_id|>","add_special":true}"""));
        var ids = tok.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var expected = fx.Files.Tokenizer!.EncodeToIds("Hello, world! <|eot_id|>", addBos: true, specials: Tokenization.SpecialTokenMode.Allow);
        Assert.Equal(expected, ids);
        Assert.Equal(128009, ids[^1]);
        var detok = await Json(await Post("/detokenize", JsonSerializer.Serialize(new { tokens = ids })));
        Assert.Equal("<|begin_of_text|>Hello, world! <|eot_id|>", detok.GetProperty("content").GetString());
        var pieces = await Json(await Post("/tokenize", """{"content":"Hi there","with_pieces":true}"""));
        Assert.Equal(" there", pieces.GetProperty("tokens")[1].GetProperty("piece").GetString());
    }

    [Fact]
    public async Task Models_and_health_describe_the_server()
    {
        var models = await Json(await Http.GetAsync(new Uri(fx.BaseAddress, "/v1/models")));
        Assert.Equal("list", models.GetProperty("object").GetString());
        Assert.Equal(ServerFixture.ModelId, models.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.Equal(256, models.GetProperty("data")[0].GetProperty("meta").GetProperty("n_ctx").GetInt32());
        var health = await Json(await Http.GetAsync(new Uri(fx.BaseAddress, "/health")));
        Assert.Equal("ok", health.GetProperty("status").GetString());
        Assert.Equal(4, health.GetProperty("slots_idle").GetInt32() + health.GetProperty("slots_processing").GetInt32());
        Assert.Equal(HttpStatusCode.NotFound, (await Http.GetAsync(new Uri(fx.BaseAddress, "/v1/models/gpt-4"))).StatusCode);
    }

    public static TheoryData<string, string, int, string?> BadRequests => new()
    {
        { "/v1/chat/completions", "{not json", 400, null },
        { "/v1/chat/completions", "[1,2]", 400, null },
        { "/v1/chat/completions", """{"messages":[]}""", 400, "messages" },
        { "/v1/chat/completions", """{"model":"x"}""", 400, "messages" },
        { "/v1/chat/completions", """{"messages":"hello"}""", 400, "messages" },
        { "/v1/chat/completions", """{"messages":[{"role":"wizard","content":"hi"}]}""", 400, "messages[0].role" },
        { "/v1/chat/completions", """{"messages":[{"content":"hi"}]}""", 400, "messages[0].role" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":42}]}""", 400, "messages[0].content" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":-1}""", 400, "max_tokens" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}""", 400, "max_tokens" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", 400, "temperature" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":3}""", 400, "temperature" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_p":0}""", 400, "top_p" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}""", 400, "stream" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stop":[1]}""", 400, "stop" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_logprobs":3}""", 400, "top_logprobs" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}""", 400, "top_logprobs" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"n":2}""", 400, "n" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"tools":{}}""", 400, "tools" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}""", 400, "tool_choice" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}""", 400, "tool_choice" },
        { "/v1/chat/completions", """{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}""", 400, "messages[0].tool_calls[0].function.arguments" },
        { "/v1/completions", """{"prompt":5}""", 400, "prompt" },
        { "/v1/completions", """{"prompt":[1, 999999999]}""", 400, "prompt" },
        { "/v1/completions", """{"max_tokens":5}""", 400, "prompt" },
        { "/v1/completions", """{"prompt":"hi","logprobs":9}""", 400, "logprobs" },
        { "/detokenize", """{"tokens":[-1]}""", 400, "tokens" },
        { "/tokenize", """{"content":7}""", 400, "content" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_requests_get_a_4xx_in_OpenAIs_error_shape_and_the_server_keeps_serving(string path, string body, int status, string? param)
    {
        var r = await Post(path, body);
        Assert.Equal(status, (int)r.StatusCode);
        var error = (await Json(r)).GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        if (param is not null) Assert.Equal(param, error.GetProperty("param").GetString());
        // and the next request is served
        var ok = await Post("/v1/chat/completions", Chat + "}");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task A_prompt_longer_than_the_context_is_a_400_context_length_exceeded()
    {
        string longText = string.Join(" ", Enumerable.Repeat("word", 400));
        var r = await Post("/v1/chat/completions", JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = longText } } }));
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        var error = (await Json(r)).GetProperty("error");
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        Assert.Contains("256", error.GetProperty("message").GetString());
        var c = await Post("/v1/completions", JsonSerializer.Serialize(new { prompt = longText }));
        Assert.Equal(HttpStatusCode.BadRequest, c.StatusCode);
    }

    [Fact]
    public async Task Unknown_paths_and_methods_get_errors_in_the_same_shape()
    {
        var r = await Http.GetAsync(new Uri(fx.BaseAddress, "/v1/engines"));
        Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        Assert.Equal("not_found", (await Json(r)).GetProperty("error").GetProperty("code").GetString());
        var m = await Http.GetAsync(new Uri(fx.BaseAddress, "/v1/chat/completions"));
        Assert.Equal(HttpStatusCode.MethodNotAllowed, m.StatusCode);
        Assert.True((await Json(m)).TryGetProperty("error", out _));
    }
}

/// <summary>
/// Servers of their own: an API key, a full queue, a client that leaves. The tiny model generates hundreds of tokens a
/// second, so requests that must still be running when the test acts get a context of 100,000 positions to fill.
/// </summary>
public sealed class ServerLimitsTests
{
    private static readonly HttpClient Http = new();

    // A request without max_tokens generates until the context is full: at this size, minutes of work.
    private const int LongContext = 100_000;

    private static async Task<(LlamaServer, BatchScheduler, IDisposable)> Start(BatchSchedulerOptions options, string? key = null)
    {
        var files = Model.ModelFiles.Open(Llama3.Tests.SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"));
        var model = new Model.Transformer(files, threads: 1);
        var scheduler = new BatchScheduler(model, files.Tokenizer!, options);
        var server = LlamaServer.Create(new ChatEngine(scheduler), new ServerOptions { Port = 0, ApiKey = key }, l => l.SetMinimumLevel(LogLevel.None));
        await server.StartAsync();
        return (server, scheduler, new Disposer(() => { scheduler.Dispose(); model.Dispose(); files.Dispose(); }));
    }

    private sealed class Disposer(Action a) : IDisposable
    {
        public void Dispose() => a();
    }

    [Fact]
    public async Task A_wrong_or_missing_API_key_is_a_401_and_the_right_one_works()
    {
        var (server, _, owned) = await Start(new BatchSchedulerOptions { Slots = 1, Context = 64 }, key: "s3cret");
        await using (server)
        using (owned)
        {
            var uri = new Uri(server.Address, "/v1/models");
            var none = await Http.GetAsync(uri);
            Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
            Assert.Equal("invalid_api_key", JsonDocument.Parse(await none.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
            var wrong = new HttpRequestMessage(HttpMethod.Get, uri) { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", "guess") } };
            Assert.Equal(HttpStatusCode.Unauthorized, (await Http.SendAsync(wrong)).StatusCode);
            var right = new HttpRequestMessage(HttpMethod.Get, uri) { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", "s3cret") } };
            Assert.Equal(HttpStatusCode.OK, (await Http.SendAsync(right)).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync(new Uri(server.Address, "/health"))).StatusCode); // health needs no key

            // The official client with the key
            var client = new OpenAI.Chat.ChatClient("m", new System.ClientModel.ApiKeyCredential("s3cret"), new OpenAI.OpenAIClientOptions { Endpoint = new Uri(server.Address, "/v1") });
            var c = await client.CompleteChatAsync([new OpenAI.Chat.UserChatMessage("hi")], new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 2 });
            Assert.True(c.Value.Usage.OutputTokenCount <= 2);
            var bad = new OpenAI.Chat.ChatClient("m", new System.ClientModel.ApiKeyCredential("nope"), new OpenAI.OpenAIClientOptions { Endpoint = new Uri(server.Address, "/v1") });
            var e = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => bad.CompleteChatAsync([new OpenAI.Chat.UserChatMessage("hi")]));
            Assert.Equal(401, e.Status);
        }
    }

    [Fact]
    public async Task Requests_beyond_the_slots_and_the_queue_get_429_until_a_slot_frees()
    {
        var (server, scheduler, owned) = await Start(new BatchSchedulerOptions { Slots = 1, Context = LongContext, MaxQueue = 1 });
        await using (server)
        using (owned)
        {
            var uri = new Uri(server.Address, "/v1/chat/completions");
            HttpRequestMessage Long() => new(HttpMethod.Post, uri)
            {
                // Greedy: the tiny model's answer to "go" runs past 5,000 tokens without an end of turn, so the first
                // request holds its slot for the whole test (sampled, it could end early and free the slot).
                Content = new StringContent("""{"messages":[{"role":"user","content":"go"}],"stream":true,"temperature":0}""", Encoding.UTF8, "application/json"),
            };
            using var first = await Http.SendAsync(Long(), HttpCompletionOption.ResponseHeadersRead);   // takes the slot
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            var second = Http.SendAsync(Long(), HttpCompletionOption.ResponseHeadersRead);               // waits in the queue
            for (int i = 0; i < 200 && scheduler.Stats.Queued == 0; i++) await Task.Delay(10);
            Assert.Equal(1, scheduler.Stats.Queued);
            using var third = await Http.SendAsync(Long(), HttpCompletionOption.ResponseHeadersRead);   // refused (headers: fails fast if not)
            Assert.Equal((HttpStatusCode)429, third.StatusCode);
            var error = JsonDocument.Parse(await third.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Contains("busy", error.GetProperty("message").GetString());
            first.Dispose(); // the first client leaves: the queued one gets the slot
            using var s = await second;
            Assert.Equal(HttpStatusCode.OK, s.StatusCode);
        }
    }

    [Fact]
    public async Task A_client_that_disconnects_stops_its_generation_and_frees_its_slot()
    {
        var (server, scheduler, owned) = await Start(new BatchSchedulerOptions { Slots = 1, Context = LongContext });
        await using (server)
        using (owned)
        {
            using var cts = new CancellationTokenSource();
            var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server.Address, "/v1/chat/completions"))
            {
                Content = new StringContent("""{"messages":[{"role":"user","content":"Tell me a long story"}],"stream":true,"temperature":0}""", Encoding.UTF8, "application/json"),
            };
            var r = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var stream = await r.Content.ReadAsStreamAsync(cts.Token);
            var buffer = new byte[64];
            Assert.True(await stream.ReadAsync(buffer, cts.Token) > 0); // the stream has started
            // The first event (the role) is written when the request is queued, before the scheduler's loop gives it the
            // slot, so wait (bounded) for the slot to be taken.
            for (int i = 0; i < 500 && scheduler.Stats.Active == 0; i++) await Task.Delay(10);
            Assert.Equal(1, scheduler.Stats.Active);
            cts.Cancel();
            r.Dispose();

            // The scheduler notices at its next step; wait (bounded) until the slot is free.
            for (int i = 0; i < 500 && scheduler.Stats.Active > 0; i++) await Task.Delay(20);
            Assert.Equal(0, scheduler.Stats.Active);
            long generated = scheduler.Stats.TokensGenerated;
            Assert.True(generated < LongContext / 2, $"{generated} tokens were generated for a client that left");
            await Task.Delay(200);
            Assert.Equal(generated, scheduler.Stats.TokensGenerated); // nothing more after it stopped
            var ok = await Http.PostAsync(new Uri(server.Address, "/v1/chat/completions"),
                new StringContent("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
    }
}
