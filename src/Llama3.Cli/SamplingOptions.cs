using System.CommandLine;
using Llama3.Generation;

namespace Llama3.Cli;

/// <summary>The sampling flags shared by <c>generate</c> and <c>chat</c>.</summary>
internal sealed class SamplingOptions
{
    public Option<float> Temperature { get; } = new("--temperature", "--temp") { Description = "Temperature (0: greedy)", DefaultValueFactory = _ => 0.6f };
    public Option<int> TopK { get; } = new("--top-k") { Description = "Keep the k most likely tokens (0: off)" };
    public Option<float> TopP { get; } = new("--top-p") { Description = "Nucleus sampling mass (Meta's sample_top_p)", DefaultValueFactory = _ => 0.9f };
    public Option<float> MinP { get; } = new("--min-p") { Description = "Drop tokens below this fraction of the best one's probability" };
    public Option<float> RepeatPenalty { get; } = new("--repeat-penalty") { Description = "Repetition penalty (1: off)", DefaultValueFactory = _ => 1f };
    public Option<ulong?> Seed { get; } = new("--seed") { Description = "Seed for reproducible sampling" };

    public IEnumerable<Option> All => [Temperature, TopK, TopP, MinP, RepeatPenalty, Seed];

    public SamplerOptions Read(ParseResult p)
    {
        var o = new SamplerOptions
        {
            Temperature = p.GetValue(Temperature),
            TopK = p.GetValue(TopK),
            TopP = p.GetValue(TopP),
            MinP = p.GetValue(MinP),
            RepeatPenalty = p.GetValue(RepeatPenalty),
            Seed = p.GetValue(Seed),
        };
        try { o.Validate(); }
        catch (ArgumentOutOfRangeException e) { throw new Cli.UsageException(e.Message.Split('\n')[0]); }
        return o;
    }
}
