using System.Threading.Channels;
using Llama3.Generation;
using Llama3.Model;
using Llama3.Tokenization;

namespace Llama3.Server.Tests;

/// <summary>
/// Stands in for the model: answers each request with the next scripted text, as the tokens the real tokenizer gives
/// it (special-token text such as <c>&lt;|python_tag|&gt;</c> becomes the special token), streamed one token per step,
/// then an end of turn. Records every prompt, so tests can check what the model would have been shown.
/// </summary>
internal sealed class ScriptedScheduler(LlamaTokenizer tokenizer, LlamaConfig config, params string[] answers) : IGenerationScheduler
{
    private readonly Queue<string> _answers = new(answers);
    private long _generated;

    public List<IReadOnlyList<int>> Prompts { get; } = [];

    public List<GenerationOptions> Options { get; } = [];

    public LlamaTokenizer Tokenizer => tokenizer;

    public int Context => 4096;

    public LlamaConfig Config => config;

    public SchedulerStats Stats => new(1, 0, 0, 0, _generated, 0, 0);

    public void Enqueue(string answer)
    {
        lock (_answers) _answers.Enqueue(answer);
    }

    public ScheduledGeneration Submit(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        options.Validate();
        string answer;
        lock (_answers)
        {
            answer = _answers.Count > 0 ? _answers.Dequeue() : throw new InvalidOperationException("the script has no more answers");
            Prompts.Add(prompt.ToArray());
            Options.Add(options);
        }
        var ids = tokenizer.EncodeToIds(answer, specials: SpecialTokenMode.Allow);
        var channel = Channel.CreateUnbounded<GenerationStep>();
        var decoder = tokenizer.CreateStreamingDecoder();
        var generated = new List<int>();
        var text = new System.Text.StringBuilder();
        foreach (int id in ids)
        {
            if (generated.Count == options.MaxTokens) break;
            generated.Add(id);
            string piece = decoder.Append(id);
            text.Append(piece);
            Interlocked.Increment(ref _generated);
            channel.Writer.TryWrite(new GenerationStep(id, piece, null, null));
        }
        var reason = generated.Count < ids.Count ? FinishReason.Length : FinishReason.Stop;
        string rest = decoder.Flush();
        text.Append(rest);
        var timings = new GenerationTimings(prompt.Count, 0, generated.Count, 0);
        channel.Writer.TryWrite(new GenerationStep(-1, rest, null, null, reason, timings));
        channel.Writer.TryComplete();
        var result = new GenerationResult(prompt, generated, text.ToString(), reason, timings);
        return new ScheduledGeneration(channel.Reader, Task.FromResult(result));
    }

    /// <summary>The last prompt as text, special tokens included.</summary>
    public string LastPromptText()
    {
        lock (_answers) return tokenizer.Decode(Prompts[^1]);
    }
}
