// Load test for `llama3 serve`: N clients stream chat completions with the official OpenAI client for a while,
// then the totals are reported. Run through bench/load-test, which starts the server and measures its memory.
using System.ClientModel;
using System.Diagnostics;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;

string url = "http://127.0.0.1:8080/v1";
int clients = 32, maxTokens = 64;
double seconds = 180;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--url": url = args[++i]; break;
        case "--clients": clients = int.Parse(args[++i]); break;
        case "--seconds": seconds = double.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
        case "--max-tokens": maxTokens = int.Parse(args[++i]); break;
        default:
            Console.Error.WriteLine("usage: Llama3.LoadTest [--url http://127.0.0.1:8080/v1] [--clients 32] [--seconds 180] [--max-tokens 64]");
            return 2;
    }
}

var client = new ChatClient("any", new ApiKeyCredential(Environment.GetEnvironmentVariable("LLAMA3_API_KEY") ?? "none"),
    new OpenAIClientOptions { Endpoint = new Uri(url), NetworkTimeout = TimeSpan.FromMinutes(10) });
string[] topics = ["the sea", "a robot", "bread", "winter", "a city at night", "an old map", "the moon", "a small dog"];
long tokens = 0, requests = 0, errors = 0, busy = 0;
var firstTokenMs = new List<double>();
var errorKinds = new Dictionary<string, int>();
var stop = Stopwatch.StartNew();
var deadline = TimeSpan.FromSeconds(seconds);

async Task Client(int id)
{
    var rng = new Random(id);
    while (stop.Elapsed < deadline)
    {
        var messages = new ChatMessage[] { new UserChatMessage($"Write a few sentences about {topics[rng.Next(topics.Length)]}.") };
        var options = new ChatCompletionOptions { MaxOutputTokenCount = maxTokens, Temperature = 0.8f };
        var t0 = Stopwatch.GetTimestamp();
        bool first = true;
        try
        {
            await foreach (var u in client.CompleteChatStreamingAsync(messages, options))
            {
                if (first && u.ContentUpdate.Any(c => !string.IsNullOrEmpty(c.Text)))
                {
                    first = false;
                    lock (firstTokenMs) firstTokenMs.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
                if (u.Usage is { } usage) Interlocked.Add(ref tokens, usage.OutputTokenCount);
            }
            Interlocked.Increment(ref requests);
        }
        catch (ClientResultException e) when (e.Status == 429)
        {
            Interlocked.Increment(ref busy); // the queue was full: back off a little, as a client should
            await Task.Delay(200);
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref errors);
            lock (errorKinds) errorKinds[e.GetType().Name + ": " + e.Message.Split('\n')[0]] = errorKinds.GetValueOrDefault(e.GetType().Name + ": " + e.Message.Split('\n')[0]) + 1;
        }
    }
}

await Task.WhenAll(Enumerable.Range(0, clients).Select(i => Task.Run(() => Client(i))));
double elapsed = stop.Elapsed.TotalSeconds;
firstTokenMs.Sort();
double P(double q) => firstTokenMs.Count == 0 ? 0 : firstTokenMs[(int)Math.Min(firstTokenMs.Count - 1, q * firstTokenMs.Count)];
var report = new
{
    clients,
    seconds = Math.Round(elapsed, 1),
    requests,
    errors,
    busy_429 = busy,
    completion_tokens = tokens,
    tokens_per_second = Math.Round(tokens / elapsed, 2),
    first_token_ms_p50 = Math.Round(P(0.5)),
    first_token_ms_p95 = Math.Round(P(0.95)),
    error_kinds = errorKinds,
};
Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
return errors == 0 ? 0 : 1;
