using System.ClientModel;
using System.ComponentModel;
using System.Text;
using System.Text.Json;
using Llama3.AI;
using Llama3.Model;
using Llama3.Tests;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using OpenAI;
using OpenAI.Chat;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Llama3.Server.Tests;

/// <summary>
/// Tool calling end to end with scripted model outputs (the tiny model's text is gibberish): the prompts the model
/// is shown, the calls parsed from what it says, and the stock clients running the tool loop over them.
/// </summary>
public sealed class ToolCallingTests : IDisposable
{
    private readonly ModelFiles _files = ModelFiles.Open(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"));

    // Meta's tokenizer.model with the Llama 3.1 names (<|eom_id|>, <|python_tag|>), which tool calling needs; the
    // tiny GGUF carries a Llama 3.0 vocabulary, where those ids are reserved tokens.
    private readonly Tokenization.LlamaTokenizer _tokenizer = Tokenization.LlamaTokenizer.FromFile(SharedData.Path("reference", "tokenizer", "tokenizer.model"));

    public void Dispose() => _files.Dispose();

    private ScriptedScheduler Script(params string[] answers) => new(_tokenizer, _files.Config, answers);

    private static ChatEngine Engine(ScriptedScheduler s) =>
        new(s, new ChatEngineOptions { ModelId = "scripted", TodayDate = new DateOnly(2024, 7, 26) });

    [Description("Gets the current weather in a city")]
    private static string GetWeather([Description("The city")] string city) => city == "Paris" ? "18 C and sunny" : "unknown";

    [Fact]
    public async Task FunctionInvokingChatClient_runs_the_tool_loop_over_LlamaChatClient()
    {
        var script = Script("""{"name": "get_weather", "parameters": {"city": "Paris"}}""", "It is 18 C and sunny in Paris.");
        int calls = 0;
        var tool = AIFunctionFactory.Create((string city) => { calls++; return GetWeather(city); }, "get_weather", "Gets the current weather in a city");
        using IChatClient client = new ChatClientBuilder(new LlamaChatClient(Engine(script))).UseFunctionInvocation().Build();

        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "What is the weather in Paris?")],
            new ChatOptions { Tools = [tool], Temperature = 0 });

        Assert.Equal(1, calls);
        Assert.Equal("It is 18 C and sunny in Paris.", response.Text);
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Paris", call.Arguments!["city"]!.ToString());
        Assert.Equal(2, script.Prompts.Count);

        // What the model saw: the tool declared in Llama 3.1's format, then its own call, then the result as ipython.
        string first = _tokenizer.Decode(script.Prompts[0]);
        Assert.Contains("get_weather", first);
        Assert.Contains("Gets the current weather in a city", first);
        string second = script.LastPromptText();
        Assert.StartsWith(first[..first.LastIndexOf("<|start_header_id|>assistant", StringComparison.Ordinal)], second);
        // Meta's json.dumps of the call, ended with <|eom_id|> as the model ends a JSON call (prompt_format.md).
        Assert.Contains("<|start_header_id|>assistant<|end_header_id|>\n\n" +
                        """{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>""", second);
        Assert.Contains("<|start_header_id|>ipython<|end_header_id|>\n\n18 C and sunny<|eot_id|>", second);
        Assert.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n", second);
    }

    [Fact]
    public async Task Streaming_never_shows_a_tool_call_as_text()
    {
        var script = Script("""<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}""");
        var client = new LlamaChatClient(Engine(script));
        var tool = AIFunctionFactory.Create(GetWeather, "get_weather");
        var text = new StringBuilder();
        var calls = new List<FunctionCallContent>();
        Microsoft.Extensions.AI.ChatFinishReason? finish = null;
        await foreach (var u in client.GetStreamingResponseAsync([new AIChatMessage(ChatRole.User, "Weather in Paris?")], new ChatOptions { Tools = [tool] }))
        {
            text.Append(u.Text);
            calls.AddRange(u.Contents.OfType<FunctionCallContent>());
            finish ??= u.FinishReason;
        }
        Assert.Equal("", text.ToString());
        Assert.Equal("get_weather", Assert.Single(calls).Name);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task Text_that_only_looks_like_a_call_at_first_is_streamed_as_text()
    {
        var script = Script("{ braces are fine } in a normal answer");
        var client = new LlamaChatClient(Engine(script));
        var tool = AIFunctionFactory.Create(GetWeather, "get_weather");
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "hi")], new ChatOptions { Tools = [tool] });
        Assert.Equal("{ braces are fine } in a normal answer", response.Text);
        Assert.Empty(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Stop, response.FinishReason);
    }

    [Fact]
    public async Task ChatOptions_map_to_the_sampler_and_usage_is_reported()
    {
        var script = Script("Hello there");
        var client = new LlamaChatClient(Engine(script));
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "hi")], new ChatOptions
        {
            Temperature = 0.3f, TopP = 0.8f, TopK = 5, MaxOutputTokens = 40, Seed = 11, StopSequences = ["\n\n"],
            FrequencyPenalty = 0.5f, PresencePenalty = 0.25f,
        });
        var o = script.Options.Single();
        Assert.Equal(0.3f, o.Sampling.Temperature);
        Assert.Equal(0.8f, o.Sampling.TopP);
        Assert.Equal(5, o.Sampling.TopK);
        Assert.Equal(40, o.MaxTokens);
        Assert.Equal(11UL, o.Sampling.Seed);
        Assert.Equal(["\n\n"], o.StopStrings);
        Assert.Equal(0.5f, o.Sampling.FrequencyPenalty);
        Assert.Equal(0.25f, o.Sampling.PresencePenalty);
        Assert.Equal(script.Prompts[0].Count, response.Usage!.InputTokenCount);
        Assert.Equal(_tokenizer.EncodeToIds("Hello there").Count, response.Usage.OutputTokenCount);
        Assert.Equal("Hello there", response.Text);
        Assert.Equal("scripted", response.ModelId);
    }

    [Fact]
    public async Task A_required_tool_forces_the_start_of_a_call_into_the_answer()
    {
        // The model is made to continue '{"name": "get_weather", "parameters": ' and says only the arguments.
        var script = Script("""{"city": "Paris"}}""");
        var client = new LlamaChatClient(Engine(script));
        var tool = AIFunctionFactory.Create(GetWeather, "get_weather");
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "hi")],
            new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.RequireSpecific("get_weather") });
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        Assert.Equal("Paris", call.Arguments!["city"]!.ToString());
        Assert.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": ", script.LastPromptText());
    }

    [Fact]
    public async Task Pythonic_calls_of_Llama_3_2_are_parsed_into_several_calls()
    {
        var script = new ScriptedScheduler(_tokenizer, _files.Config, """[get_weather(city="Paris"), get_weather(city='Oslo')]""");
        var engine = new ChatEngine(script, new ChatEngineOptions { ToolFormat = Tools.ToolCallFormat.PythonList, TodayDate = new DateOnly(2024, 7, 26) });
        var client = new LlamaChatClient(engine);
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "hi")],
            new ChatOptions { Tools = [AIFunctionFactory.Create(GetWeather, "get_weather")] });
        var calls = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().ToList();
        Assert.Equal(["Paris", "Oslo"], calls.Select(c => c.Arguments!["city"]!.ToString()));
        Assert.Equal(2, calls.Select(c => c.CallId).Distinct().Count());
    }

    [Fact]
    public async Task A_hosted_web_search_tool_is_Llama_31s_builtin_brave_search()
    {
        var script = Script("""<|python_tag|>brave_search.call(query="weather in Paris")""");
        var client = new LlamaChatClient(Engine(script));
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Search the weather in Paris")],
            new ChatOptions { Tools = [new HostedWebSearchTool()] });
        Assert.StartsWith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nTools: brave_search\n",
            script.LastPromptText());
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        Assert.Equal("brave_search", call.Name);
        Assert.Equal("weather in Paris", call.Arguments!["query"]!.ToString());
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.ToolCalls, response.FinishReason);
    }

    private async Task<(LlamaServer Server, ScriptedScheduler Script)> Serve(params string[] answers)
    {
        var script = Script(answers);
        var server = LlamaServer.Create(Engine(script), new ServerOptions { Port = 0 }, l => l.SetMinimumLevel(LogLevel.None));
        await server.StartAsync();
        return (server, script);
    }

    private static ChatTool WeatherTool() => ChatTool.CreateFunctionTool("get_weather", "Gets the current weather in a city",
        BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string","description":"The city"}},"required":["city"]}"""));

    [Fact]
    public async Task The_OpenAI_client_gets_tool_calls_and_sends_results_back()
    {
        var (server, script) = await Serve("""{"name": "get_weather", "parameters": {"city": "Paris"}}""", "Sunny.");
        await using var _ = server;
        var client = new ChatClient("scripted", new ApiKeyCredential("x"), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "/v1") });
        var options = new ChatCompletionOptions { Tools = { WeatherTool() } };
        List<OpenAI.Chat.ChatMessage> messages = [new UserChatMessage("What is the weather in Paris?")];

        var first = (await client.CompleteChatAsync(messages, options)).Value;
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.StartsWith("call_", call.Id);
        Assert.Equal("Paris", JsonDocument.Parse(call.FunctionArguments).RootElement.GetProperty("city").GetString());
        Assert.Empty(first.Content);

        messages.Add(new AssistantChatMessage(first));
        messages.Add(new ToolChatMessage(call.Id, "18 C and sunny"));
        var second = (await client.CompleteChatAsync(messages, options)).Value;
        Assert.Equal("Sunny.", second.Content.Single().Text);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, second.FinishReason);
        Assert.Contains("<|start_header_id|>ipython<|end_header_id|>\n\n18 C and sunny<|eot_id|>", script.LastPromptText());
        Assert.Contains("\"city\": \"Paris\"", script.LastPromptText());
    }

    [Fact]
    public async Task The_OpenAI_client_streams_tool_call_updates()
    {
        var (server, _) = await Serve("""{"name": "get_weather", "parameters": {"city": "Paris"}}""");
        await using var _s = server;
        var client = new ChatClient("scripted", new ApiKeyCredential("x"), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "/v1") });
        var options = new ChatCompletionOptions { Tools = { WeatherTool() } };
        var name = new StringBuilder();
        var args = new StringBuilder();
        var content = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (var u in client.CompleteChatStreamingAsync([new UserChatMessage("Weather?")], options))
        {
            foreach (var c in u.ContentUpdate) content.Append(c.Text);
            foreach (var t in u.ToolCallUpdates)
            {
                name.Append(t.FunctionName);
                args.Append(t.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= u.FinishReason;
        }
        Assert.Equal("", content.ToString());
        Assert.Equal("get_weather", name.ToString());
        Assert.Equal("Paris", JsonDocument.Parse(args.ToString()).RootElement.GetProperty("city").GetString());
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task Microsoft_Extensions_AI_OpenAI_runs_the_tool_loop_against_the_server()
    {
        var (server, script) = await Serve("""{"name": "get_weather", "parameters": {"city": "Paris"}}""", "It is 18 C.");
        await using var _ = server;
        var openai = new ChatClient("scripted", new ApiKeyCredential("x"), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "/v1") });
        using IChatClient client = new ChatClientBuilder(openai.AsIChatClient()).UseFunctionInvocation().Build();
        int calls = 0;
        var tool = AIFunctionFactory.Create((string city) => { calls++; return GetWeather(city); }, "get_weather", "Gets the current weather in a city");
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Weather in Paris?")], new ChatOptions { Tools = [tool] });
        Assert.Equal(1, calls);
        Assert.Equal("It is 18 C.", response.Text);
        // Microsoft.Extensions.AI.OpenAI sends a tool's result JSON-serialized (a string in quotes); the server passes
        // the tool message's content to the model as it came.
        Assert.Contains("<|start_header_id|>ipython<|end_header_id|>\n\n\"18 C and sunny\"<|eot_id|>", script.LastPromptText());
    }
}

/// <summary>The README's IChatClient example, run on the tiny model (gibberish text, real plumbing).</summary>
public sealed class ReadmeExampleTests
{
    [Fact]
    public async Task The_IChatClient_example_runs_and_reports_usage()
    {
        using var llama = LlamaChatClient.Open(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"), context: 256, slots: 2);
        IChatClient client = new ChatClientBuilder(llama).UseFunctionInvocation().Build();
        var weather = AIFunctionFactory.Create((string city) => $"18 C in {city}", "get_weather", "Gets the weather in a city");
        var response = await client.GetResponseAsync("What is the weather in Paris?",
            new ChatOptions { Tools = [weather], Temperature = 0.6f, MaxOutputTokens = 12, Seed = 1 });
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, response.FinishReason); // a random model does not end its turn in 12 tokens
        Assert.Equal(12, response.Usage!.OutputTokenCount);
        Assert.True(response.Usage.InputTokenCount > 100); // the tool declaration is in the prompt
        Assert.Equal("llama3-tiny-BF16", llama.Metadata.DefaultModelId);
        Assert.Same(llama.Engine, llama.GetService(typeof(ChatEngine)));
    }
}
