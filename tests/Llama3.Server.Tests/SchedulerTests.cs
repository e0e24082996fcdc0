using Llama3.Generation;

namespace Llama3.Server.Tests;

/// <summary>The continuous-batching scheduler itself, on the tiny real model.</summary>
[Collection("server")]
public sealed class SchedulerTests(ServerFixture fx)
{
    private static GenerationOptions Greedy(int n) => new() { MaxTokens = n, Sampling = SamplerOptions.Greedy };

    [Fact]
    public async Task A_prompt_that_extends_a_slots_tokens_evaluates_only_the_new_part_and_answers_the_same()
    {
        var tok = fx.Files.Tokenizer!;
        var first = tok.EncodeToIds("The first turn of a conversation about the weather", addBos: true);
        var r1 = await fx.Scheduler.GenerateAsync(first, Greedy(8));
        var next = first.Concat(r1.Tokens).Concat(tok.EncodeToIds(" and the second turn")).ToArray();

        long before = fx.Scheduler.Stats.PromptTokens;
        var reused = await fx.Scheduler.GenerateAsync(next, Greedy(8));
        long evaluated = fx.Scheduler.Stats.PromptTokens - before;
        Assert.True(evaluated < next.Length - first.Count + 2, $"{evaluated} of {next.Length} prompt tokens evaluated");
        Assert.Equal(evaluated, reused.Timings.PromptTokens);

        // The same prompt from an empty cache, through the single-caller generator: the same answer.
        var fresh = await new Generator(fx.Model, tok, 256).GenerateAsync(next, Greedy(8));
        Assert.Equal(fresh.Tokens, reused.Tokens);
    }

    [Fact]
    public async Task Bad_input_throws_at_submission_and_nothing_is_queued()
    {
        int queued = fx.Scheduler.Stats.Queued;
        Assert.Throws<PromptTooLongException>(() => fx.Scheduler.Submit(Enumerable.Repeat(1, 300).ToArray(), Greedy(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => fx.Scheduler.Submit([1, 999_999], Greedy(1)));
        Assert.Throws<ArgumentException>(() => fx.Scheduler.Submit([], Greedy(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => fx.Scheduler.Submit([1], Greedy(-1)));
        Assert.Equal(queued, fx.Scheduler.Stats.Queued);
        var ok = await fx.Scheduler.GenerateAsync([1, 2, 3], Greedy(2));
        Assert.Equal(2, ok.Tokens.Count);
    }

    [Fact]
    public async Task Zero_max_tokens_finishes_at_once_with_length()
    {
        var r = await fx.Scheduler.GenerateAsync([1, 2, 3], Greedy(0));
        Assert.Empty(r.Tokens);
        Assert.Equal(FinishReason.Length, r.FinishReason);
    }

    [Fact]
    public async Task Cancelling_a_running_generation_ends_its_stream_with_cancellation_and_frees_the_slot()
    {
        // A scheduler of its own with room for 100,000 tokens, so the generation is still running when it is cancelled.
        using var files = Model.ModelFiles.Open(Llama3.Tests.SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"));
        using var model = new Model.Transformer(files, threads: 1);
        using var scheduler = new BatchScheduler(model, files.Tokenizer!, new BatchSchedulerOptions { Slots = 1, Context = 100_000 });
        using var cts = new CancellationTokenSource();
        var g = scheduler.Submit([1, 2, 3, 4], new GenerationOptions { MaxTokens = 99_000 }, cts.Token);
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in g.ReadAllAsync())
                if (++seen == 3) cts.Cancel();
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => g.Result);
        for (int i = 0; i < 500 && scheduler.Stats.Active > 0; i++) await Task.Delay(10);
        Assert.Equal(0, scheduler.Stats.Active);
        long generated = scheduler.Stats.TokensGenerated;
        Assert.True(generated < 50_000, $"{generated} tokens generated after a cancellation at the third");
        Assert.True(seen <= generated + 1);
        var next = await scheduler.GenerateAsync([1, 2, 3], Greedy(2)); // the slot serves the next request
        Assert.Equal(2, next.Tokens.Count);
    }
}
