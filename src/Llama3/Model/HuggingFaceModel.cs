using System.Text.Json;
using Llama3.Formats;
using Llama3.Formats.Safetensors;
using Llama3.Kernels.Quant;
using Llama3.Tokenization;

namespace Llama3.Model;

/// <summary>
/// Reads a Hugging Face <c>LlamaForCausalLM</c> directory: config.json, generation_config.json, one
/// model.safetensors or shards listed in model.safetensors.index.json, and the tokenizer files.
/// </summary>
internal static unsafe class HuggingFaceModel
{
    public static ModelFiles Open(string dir, ModelLoadOptions options)
    {
        string configPath = Path.Combine(dir, "config.json");
        using var cfgDoc = ParseJson(configPath);
        var cfg = cfgDoc.RootElement;
        if (cfg.ValueKind != JsonValueKind.Object) throw new ModelFormatException(configPath, "not a JSON object");
        var archs = cfg.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array
            ? a.EnumerateArray().Select(x => x.GetString()).ToList() : [];
        string modelType = Str(cfg, "model_type", configPath) ?? "";
        if (!archs.Contains("LlamaForCausalLM") && modelType != "llama")
            throw new ModelFormatException(configPath, $"architecture {(archs.Count > 0 ? string.Join(", ", archs) : modelType)} is not LlamaForCausalLM");

        var files = new List<SafetensorsFile>();
        var owned = new List<IDisposable>();
        try
        {
            string index = Path.Combine(dir, "model.safetensors.index.json");
            string single = Path.Combine(dir, "model.safetensors");
            var where = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            if (File.Exists(index))
            {
                using var idx = ParseJson(index);
                if (!idx.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                    throw new ModelFormatException(index, "weight_map is missing");
                var opened = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
                foreach (var p in map.EnumerateObject())
                {
                    string shard = p.Value.GetString() ?? throw new ModelFormatException(index, $"weight_map['{p.Name}'] is not a file name");
                    if (shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                        throw new ModelFormatException(index, $"weight_map['{p.Name}'] = '{shard}' is not a file in the directory");
                    if (!opened.TryGetValue(shard, out var sf))
                    {
                        sf = SafetensorsFile.Open(Path.Combine(dir, shard));
                        opened[shard] = sf;
                        files.Add(sf);
                        owned.Add(sf);
                    }
                    if (sf.Find(p.Name) is null)
                        throw new ModelFormatException(sf.FilePath, $"tensor '{p.Name}' listed in model.safetensors.index.json is not in the file");
                    where[p.Name] = sf;
                }
            }
            else if (File.Exists(single))
            {
                var sf = SafetensorsFile.Open(single);
                files.Add(sf);
                owned.Add(sf);
                foreach (var t in sf.Tensors) where[t.Name] = sf;
            }
            else throw new FileNotFoundException($"{dir}: no model.safetensors or model.safetensors.index.json", dir);

            var tensors = new List<WeightTensor>();
            foreach (var (name, sf) in where)
            {
                string? meta = TensorNames.FromHuggingFace(name);
                if (meta is null) continue;
                var t = sf.Find(name)!;
                var type = t.DType switch
                {
                    "BF16" => GgmlType.BF16,
                    "F16" => GgmlType.F16,
                    "F32" => GgmlType.F32,
                    _ => throw new ModelFormatException(sf.FilePath, $"tensor '{name}' has dtype {t.DType}; only BF16, F16 and F32 are supported"),
                };
                tensors.Add(new WeightTensor(meta, name, type, t.Shape, sf.GetPointer(t), t.ByteSize));
            }
            var byName = tensors.ToDictionary(t => t.Name);

            LlamaTokenizer? tokenizer = File.Exists(Path.Combine(dir, "tokenizer.json")) || File.Exists(Path.Combine(dir, "tokenizer.model"))
                ? LlamaTokenizer.FromFile(dir) : null;
            var config = BuildConfig(cfg, configPath, Path.Combine(dir, "generation_config.json"), byName, tokenizer, options);
            TensorNames.CheckComplete(dir, config, byName);
            var fileTensors = files.SelectMany(f => f.Tensors.Select(t => new FileTensorInfo(t.Name, t.DType, t.ByteSize))).ToList();
            long bytes = files.Sum(f => f.FileLength);
            return new ModelFiles(dir, ModelFormat.HuggingFace, config, tokenizer, tensors, QkLayout.RotateHalf, bytes, fileTensors, owned);
        }
        catch
        {
            foreach (var d in owned) d.Dispose();
            throw;
        }
    }

    private static LlamaConfig BuildConfig(JsonElement cfg, string path, string generationPath,
        Dictionary<string, WeightTensor> tensors, LlamaTokenizer? tokenizer, ModelLoadOptions options)
    {
        int Req(string key) => Int(cfg, key, path) ?? throw new ModelFormatException(path, $"{key} is missing");
        int dim = Req("hidden_size");
        int heads = Req("num_attention_heads");
        RopeScaling? scaling = null;
        if (cfg.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object)
        {
            string type = Str(rs, "rope_type", path) ?? Str(rs, "type", path) ?? "";
            if (type != "llama3")
                throw new ModelFormatException(path, $"rope_scaling type '{type}' is not supported (only llama3)");
            scaling = new RopeScaling(Num(rs, "factor", path) ?? throw new ModelFormatException(path, "rope_scaling.factor is missing"),
                Num(rs, "low_freq_factor", path) ?? 1, Num(rs, "high_freq_factor", path) ?? 4,
                Int(rs, "original_max_position_embeddings", path) ?? 8192);
        }
        if (options.RopeFactor is double f) scaling = (scaling ?? RopeScaling.Llama31()) with { Factor = f };

        var eos = new List<int>();
        AddIds(cfg, "eos_token_id", eos, path);
        if (File.Exists(generationPath))
        {
            using var gen = ParseJson(generationPath);
            AddIds(gen.RootElement, "eos_token_id", eos, generationPath);
        }
        foreach (int id in tokenizer?.EndOfGenerationIds ?? []) if (!eos.Contains(id)) eos.Add(id);

        bool tied = cfg.TryGetProperty("tie_word_embeddings", out var tw) && tw.ValueKind == JsonValueKind.True;
        if (!tied && !tensors.ContainsKey("output.weight"))
            throw new ModelFormatException(path, "tie_word_embeddings is false but there is no lm_head.weight");
        if (tied) tensors.Remove("output.weight");
        return new LlamaConfig
        {
            VocabSize = Req("vocab_size"),
            Dim = dim,
            Layers = Req("num_hidden_layers"),
            Heads = heads,
            KvHeads = Int(cfg, "num_key_value_heads", path) ?? heads,
            HeadDim = Int(cfg, "head_dim", path) ?? (heads > 0 ? dim / heads : 0),
            FfnDim = Req("intermediate_size"),
            NormEps = Num(cfg, "rms_norm_eps", path) ?? 1e-5,
            RopeTheta = Num(cfg, "rope_theta", path) ?? 10000,
            RopeScaling = scaling,
            ContextLength = Int(cfg, "max_position_embeddings", path) ?? 8192,
            TiedEmbeddings = tied,
            BosId = Int(cfg, "bos_token_id", path) ?? tokenizer?.BosId,
            EosIds = eos,
            ChatTemplate = (tokenizer as Llama3Tokenizer)?.ChatTemplate,
        }.Validate(path);
    }

    private static void AddIds(JsonElement e, string key, List<int> into, string path)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return;
        IEnumerable<JsonElement> items = v.ValueKind == JsonValueKind.Array ? v.EnumerateArray() : [v];
        foreach (var x in items)
        {
            if (!x.TryGetInt32(out int id)) throw new ModelFormatException(path, $"{key} holds {x.GetRawText()}, not a token id");
            if (!into.Contains(id)) into.Add(id);
        }
    }

    internal static JsonDocument ParseJson(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        var bytes = File.ReadAllBytes(path);
        if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new ModelFormatException(path, "not UTF-8 text");
        try { return JsonDocument.Parse(bytes); }
        catch (JsonException e) { throw new ModelFormatException(path, $"not valid JSON ({e.Message})", e); }
    }

    internal static int? Int(JsonElement e, string key, string path)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
        throw new ModelFormatException(path, $"{key} = {v.GetRawText()} is not an integer");
    }

    internal static double? Num(JsonElement e, string key, string path)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
        throw new ModelFormatException(path, $"{key} = {v.GetRawText()} is not a number");
    }

    internal static string? Str(JsonElement e, string key, string path)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        throw new ModelFormatException(path, $"{key} = {v.GetRawText()} is not a string");
    }
}
