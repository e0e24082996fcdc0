using Llama3.AI;
using Llama3.Generation;
using Llama3.Model;
using Llama3.Tests;
using Microsoft.Extensions.Logging;

namespace Llama3.Server.Tests;

/// <summary>
/// The real engine behind a real server on a loopback port: the tiny Llama 3 model (Llama 3 vocabulary and chat
/// template, random weights), 4 slots of 256 positions. Its text is gibberish, so tests assert protocol, counts, stop
/// reasons and determinism.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string ModelId = "llama3-tiny";

    public ModelFiles Files { get; private set; } = null!;
    public Transformer Model { get; private set; } = null!;
    public BatchScheduler Scheduler { get; private set; } = null!;
    public ChatEngine Engine { get; private set; } = null!;
    public LlamaServer Server { get; private set; } = null!;
    public Uri BaseAddress => Server.Address;
    public Uri V1 => new(Server.Address, "/v1");

    public async Task InitializeAsync()
    {
        Files = ModelFiles.Open(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"));
        Model = new Transformer(Files, threads: 1);
        Scheduler = new BatchScheduler(Model, Files.Tokenizer!, new BatchSchedulerOptions { Slots = 4, Context = 256, MaxQueue = 64 });
        Engine = new ChatEngine(Scheduler, new ChatEngineOptions { ModelId = ModelId, TodayDate = new DateOnly(2024, 7, 26) });
        Server = LlamaServer.Create(Engine, new ServerOptions { Port = 0 }, l => l.SetMinimumLevel(LogLevel.Warning));
        await Server.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Scheduler.Dispose();
        Model.Dispose();
        Files.Dispose();
    }
}

[CollectionDefinition("server")]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>;
