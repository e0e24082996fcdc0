using System.CommandLine;
using Llama3.Generation;
using Llama3.Model;
using Llama3.Tokenization;

namespace Llama3.Cli;

/// <summary>
/// <c>llama3 chat</c>: a conversation in the Llama 3 chat format with history. Interactive by default (one message per
/// line; an empty line or end of input quits); <c>-p</c> asks one question and exits. Ctrl+C stops the current answer,
/// not the program.
/// </summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var ropeFactor = ModelOptions.RopeFactor();
        var cacheType = ModelOptions.CacheType();
        var system = new Option<string>("--system") { Description = "A system message" };
        var prompt = new Option<string>("--prompt", "-p") { Description = "One message: answer it and exit" };
        var n = new Option<int>("--max-tokens", "-n") { Description = "Most tokens per answer", DefaultValueFactory = _ => 512 };
        var ctx = new Option<int?>("--ctx") { Description = "Context size (default: 4096 or the model's, if smaller)" };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads (0: one per core)" };
        var sampling = new SamplingOptions();
        var cmd = new Command("chat", "Chat with a model in the Llama 3 chat format") { model, ropeFactor, system, prompt, n, ctx, threads, cacheType };
        foreach (var o in sampling.All) cmd.Options.Add(o);
        cmd.SetAction(async (p, ct) =>
        {
            var sampler = sampling.Read(p);
            using var files = ModelLoader.Open(p, model, ropeFactor);
            var tok = files.Tokenizer ?? throw new Cli.UsageException($"{files.Path} carries no tokenizer");
            if (tok.GetSpecialTokenId("<|start_header_id|>") is null)
                throw new Cli.UsageException($"{files.Path}: the vocabulary has no Llama 3 chat tokens (<|start_header_id|>), so it cannot chat");
            int context = ModelLoader.Context(files, p.GetValue(ctx));
            using var transformer = new Transformer(files, threads: p.GetValue(threads), cacheType: p.GetValue(cacheType));
            var generator = new Generator(transformer, tok, context);
            var options = new GenerationOptions { MaxTokens = p.GetValue(n), Sampling = sampler };
            var dialog = new List<ChatMessage>();
            if (p.GetValue(system) is string s) dialog.Add(ChatMessage.System(s));

            using var stdout = Cli.OpenStdout();
            bool interactive = p.GetValue(prompt) is null;
            CancellationTokenSource? answering = null;
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                // Ctrl+C during an answer stops the answer; at the prompt it ends the program as usual.
                if (answering is { } a) { e.Cancel = true; a.Cancel(); }
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                while (true)
                {
                    string? message = p.GetValue(prompt);
                    if (interactive)
                    {
                        if (!Console.IsInputRedirected) { stdout.Write("> "); stdout.Flush(); }
                        message = Console.ReadLine();
                        if (string.IsNullOrWhiteSpace(message)) break;
                    }
                    dialog.Add(ChatMessage.User(message!));
                    var promptIds = generator.ChatFormat!.EncodeDialogPrompt(dialog);
                    if (promptIds.Count > context)
                        throw new Cli.UsageException($"the conversation has {promptIds.Count} tokens, more than the context of {context} (use --ctx)");
                    answering = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    var answer = new System.Text.StringBuilder();
                    try
                    {
                        await foreach (var step in generator.StreamAsync(promptIds, options, answering.Token))
                        {
                            answer.Append(step.Text);
                            stdout.Write(step.Text);
                            stdout.Flush();
                        }
                    }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                    {
                        stdout.Write(" [stopped]");
                    }
                    finally
                    {
                        answering.Dispose();
                        answering = null;
                    }
                    stdout.WriteLine();
                    stdout.Flush();
                    dialog.Add(ChatMessage.Assistant(answer.ToString()));
                    if (!interactive) break;
                }
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
            return 0;
        });
        return cmd;
    }
}
