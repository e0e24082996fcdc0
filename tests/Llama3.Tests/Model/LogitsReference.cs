using System.Text.Json;
using Llama3.Model;

namespace Llama3.Tests.Model;

/// <summary>A reference logits file (llama.cpp's or Meta's): tokens, and per position the top-10, fixed ids' logits and logsumexp.</summary>
public sealed class LogitsReference
{
    public required int[] Tokens { get; init; }
    public required int[] FixedIds { get; init; }
    public required List<Position> Positions { get; init; }
    public int[]? GreedyPrompt { get; init; }
    public int[]? GreedyTokens { get; init; }

    public sealed record Position(int Pos, int InputId, (int Id, float Logit)[] Top, float[] FixedLogits, float LogSumExp);

    public static LogitsReference Load(params string[] path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path(path)));
        var r = doc.RootElement;
        int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var positions = r.GetProperty("positions").EnumerateArray().Select(p => new Position(
            p.GetProperty("pos").GetInt32(), p.GetProperty("input_id").GetInt32(),
            p.GetProperty("top").EnumerateArray().Select(t => (t[0].GetInt32(), t[1].GetSingle())).ToArray(),
            p.TryGetProperty("fixed_logits", out var f) ? f.EnumerateArray().Select(x => x.GetSingle()).ToArray() : [],
            p.GetProperty("logsumexp").GetSingle())).ToList();
        var tokens = r.GetProperty("tokens");
        return new LogitsReference
        {
            Tokens = tokens.ValueKind == JsonValueKind.Array ? Ints(tokens) : [],
            FixedIds = r.TryGetProperty("fixed_ids", out var fi) && fi.ValueKind == JsonValueKind.Array ? Ints(fi) : [],
            Positions = positions,
            GreedyPrompt = r.TryGetProperty("greedy", out var g) ? Ints(g.GetProperty("prompt")) : null,
            GreedyTokens = r.TryGetProperty("greedy", out var g2) ? Ints(g2.GetProperty("tokens")) : null,
        };
    }

    /// <summary>
    /// Runs the tokens through <paramref name="model"/> in batches of <paramref name="batch"/> tokens (1 = token by token)
    /// and returns the largest absolute difference over every listed logit and logsumexp; top ids must agree wherever the
    /// gap to the next logit exceeds the tolerance.
    /// </summary>
    public double MaxDifference(Transformer model, int batch, double tolerance, out string worst) =>
        MaxDifference(model, batch, tolerance, out worst, out _);

    /// <summary>As <see cref="MaxDifference(Transformer, int, double, out string)"/>, also giving each listed position's largest difference.</summary>
    public double MaxDifference(Transformer model, int batch, double tolerance, out string worst, out double[] perPosition)
    {
        int vocab = model.Config.VocabSize;
        var cache = model.CreateCache(Tokens.Length);
        var wanted = Positions.Select(p => p.Pos).ToHashSet();
        var logits = new float[batch * vocab];
        double max = 0;
        string worstSoFar = "";
        var byPos = Positions.ToDictionary(p => p.Pos);
        var positionMax = new double[Positions.Count];
        var indexOf = Positions.Select((p, i) => (p.Pos, i)).ToDictionary(x => x.Pos, x => x.i);
        for (int start = 0; start < Tokens.Length; start += batch)
        {
            int n = Math.Min(batch, Tokens.Length - start);
            var rows = Enumerable.Range(0, n).Where(i => wanted.Contains(start + i)).ToArray();
            model.Forward(Tokens.AsSpan(start, n), cache, rows, logits);
            for (int k = 0; k < rows.Length; k++)
            {
                var p = byPos[start + rows[k]];
                var l = logits.AsSpan(k * vocab, vocab);
                if (p.InputId != Tokens[p.Pos]) throw new InvalidDataException($"reference input id mismatch at {p.Pos}");
                void Diff(string what, double ours, double theirs)
                {
                    double d = Math.Abs(ours - theirs);
                    positionMax[indexOf[p.Pos]] = Math.Max(positionMax[indexOf[p.Pos]], d);
                    if (d > max) { max = d; worstSoFar = $"{what} at position {p.Pos}: ours {ours}, reference {theirs}"; }
                }
                foreach (var (id, logit) in p.Top) Diff($"logit of {id}", l[id], logit);
                for (int i = 0; i < p.FixedLogits.Length; i++) Diff($"fixed logit of {FixedIds[i]}", l[FixedIds[i]], p.FixedLogits[i]);
                Diff("logsumexp", LogSumExp(l), p.LogSumExp);
                // Our top-1 must be the reference's unless the reference's top two are within the tolerance.
                int ourTop = ArgMax(l);
                if (ourTop != p.Top[0].Id && p.Top[0].Logit - p.Top[1].Logit > tolerance)
                    throw new Xunit.Sdk.XunitException($"top-1 at position {p.Pos}: ours {ourTop}, reference {p.Top[0].Id}");
            }
        }
        worst = worstSoFar;
        perPosition = positionMax;
        return max;
    }

    public static double LogSumExp(ReadOnlySpan<float> l)
    {
        double m = double.NegativeInfinity;
        foreach (float v in l) m = Math.Max(m, v);
        double s = 0;
        foreach (float v in l) s += Math.Exp(v - m);
        return m + Math.Log(s);
    }

    public static int ArgMax(ReadOnlySpan<float> l)
    {
        int best = 0;
        for (int i = 1; i < l.Length; i++) if (l[i] > l[best]) best = i; // ties: the lowest id, as the references
        return best;
    }
}
