#pragma warning disable OPENAI001 // Seed is marked experimental in the OpenAI client
using System.ClientModel;
using System.Text;
using Llama3.Generation;
using Llama3.Tokenization;
using OpenAI;
using OpenAI.Chat;
using ChatMessage = OpenAI.Chat.ChatMessage;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using Microsoft.Extensions.AI; // AsIChatClient

namespace Llama3.Server.Tests;

/// <summary>The official OpenAI .NET client against our server on a loopback port, over the tiny real model.</summary>
[Collection("server")]
public sealed class OpenAIClientTests(ServerFixture fx)
{
    private ChatClient Client() => new(ServerFixture.ModelId, new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = fx.V1 });

    private static readonly ChatMessage[] Dialog = [new SystemChatMessage("Be brief."), new UserChatMessage("Why is the sky blue?")];

    private IReadOnlyList<int> DialogPrompt() => Tokenization.ChatFormat.TryCreate(fx.Files.Tokenizer!)!.EncodeDialogPrompt(
        [Tokenization.ChatMessage.System("Be brief."), Tokenization.ChatMessage.User("Why is the sky blue?")]);

    [Fact]
    public async Task Greedy_completion_is_the_engines_greedy_answer_with_exact_usage()
    {
        var completion = (await Client().CompleteChatAsync(Dialog, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 })).Value;

        // The same prompt through the library's own generator, greedy: the server must add nothing and lose nothing.
        var prompt = DialogPrompt();
        var expected = await new Generator(fx.Model, fx.Files.Tokenizer!, 256)
            .GenerateAsync(prompt, new GenerationOptions { MaxTokens = 12, Sampling = SamplerOptions.Greedy });
        Assert.Equal(expected.Text, completion.Content.Single().Text);
        Assert.Equal(prompt.Count, completion.Usage.InputTokenCount);
        Assert.Equal(expected.Tokens.Count, completion.Usage.OutputTokenCount);
        Assert.Equal(prompt.Count + expected.Tokens.Count, completion.Usage.TotalTokenCount);
        Assert.Equal(expected.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(ServerFixture.ModelId, completion.Model);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
    }

    [Fact]
    public async Task Max_tokens_ends_with_length_after_exactly_that_many_tokens()
    {
        // The greedy answer of this model to this dialog is longer than 5 tokens (the 12-token test above shows it).
        var completion = (await Client().CompleteChatAsync(Dialog, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 })).Value;
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(5, completion.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task Streaming_deltas_add_up_to_the_non_streamed_answer_and_report_usage()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 };
        var whole = (await Client().CompleteChatAsync(Dialog, options)).Value;
        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (var u in Client().CompleteChatStreamingAsync(Dialog, options))
        {
            updates++;
            foreach (var part in u.ContentUpdate) text.Append(part.Text);
            usage ??= u.Usage;
            finish ??= u.FinishReason;
        }
        Assert.Equal(whole.Content.Single().Text, text.ToString());
        Assert.True(updates >= 3, $"only {updates} updates: the answer was not streamed");
        Assert.NotNull(usage); // the client asks for stream_options.include_usage
        Assert.Equal(whole.Usage.InputTokenCount, usage!.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(whole.FinishReason, finish);
    }

    [Fact]
    public async Task A_seed_makes_sampling_repeatable_and_another_seed_changes_it()
    {
        async Task<string> Sample(long seed) => (await Client().CompleteChatAsync(Dialog,
            new ChatCompletionOptions { Temperature = 1.5f, TopP = 1, MaxOutputTokenCount = 24, Seed = seed })).Value.Content.Single().Text;
        string a = await Sample(7), b = await Sample(7);
        Assert.Equal(a, b);
        var others = new[] { await Sample(8), await Sample(9), await Sample(10) };
        Assert.Contains(others, o => o != a); // 24 tokens at temperature 1.5 over 128K ids: equal by chance is impossible in practice
    }

    [Fact]
    public async Task Stop_sequences_end_the_answer_before_them()
    {
        var free = (await Client().CompleteChatAsync(Dialog, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 })).Value.Content.Single().Text;
        Assert.True(free.Length >= 8, $"the answer '{free}' is too short to cut");
        string stop = free.Substring(free.Length / 2, 3);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 };
        options.StopSequences.Add(stop);
        var cut = (await Client().CompleteChatAsync(Dialog, options)).Value;
        Assert.Equal(free[..free.IndexOf(stop, StringComparison.Ordinal)], cut.Content.Single().Text);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
    }

    [Fact]
    public async Task Logprobs_come_back_for_every_token_with_the_asked_number_of_alternatives()
    {
        var completion = (await Client().CompleteChatAsync(Dialog, new ChatCompletionOptions
        {
            Temperature = 0, MaxOutputTokenCount = 6, IncludeLogProbabilities = true, TopLogProbabilityCount = 3,
        })).Value;
        var lp = completion.ContentTokenLogProbabilities;
        Assert.Equal(completion.Usage.OutputTokenCount, lp.Count);
        foreach (var t in lp)
        {
            Assert.Equal(3, t.TopLogProbabilities.Count);
            Assert.True(t.LogProbability <= 0);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(t.TopLogProbabilities[0].LogProbability, t.LogProbability, 1e-5f);
            Assert.True(t.TopLogProbabilities[0].LogProbability >= t.TopLogProbabilities[1].LogProbability);
        }
        Assert.Equal(completion.Content.Single().Text, string.Concat(lp.Select(t => Encoding.UTF8.GetString(t.Utf8Bytes!.Value.Span))));
    }

    [Fact]
    public async Task Four_concurrent_streams_each_get_what_they_would_get_alone()
    {
        var prompts = new[] { "one", "two two", "three three three", "four" };
        // 64 tokens each: long enough (at the tiny model's speed) that the four requests overlap whatever their start jitter.
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 64 };
        var alone = new List<string>();
        foreach (var p in prompts) alone.Add((await Client().CompleteChatAsync([new UserChatMessage(p)], options)).Value.Content.Single().Text);

        async Task<string> Stream(string p)
        {
            var sb = new StringBuilder();
            await foreach (var u in Client().CompleteChatStreamingAsync([new UserChatMessage(p)], options))
                foreach (var part in u.ContentUpdate) sb.Append(part.Text);
            return sb.ToString();
        }
        long passesBefore = fx.Scheduler.Stats.Passes;
        var together = await Task.WhenAll(prompts.Select(Stream));
        long passes = fx.Scheduler.Stats.Passes - passesBefore;
        Assert.Equal(alone, together);
        // Batched: far fewer passes than the 4 x (prefill + up to 64 decode steps) = 260 the requests would need one by one
        // (other tests of this collection run one at a time, so these passes are ours).
        Assert.True(passes < 200, $"{passes} passes for 4 concurrent requests: the decode steps were not batched");
    }

    [Fact]
    public async Task Microsoft_Extensions_AI_over_the_OpenAI_client_gets_the_same_answer()
    {
        Microsoft.Extensions.AI.IChatClient client = Client().AsIChatClient();
        var response = await client.GetResponseAsync(
            [new(Microsoft.Extensions.AI.ChatRole.System, "Be brief."), new(Microsoft.Extensions.AI.ChatRole.User, "Why is the sky blue?")],
            new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, MaxOutputTokens = 12 });
        var direct = (await Client().CompleteChatAsync(Dialog, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 })).Value;
        Assert.Equal(direct.Content.Single().Text, response.Text);
        Assert.Equal(direct.Usage.InputTokenCount, response.Usage!.InputTokenCount);
        Assert.Equal(direct.Usage.OutputTokenCount, response.Usage.OutputTokenCount);
    }
}
