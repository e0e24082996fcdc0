using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Llama3.Model;

namespace Llama3.Cli;

/// <summary><c>llama3 info</c>: what a model's files hold.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var ropeFactor = ModelOptions.RopeFactor();
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cmd = new Command("info", "Describe a model: configuration, tensor types, size, tokenizer") { model, ropeFactor, json };
        cmd.SetAction(p =>
        {
            using var files = ModelFiles.Open(p.GetValue(model)!, new ModelLoadOptions { RopeFactor = p.GetValue(ropeFactor) });
            var info = Describe(files);
            using var stdout = Cli.OpenStdout();
            if (p.GetValue(json)) stdout.WriteLine(info.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            else WriteText(info, stdout);
            stdout.Flush();
            return 0;
        });
        return cmd;
    }

    public static JsonObject Describe(ModelFiles files)
    {
        var c = files.Config;
        var types = new JsonObject();
        foreach (var g in files.FileTensors.GroupBy(t => t.Type).OrderBy(g => g.Key, StringComparer.Ordinal))
            types[g.Key] = new JsonObject { ["count"] = g.Count(), ["bytes"] = g.Sum(t => t.Bytes) };
        return new JsonObject
        {
            ["path"] = files.Path,
            ["format"] = files.Format switch { ModelFormat.Gguf => "gguf", ModelFormat.HuggingFace => "hf", _ => "meta" },
            ["architecture"] = c.Architecture,
            ["vocab_size"] = c.VocabSize,
            ["dim"] = c.Dim,
            ["layers"] = c.Layers,
            ["heads"] = c.Heads,
            ["kv_heads"] = c.KvHeads,
            ["head_dim"] = c.HeadDim,
            ["ffn_dim"] = c.FfnDim,
            ["norm_eps"] = c.NormEps,
            ["rope_theta"] = c.RopeTheta,
            ["rope_scaling"] = c.RopeScaling is { } s
                ? new JsonObject
                {
                    ["factor"] = s.Factor,
                    ["low_freq_factor"] = s.LowFreqFactor,
                    ["high_freq_factor"] = s.HighFreqFactor,
                    ["original_context"] = s.OriginalContext,
                }
                : null,
            ["rope_freqs"] = c.HasRopeFreqsTensor,
            ["context_length"] = c.ContextLength,
            ["tied_embeddings"] = c.TiedEmbeddings,
            ["bos_id"] = c.BosId,
            ["eos_ids"] = new JsonArray(c.EosIds.Select(i => (JsonNode)i).ToArray()),
            ["tensor_types"] = types,
            ["tensor_count"] = files.FileTensors.Count,
            ["file_bytes"] = files.FileBytes,
            ["tokenizer"] = files.Tokenizer?.Kind,
            ["tokenizer_vocab_size"] = files.Tokenizer?.VocabularySize,
            ["chat_template"] = c.ChatTemplate is not null,
        };
    }

    private static void WriteText(JsonObject info, TextWriter w)
    {
        foreach (var (key, value) in info)
        {
            switch (value)
            {
                case JsonObject o when key == "tensor_types":
                    w.WriteLine("tensor_types:");
                    foreach (var (t, v) in o)
                        w.WriteLine($"  {t,-6} {v!["count"],5} tensors {Size((long)v["bytes"]!),12}");
                    break;
                case JsonObject o:
                    w.WriteLine($"{key}: {string.Join(", ", o.Select(kv => $"{kv.Key} {kv.Value}"))}");
                    break;
                case null:
                    w.WriteLine($"{key}: none");
                    break;
                default:
                    w.WriteLine(key == "file_bytes" ? $"{key}: {value} ({Size((long)value)})" : $"{key}: {value.ToJsonString().Trim('"')}");
                    break;
            }
        }
    }

    internal static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (double)(1L << 30)).ToString("F2", CultureInfo.InvariantCulture) + " GiB",
        >= 1L << 20 => (bytes / (double)(1L << 20)).ToString("F2", CultureInfo.InvariantCulture) + " MiB",
        >= 1L << 10 => (bytes / (double)(1L << 10)).ToString("F1", CultureInfo.InvariantCulture) + " KiB",
        _ => bytes + " B",
    };
}

/// <summary>Options every command that loads a model shares.</summary>
internal static class ModelOptions
{
    public static Option<string> Model() => new("--model", "-m")
    {
        Description = "A GGUF file, a Hugging Face directory or a Meta directory",
        Required = true,
    };

    public static Option<KvCacheType> CacheType() => new("--cache-type")
    {
        Description = "What the KV cache stores: f32 (exact, the default) or f16 (half the memory and of the reads at depth; llama.cpp's default)",
        DefaultValueFactory = _ => KvCacheType.F32,
    };

    public static Option<double?> RopeFactor() => new("--rope-factor")
    {
        Description = "Llama 3.1 RoPE scaling factor, overriding the files (Meta's params.json cannot say 32 for Llama 3.2)",
    };
}
