using System.CommandLine;
using System.Globalization;
using System.Text;
using Llama3.Model;

namespace Llama3.Cli;

/// <summary>
/// <c>llama3 logits</c>: one teacher-forced pass, printing per position the top logits, chosen ids' logits and the
/// logsumexp, in the reference files' JSON shape so anyone can compare with Meta or llama.cpp.
/// </summary>
internal static class LogitsCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var ropeFactor = ModelOptions.RopeFactor();
        var tokens = new Option<string>("--tokens") { Description = "Token ids, e.g. 128000,9906,1917" };
        var tokensFile = new Option<string>("--tokens-file") { Description = "A file of token ids (comma, space or JSON array)" };
        var top = new Option<int>("--top") { Description = "How many top logits per position", DefaultValueFactory = _ => 10 };
        var fixedIds = new Option<string>("--fixed-ids") { Description = "Ids whose logits are printed at every position" };
        var ctx = new Option<int?>("--ctx") { Description = "Context size (default: the number of tokens)" };
        var batch = new Option<int>("--batch") { Description = "Tokens per forward pass", DefaultValueFactory = _ => 512 };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads (0: one per core)" };
        var json = new Option<bool>("--json") { Description = "Print JSON (the only output format)" };
        var cmd = new Command("logits", "Print the logits of a teacher-forced pass over token ids")
            { model, ropeFactor, tokens, tokensFile, top, fixedIds, ctx, batch, threads, json };
        cmd.SetAction(p =>
        {
            Cli.RequireOne(p, tokens, tokensFile);
            if (p.GetValue(batch) <= 0) throw new Cli.UsageException("--batch must be positive");
            if (p.GetValue(top) < 0) throw new Cli.UsageException("--top must not be negative");
            using var files = ModelLoader.Open(p, model, ropeFactor);
            var ids = ModelLoader.ReadIds(p, tokens, tokensFile)!;
            if (ids.Length == 0) throw new Cli.UsageException("no token ids given");
            int vocab = files.Config.VocabSize;
            ModelLoader.CheckIds(ids, vocab);
            int[] fixedList = p.GetValue(fixedIds) is string f ? ModelLoader.ParseIds(f, "--fixed-ids") : [];
            ModelLoader.CheckIds(fixedList, vocab);
            int context = ModelLoader.Context(files, p.GetValue(ctx) ?? ids.Length);
            if (ids.Length > context) throw new Cli.UsageException($"{ids.Length} tokens do not fit in a context of {context}");

            using var transformer = new Transformer(files, p.GetValue(batch), p.GetValue(threads));
            var cache = transformer.CreateCache(context);
            int b = transformer.MaxBatch, k = Math.Min(p.GetValue(top), vocab);
            var logits = new float[b * vocab];
            var rows = Enumerable.Range(0, b).ToArray();
            using var stdout = Cli.OpenStdout();
            stdout.Write("{\"tokens\":[" + string.Join(",", ids) + "],\"fixed_ids\":[" + string.Join(",", fixedList) + "],\"positions\":[");
            var line = new StringBuilder();
            var order = new int[vocab];
            for (int start = 0; start < ids.Length; start += b)
            {
                int n = Math.Min(b, ids.Length - start);
                transformer.Forward(ids.AsSpan(start, n), cache, rows.AsSpan(0, n), logits);
                for (int i = 0; i < n; i++)
                {
                    var l = logits.AsSpan(i * vocab, vocab);
                    line.Clear();
                    if (start + i > 0) line.Append(',');
                    line.Append("\n{\"pos\":").Append(start + i).Append(",\"input_id\":").Append(ids[start + i]).Append(",\"top\":[");
                    TopK(l, k, order);
                    for (int j = 0; j < k; j++) line.Append(j > 0 ? "," : "").Append('[').Append(order[j]).Append(',').Append(F(l[order[j]])).Append(']');
                    line.Append("],\"fixed_logits\":[");
                    for (int j = 0; j < fixedList.Length; j++) line.Append(j > 0 ? "," : "").Append(F(l[fixedList[j]]));
                    line.Append("],\"logsumexp\":").Append(F((float)LogSumExp(l))).Append('}');
                    stdout.Write(line);
                }
            }
            stdout.WriteLine("\n]}");
            stdout.Flush();
            return 0;
        });
        return cmd;
    }

    private static string F(float v) => v.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>The indices of the k largest logits, descending (ties: lower id first).</summary>
    internal static void TopK(ReadOnlySpan<float> l, int k, int[] order)
    {
        // Partial selection: keep a sorted list of the best k.
        int count = 0;
        for (int id = 0; id < l.Length; id++)
        {
            float v = l[id];
            if (count == k && (k == 0 || v <= l[order[k - 1]])) continue;
            int at = count < k ? count++ : k - 1;
            while (at > 0 && l[order[at - 1]] < v) { order[at] = order[at - 1]; at--; }
            order[at] = id;
        }
    }

    internal static double LogSumExp(ReadOnlySpan<float> l)
    {
        float max = float.NegativeInfinity;
        foreach (float v in l) max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in l) sum += Math.Exp(v - max);
        return max + Math.Log(sum);
    }
}
