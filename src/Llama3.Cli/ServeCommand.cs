using System.CommandLine;
using Llama3.AI;
using Llama3.Generation;
using Llama3.Model;
using Llama3.Server;
using Llama3.Tokenization;
using Llama3.Tools;

namespace Llama3.Cli;

/// <summary><c>llama3 serve</c>: the OpenAI-compatible server.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var ropeFactor = ModelOptions.RopeFactor();
        var cacheType = ModelOptions.CacheType();
        var host = new Option<string>("--host") { Description = "Address to listen on (loopback by default; 0.0.0.0 for every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on (0: any free port)", DefaultValueFactory = _ => 8080 };
        var ctx = new Option<int?>("--ctx") { Description = "Context per request: prompt plus answer (default: 4096 or the model's, if smaller)" };
        var parallel = new Option<int>("--parallel", "-np") { Description = "Requests generated at once, each with its own KV cache", DefaultValueFactory = _ => 4 };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait for a free slot before the server answers 429", DefaultValueFactory = _ => 64 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on every request but /health" };
        var alias = new Option<string?>("--alias") { Description = "The model's name in responses (default: the file name)" };
        var toolFormat = new Option<string>("--tool-format") { Description = "How tools are declared and called: json (Llama 3.1, also followed by 3.2) or pythonic (Llama 3.2)", DefaultValueFactory = _ => "json" };
        var batch = new Option<int>("--batch") { Description = "Tokens per forward pass (prompt chunks and decode steps together)", DefaultValueFactory = _ => 512 };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads (0: one per core)" };
        var cmd = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API")
            { model, ropeFactor, host, port, ctx, parallel, queue, apiKey, alias, toolFormat, batch, threads, cacheType };
        cmd.SetAction(async (p, ct) =>
        {
            if (p.GetValue(parallel) < 1) throw new Cli.UsageException("--parallel must be at least 1");
            if (p.GetValue(queue) < 0) throw new Cli.UsageException("--queue must not be negative");
            if (p.GetValue(port) is < 0 or > 65535) throw new Cli.UsageException("--port must be in 0..65535");
            if (p.GetValue(batch) <= 0) throw new Cli.UsageException("--batch must be positive");
            string hostName = p.GetValue(host)!;
            if (hostName != "localhost" && !System.Net.IPAddress.TryParse(hostName, out _))
                throw new Cli.UsageException($"--host must be an IP address (127.0.0.1, 0.0.0.0, ::1) or localhost (got '{hostName}')");
            var format = p.GetValue(toolFormat) switch
            {
                "json" => ToolCallFormat.Json,
                "pythonic" => ToolCallFormat.PythonList,
                var f => throw new Cli.UsageException($"--tool-format must be json or pythonic (got '{f}')"),
            };
            using var files = ModelLoader.Open(p, model, ropeFactor);
            var tok = files.Tokenizer ?? throw new Cli.UsageException($"{files.Path} carries no tokenizer, so it cannot be served");
            if (ChatFormat.TryCreate(tok) is null)
                Console.Error.WriteLine($"llama3: warning: {files.Path} has no Llama 3 chat tokens: /v1/chat/completions will refuse requests; /v1/completions works");
            int context = ModelLoader.Context(files, p.GetValue(ctx));
            using var transformer = new Transformer(files, p.GetValue(batch), p.GetValue(threads), cacheType: p.GetValue(cacheType));
            using var scheduler = new BatchScheduler(transformer, tok, new BatchSchedulerOptions
            {
                Slots = p.GetValue(parallel),
                Context = context,
                MaxQueue = p.GetValue(queue),
            });
            string id = p.GetValue(alias) ?? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(files.Path));
            var engineOptions = new ChatEngineOptions { ModelId = id, ToolFormat = format };
            await using var server = LlamaServer.Create(new ChatEngine(scheduler, engineOptions),
                new ServerOptions { Host = hostName, Port = p.GetValue(port), ApiKey = p.GetValue(apiKey) });
            await server.StartAsync(ct);
            long kv = p.GetValue(parallel) * KvCache.BytesFor(files.Config, context, transformer.CacheType);
            Console.Error.WriteLine($"llama3: serving {id} on {server.Address} ({p.GetValue(parallel)} slots of {context} positions, " +
                                    $"KV cache {transformer.CacheType.ToString().ToLowerInvariant()} up to {kv / (1 << 20)} MiB; Ctrl+C stops)");
            try { await server.WaitForShutdownAsync(ct); }
            catch (OperationCanceledException) { }
            return 0;
        });
        return cmd;
    }
}
