using Llama3.Generation;
using Llama3.Model;
using Llama3.Tests.Model;
using Llama3.Tokenization;

namespace Llama3.Tests.Generation;

public sealed class GeneratorTests : IDisposable
{
    private readonly ModelFiles _files = ModelFiles.Open(SharedData.Path("models", "stories260K.gguf"));
    private readonly List<Transformer> _models = [];

    public void Dispose()
    {
        foreach (var m in _models) m.Dispose();
        _files.Dispose();
    }

    private Generator Create(int context = 512, int threads = 0)
    {
        var model = new Transformer(_files, threads: threads);
        _models.Add(model);
        return new(model, _files.Tokenizer!, context);
    }

    private static readonly GenerationOptions Greedy = new() { Sampling = SamplerOptions.Greedy, MaxTokens = 64 };

    [Fact]
    public async Task GreedyGenerationEqualsLlamaCppsOutput()
    {
        // reference/stories260K/once-upon-a-time.json: 64 greedy tokens after BOS + "Once upon a time".
        var reference = LogitsReference.Load("reference", "stories260K", "once-upon-a-time.json");
        var r = await Create().TextCompletionAsync("Once upon a time", Greedy);
        Assert.Equal([1, 403, 407, 261, 378], r.PromptTokens);
        Assert.Equal(reference.GreedyTokens, r.Tokens);
        Assert.Equal(FinishReason.Length, r.FinishReason);
        Assert.Equal("QQQQQQQ9pphe Onceleingenily upon", r.Text[..32]);
        Assert.Equal(_files.Tokenizer!.Decode(r.Tokens), r.Text);
    }

    [Fact]
    public async Task StreamingGivesTheSameTokensAndTextAsOneShot()
    {
        var g = Create();
        var prompt = _files.Tokenizer!.EncodeToIds("Once upon a time", addBos: true);
        var oneShot = await g.GenerateAsync(prompt, Greedy);
        var tokens = new List<int>();
        var text = "";
        GenerationStep? last = null;
        await foreach (var step in g.StreamAsync(prompt, Greedy))
        {
            if (step.Token >= 0) tokens.Add(step.Token);
            text += step.Text;
            last = step;
        }
        Assert.Equal(oneShot.Tokens, tokens);
        Assert.Equal(oneShot.Text, text);
        Assert.Equal(FinishReason.Length, last!.FinishReason);
        Assert.Equal(64, last.Timings!.GeneratedTokens);
    }

    [Fact]
    public async Task SeededSamplingIsReproducibleAcrossRunsAndThreadCounts()
    {
        var options = new GenerationOptions { MaxTokens = 40, Sampling = new SamplerOptions { Temperature = 1.0f, TopP = 0.95f, Seed = 1234 } };
        var prompt = _files.Tokenizer!.EncodeToIds("Once upon a time", addBos: true);
        var a = await Create(threads: 1).GenerateAsync(prompt, options);
        var b = await Create(threads: 2).GenerateAsync(prompt, options);
        var c = await Create(threads: 0).GenerateAsync(prompt, options);
        Assert.Equal(a.Tokens, b.Tokens);
        Assert.Equal(a.Tokens, c.Tokens);
        var other = await Create().GenerateAsync(prompt, options with { Sampling = options.Sampling with { Seed = 99 } });
        Assert.NotEqual(a.Tokens, other.Tokens);
        // Not greedy: sampling at temperature 1 leaves the argmax path.
        var greedy = await Create().GenerateAsync(prompt, options with { Sampling = SamplerOptions.Greedy });
        Assert.NotEqual(greedy.Tokens, a.Tokens);
    }

    [Fact]
    public async Task StopStringsEndGenerationAndAreNotReturned()
    {
        // The greedy text is "QQQQQQQ9pphe Once..."; stop at "9pp".
        var g = Create();
        var r = await g.TextCompletionAsync("Once upon a time", Greedy with { StopStrings = ["9pp"] });
        Assert.Equal(FinishReason.Stop, r.FinishReason);
        Assert.Equal("QQQQQQQ", r.Text);
        // Streaming never shows part of the stop string.
        var streamed = "";
        await foreach (var s in g.StreamAsync(r.PromptTokens, Greedy with { StopStrings = ["9pp"] })) streamed += s.Text;
        Assert.Equal("QQQQQQQ", streamed);
    }

