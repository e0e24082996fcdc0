using System.CommandLine;
using System.Text.Json;
using Llama3.Generation;
using Llama3.Model;

namespace Llama3.Cli;

/// <summary><c>llama3 generate</c>: continue a raw prompt, streaming the text.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var ropeFactor = ModelOptions.RopeFactor();
        var cacheType = ModelOptions.CacheType();
        var prompt = new Option<string>("--prompt", "-p") { Description = "The prompt text (BOS is added when the model's files say add_bos)" };
        var tokens = new Option<string>("--tokens") { Description = "The prompt as token ids" };
        var tokensFile = new Option<string>("--tokens-file") { Description = "A file of prompt token ids" };
        var n = new Option<int>("--max-tokens", "-n") { Description = "Most tokens to generate", DefaultValueFactory = _ => 128 };
        var ctx = new Option<int?>("--ctx") { Description = "Context size (default: 4096 or the model's, if smaller)" };
        var batch = new Option<int>("--batch") { Description = "Prompt tokens per forward pass", DefaultValueFactory = _ => 512 };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads (0: one per core)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of streaming text" };
        var sampling = new SamplingOptions();
        var cmd = new Command("generate", "Generate text from a prompt") { model, ropeFactor, prompt, tokens, tokensFile, n, ctx, batch, threads, cacheType, json };
        foreach (var o in sampling.All) cmd.Options.Add(o);
        cmd.SetAction(async (p, ct) =>
        {
            Cli.RequireOne(p, prompt, tokens, tokensFile);
            if (p.GetValue(n) < 0) throw new Cli.UsageException("--max-tokens must not be negative");
            if (p.GetValue(batch) <= 0) throw new Cli.UsageException("--batch must be positive");
            var sampler = sampling.Read(p);
            using var files = ModelLoader.Open(p, model, ropeFactor);
            var tok = files.Tokenizer ?? throw new Cli.UsageException($"{files.Path} carries no tokenizer; give the prompt with --tokens");
            int[] ids = ModelLoader.ReadIds(p, tokens, tokensFile)
                ?? tok.EncodeToIds(p.GetValue(prompt)!, addBos: tok.AddBos && tok.BosId is not null).ToArray();
            if (ids.Length == 0) throw new Cli.UsageException("the prompt has no tokens");
            ModelLoader.CheckIds(ids, files.Config.VocabSize);
            int context = ModelLoader.Context(files, p.GetValue(ctx));
            if (ids.Length > context) throw new Cli.UsageException($"the prompt has {ids.Length} tokens, more than the context of {context} (use --ctx)");

            using var transformer = new Transformer(files, p.GetValue(batch), p.GetValue(threads), cacheType: p.GetValue(cacheType));
            var generator = new Generator(transformer, tok, context);
            var options = new GenerationOptions { MaxTokens = p.GetValue(n), Sampling = sampler };
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
            using var stdout = Cli.OpenStdout();
            var generated = new List<int>();
            var text = new System.Text.StringBuilder();
            GenerationStep? last = null;
            try
            {
                await foreach (var step in generator.StreamAsync(ids, options, cancel.Token))
                {
                    if (step.Token >= 0) generated.Add(step.Token);
                    text.Append(step.Text);
                    if (!p.GetValue(json)) { stdout.Write(step.Text); stdout.Flush(); }
                    last = step;
                }
            }
            catch (OperationCanceledException) { }
            var timings = last?.Timings;
            if (p.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(new
                {
                    prompt_tokens = ids,
                    tokens = generated,
                    text = text.ToString(),
                    finish_reason = last?.FinishReason == FinishReason.Stop ? "stop" : "length",
                    timings = timings is null ? null : new
                    {
                        prompt_tokens = timings.PromptTokens,
                        prompt_seconds = timings.PromptSeconds,
                        prompt_tokens_per_second = timings.PromptTokensPerSecond,
                        generated_tokens = timings.GeneratedTokens,
                        generate_seconds = timings.GenerateSeconds,
                        generate_tokens_per_second = timings.GenerateTokensPerSecond,
                    },
                }));
            }
            else
            {
                stdout.WriteLine();
                stdout.Flush();
                if (timings is not null && !Console.IsErrorRedirected)
                    Console.Error.WriteLine($"prompt: {timings.PromptTokens} tokens, {timings.PromptTokensPerSecond:F1} t/s; " +
                        $"generated: {timings.GeneratedTokens} tokens, {timings.GenerateTokensPerSecond:F1} t/s");
            }
            stdout.Flush();
            return 0;
        });
        return cmd;
    }
}
