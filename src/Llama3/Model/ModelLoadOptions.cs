namespace Llama3.Model;

/// <summary>Options for opening a model.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>
    /// Overrides the Llama 3.1 RoPE scaling factor the files imply (the CLI's <c>--rope-factor</c>). Meta's params.json
    /// only says <c>use_scaled_rope</c>; see <see cref="ModelFiles"/> for the rule used without this option.
    /// </summary>
    public double? RopeFactor { get; init; }
}
