using System.CommandLine;
using System.Globalization;
using System.Text;
using Llama3.Model;

namespace Llama3.Cli;

/// <summary>
/// <c>llama3 perplexity</c>: perplexity over a text, as llama.cpp's <c>llama-perplexity</c> computes it: the tokens are
/// cut into windows of <c>--ctx</c> tokens, each window starts with BOS and is evaluated on its own, and the second
/// half of each window is scored (so every scored token has at least half a window of context).
/// </summary>
internal static class PerplexityCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var ropeFactor = ModelOptions.RopeFactor();
        var cacheType = ModelOptions.CacheType();
        var file = new Option<string>("--file", "-f") { Description = "A UTF-8 text file", Required = true };
        var ctx = new Option<int>("--ctx") { Description = "Window size in tokens", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch") { Description = "Tokens per forward pass", DefaultValueFactory = _ => 512 };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads (0: one per core)" };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cmd = new Command("perplexity", "Perplexity of a model over a text, in windows") { model, ropeFactor, file, ctx, batch, threads, cacheType, json };
        cmd.SetAction(p =>
        {
            string path = p.GetValue(file)!;
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
            int window = p.GetValue(ctx);
            if (window < 4) throw new Cli.UsageException("--ctx must be at least 4");
            using var files = ModelLoader.Open(p, model, ropeFactor);
            var tok = files.Tokenizer ?? throw new Cli.UsageException($"{files.Path} carries no tokenizer");
            ModelLoader.Context(files, window);
            var ids = tok.EncodeToIds(File.ReadAllText(path, new UTF8Encoding(false, false))).ToArray();
            int windows = ids.Length / window;
            if (windows == 0) throw new Cli.UsageException($"{path} has {ids.Length} tokens, fewer than one window of {window}");

            using var transformer = new Transformer(files, p.GetValue(batch), p.GetValue(threads), cacheType: p.GetValue(cacheType));
            int vocab = files.Config.VocabSize, first = window / 2;
            var rows = Enumerable.Range(first, window - first - 1).ToArray(); // position j predicts token j + 1
            var logits = new float[rows.Length * vocab];
            var chunk = new int[window];
            double nll = 0;
            long scored = 0;
            var perWindow = new List<double>();
            for (int w = 0; w < windows; w++)
            {
                Array.Copy(ids, w * window, chunk, 0, window);
                if (tok.BosId is int bos) chunk[0] = bos;
                var cache = transformer.CreateCache(window);
                transformer.Forward(chunk, cache, rows, logits);
                for (int r = 0; r < rows.Length; r++)
                {
                    var l = logits.AsSpan(r * vocab, vocab);
                    nll += LogitsCommand.LogSumExp(l) - l[ids[w * window + rows[r] + 1]];
                    scored++;
                }
                double ppl = Math.Exp(nll / scored);
                perWindow.Add(ppl);
                if (!p.GetValue(json)) Console.Error.Write($"[{w + 1}]{ppl.ToString("F4", CultureInfo.InvariantCulture)} ");
            }
            double final = Math.Exp(nll / scored);
            using var stdout = Cli.OpenStdout();
            if (p.GetValue(json))
                stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(new { perplexity = final, tokens = ids.Length, windows, ctx = window, scored_tokens = scored, running = perWindow }));
            else
            {
                Console.Error.WriteLine();
                stdout.WriteLine($"perplexity: {final.ToString("F4", CultureInfo.InvariantCulture)} over {scored} tokens ({windows} windows of {window})");
            }
            stdout.Flush();
            return 0;
        });
        return cmd;
    }
}