    [Fact]
    public async Task EndOfGenerationTokensStop()
    {
        // Make the first greedy token (473) a stop token: generation stops with no tokens.
        var r = await Create().TextCompletionAsync("Once upon a time", Greedy with { StopTokens = [473] });
        Assert.Equal(FinishReason.Stop, r.FinishReason);
        Assert.Empty(r.Tokens);
        Assert.Equal("", r.Text);
        // 483 comes 8th: seven tokens, then stop.
        var r2 = await Create().TextCompletionAsync("Once upon a time", Greedy with { StopTokens = [483] });
        Assert.Equal(7, r2.Tokens.Count);
    }

    [Fact]
    public async Task ContextLimitEndsWithLengthAndALongPromptIsAnError()
    {
        var g = Create(context: 12);
        var r = await g.TextCompletionAsync("Once upon a time", Greedy);
        Assert.Equal(FinishReason.Length, r.FinishReason);
        Assert.Equal(12 - 5 + 1, r.Tokens.Count); // the last token is sampled from the full cache's logits
        var longPrompt = Enumerable.Repeat(403, 13).ToArray();
        var e = await Assert.ThrowsAsync<PromptTooLongException>(() => g.GenerateAsync(longPrompt, Greedy));
        Assert.Contains("13 tokens", e.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => g.GenerateAsync([], Greedy));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => g.GenerateAsync([9999], Greedy));
    }

    [Fact]
    public async Task CancellationStopsAStream()
    {
        var g = Create();
        using var cts = new CancellationTokenSource();
        int count = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in g.StreamAsync([1, 403], Greedy with { MaxTokens = 200 }, cts.Token))
                if (++count == 5) cts.Cancel();
        });
        Assert.Equal(5, count);
        // The generator is usable again afterwards.
        Assert.Equal(64, (await g.GenerateAsync([1, 403], Greedy)).Tokens.Count);
    }

    [Fact]
    public async Task SeveralPromptsInOneBatchGiveWhatEachGivesAlone()
    {
        var g = Create();
        IReadOnlyList<int>[] prompts = [[1, 403, 407, 261, 378], [1, 300], [1, 42, 43, 44]];
        var batch = await g.GenerateBatchAsync(prompts, Greedy with { MaxTokens = 20 });
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal((await g.GenerateAsync(prompts[i], Greedy with { MaxTokens = 20 })).Tokens, batch[i].Tokens);
    }

    [Fact]
    public async Task ANextTurnReusesTheCachedPrefixAndGivesTheSameTokens()
    {
        var g = Create();
        int[] first = [1, 403, 407, 261, 378];
        var r1 = await g.GenerateAsync(first, Greedy with { MaxTokens = 10 });
        // The next prompt continues the conversation: the old prompt, the answer, and new tokens.
        var second = first.Concat(r1.Tokens).Concat([300, 301]).ToArray();
        var r2 = await g.GenerateAsync(second, Greedy with { MaxTokens = 10 });
        // Only what is not cached is evaluated: the answer's last token (sampled, never run) and the two new ones.
        Assert.Equal(3, r2.Timings.PromptTokens);
        var fresh = await Create().GenerateAsync(second, Greedy with { MaxTokens = 10 });
        Assert.Equal(fresh.Tokens, r2.Tokens);
        Assert.Equal(second.Length, fresh.Timings.PromptTokens);
        // A different prompt shares only BOS: the cache is cut back and the result is still right.
        var r3 = await g.GenerateAsync([1, 42, 43], Greedy with { MaxTokens = 10 });
        Assert.Equal((await Create().GenerateAsync([1, 42, 43], Greedy with { MaxTokens = 10 })).Tokens, r3.Tokens);
        Assert.Equal(2, r3.Timings.PromptTokens);
    }

    [Fact]
    public async Task EchoReturnsThePromptTextToo()
    {
        var r = await Create().TextCompletionAsync("Once upon a time", Greedy with { MaxTokens = 3 }, echo: true);
        Assert.StartsWith("Once upon a time", r.Text); // stories260K's BOS is a control token: it decodes to nothing
        Assert.EndsWith(_files.Tokenizer!.Decode(r.Tokens), r.Text);
    }

    [Fact]
    public async Task ChatCompletionOnALlama3Vocabulary()
    {
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"));
        using var model = new Transformer(files);
        var g = new Generator(model, files.Tokenizer!, 256);
        var r = await g.ChatCompletionAsync([ChatMessage.System("You are helpful."), ChatMessage.User("Hello!")], Greedy with { MaxTokens = 8 });
        Assert.Equal(21, r.PromptTokens.Count); // reference/llamacpp/llama3-chat-prompt.json
        Assert.Equal(8, r.Tokens.Count);
        await Assert.ThrowsAsync<InvalidOperationException>(() => Create().ChatCompletionAsync([ChatMessage.User("x")], Greedy));
    }
}
