using System.Text;
using System.Text.Json;
using Llama3.Formats;
using Llama3.Formats.Gguf;

namespace Llama3.Tokenization;

/// <summary>Reads tokenizers from Meta's, Hugging Face's and llama.cpp's files.</summary>
internal static class TokenizerLoader
{
    public static LlamaTokenizer Load(string path, TokenizerOptions options)
    {
        if (Directory.Exists(path)) return LoadDirectory(path, options);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file or directory", path);
        if (IsGguf(path))
        {
            using var gguf = GgufFile.Open(path);
            return FromGguf(gguf);
        }
        string name = Path.GetFileName(path);
        if (name.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            return LoadHuggingFace(path, FindBeside(path, "tokenizer_config.json"), FindBeside(path, "generation_config.json"));
        return LoadTiktokenModel(path, options.SpecialTokenNames ?? NamesFromParams(Path.GetDirectoryName(Path.GetFullPath(path))!));
    }

    private static string? FindBeside(string path, string name)
    {
        string candidate = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, name);
        return File.Exists(candidate) ? candidate : null;
    }

    private static bool IsGguf(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using var f = File.OpenRead(path);
        return f.Read(magic) == 4 && magic.SequenceEqual("GGUF"u8);
    }

    private static LlamaTokenizer LoadDirectory(string dir, TokenizerOptions options)
    {
        string meta = Path.Combine(dir, "tokenizer.model");
        string hf = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(Path.Combine(dir, "params.json")) && File.Exists(meta))
            return LoadTiktokenModel(meta, options.SpecialTokenNames ?? NamesFromParams(dir));
        if (File.Exists(hf))
            return LoadHuggingFace(hf, FindBeside(hf, "tokenizer_config.json"), FindBeside(hf, "generation_config.json"));
        if (File.Exists(meta))
            return LoadTiktokenModel(meta, options.SpecialTokenNames ?? Llama3SpecialTokenNames.Llama3_1);
        var ggufs = Directory.GetFiles(dir, "*.gguf");
        if (ggufs.Length == 1) return Load(ggufs[0], options);
        throw new FileNotFoundException(
            $"{dir}: no tokenizer found (looked for tokenizer.model, tokenizer.json or a single .gguf file)", dir);
    }

    // Llama 3.0's params.json has no use_scaled_rope; 3.1 and later say true.
    private static Llama3SpecialTokenNames NamesFromParams(string dir)
    {
        string p = Path.Combine(dir, "params.json");
        if (!File.Exists(p)) return Llama3SpecialTokenNames.Llama3_1;
        try
        {
            using var doc = ParseJson(p);
            return doc.RootElement.TryGetProperty("use_scaled_rope", out _) ? Llama3SpecialTokenNames.Llama3_1 : Llama3SpecialTokenNames.Llama3_0;
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(p, $"not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>The 256 special tokens of Llama 3 (ids 128000 + i), named as Meta's code for that release names them.</summary>
    public static string[] MetaSpecialTokens(Llama3SpecialTokenNames names)
    {
        var list = new List<string>(256);
        if (names == Llama3SpecialTokenNames.Llama3_0)
        {
            // meta-llama/llama3 llama/tokenizer.py
            list.AddRange(["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|reserved_special_token_4|>", "<|eot_id|>"]);
            for (int i = 5; list.Count < 256; i++) list.Add($"<|reserved_special_token_{i}|>");
        }
        else
        {
            // meta-llama/llama-models models/llama3/tokenizer.py
            list.AddRange(["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]);
            for (int i = 3; list.Count < 256; i++) list.Add($"<|reserved_special_token_{i}|>");
        }
        return list.ToArray();
    }

    // The names that end generation wherever the vocabulary has them (Meta's stop_tokens).
    private static readonly string[] StopNames = ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"];

    private static List<int> StopTokens(IReadOnlyDictionary<string, int> specials, IEnumerable<int> extra)
    {
        var set = new List<int>();
        foreach (int id in extra) if (!set.Contains(id)) set.Add(id);
        foreach (var n in StopNames) if (specials.TryGetValue(n, out int id) && !set.Contains(id)) set.Add(id);
        return set;
    }

    public static Llama3Tokenizer LoadTiktokenModel(string path, Llama3SpecialTokenNames names)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        var byRank = new List<byte[]?>();
        int lineNo = 0;
        using (var reader = new StreamReader(path, new UTF8Encoding(false, true)))
        {
            string? line;
            try
            {
                while ((line = reader.ReadLine()) != null)
                {
                    lineNo++;
                    if (line.Length == 0) continue;
                    int sp = line.IndexOf(' ');
                    if (sp <= 0 || sp != line.LastIndexOf(' '))
                        throw new ModelFormatException(path, $"line {lineNo}: expected 'base64-token rank', got '{Shorten(line)}'" +
                            (lineNo == 1 ? " (this is not a tiktoken BPE file; a SentencePiece tokenizer.model is read from a GGUF file instead)" : ""));
                    byte[] bytes;
                    try { bytes = Convert.FromBase64String(line[..sp]); }
                    catch (FormatException) { throw new ModelFormatException(path, $"line {lineNo}: '{Shorten(line[..sp])}' is not base64"); }
                    if (!int.TryParse(line.AsSpan(sp + 1), System.Globalization.NumberStyles.None, null, out int rank) || rank >= 10_000_000)
                        throw new ModelFormatException(path, $"line {lineNo}: rank '{Shorten(line[(sp + 1)..])}' is not a non-negative integer");
                    while (byRank.Count <= rank) byRank.Add(null);
                    if (byRank[rank] != null) throw new ModelFormatException(path, $"line {lineNo}: rank {rank} appears twice");
                    byRank[rank] = bytes;
                }
            }
            catch (DecoderFallbackException)
            {
                throw new ModelFormatException(path, $"line {lineNo + 1}: not UTF-8 text (this is not a tiktoken BPE file)");
            }
        }
        if (byRank.Count == 0) throw new ModelFormatException(path, "no tokens in the file");
        int missing = byRank.IndexOf(null);
        if (missing >= 0) throw new ModelFormatException(path, $"rank {missing} is missing (ranks must be 0..{byRank.Count - 1})");

        var ranks = BuildRanks(path, byRank!);
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        var names256 = MetaSpecialTokens(names);
        for (int i = 0; i < names256.Length; i++) specials[names256[i]] = ranks.Count + i;
        return new Llama3Tokenizer(ranks, specials, specials["<|begin_of_text|>"], specials["<|end_of_text|>"],
            StopTokens(specials, []), addBos: true, path, chatTemplate: null);
    }

    private static BytePairRanks BuildRanks(string path, IReadOnlyList<byte[]> tokens)
    {
        try
        {
            return new BytePairRanks(tokens, id => $"token {id} is empty or repeats an earlier token");
        }
        catch (InvalidDataException e)
        {
            throw new ModelFormatException(path, e.Message);
        }
    }

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..57] + "...";

    public static Llama3Tokenizer LoadHuggingFace(string path, string? configPath, string? generationConfigPath)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        using var doc = ParseJson(path);
        
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, "not a Hugging Face tokenizer.json (no \"model\" object)");
            string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "(none)";
            if (type != "BPE")
                throw new ModelFormatException(path, $"the tokenizer model is {type}, not Llama 3's byte-level BPE");
            string? pattern = FindSplitPattern(root);
            if (pattern != Llama3Tokenizer.SplitPattern) // another pattern is another model
                throw new ModelFormatException(path, pattern is null
                    ? "the pre-tokenizer is not Llama 3's (no Split with Meta's pattern followed by ByteLevel)"
                    : $"the pre-tokenizer pattern is not Llama 3's: {Shorten(pattern)}");
            if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, "model.vocab is missing");

            var added = new Dictionary<string, int>(StringComparer.Ordinal);
            if (root.TryGetProperty("added_tokens", out var addedArr) && addedArr.ValueKind == JsonValueKind.Array)
                foreach (var a in addedArr.EnumerateArray())
                {
                    if (!a.TryGetProperty("id", out var idEl) || !idEl.TryGetInt32(out int id) ||
                        !a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
                        throw new ModelFormatException(path, "an added_tokens entry lacks an integer id or a string content");
                    added[c.GetString()!] = id;
                }
            var addedIds = added.Values.ToHashSet();

            var byId = new SortedDictionary<int, byte[]>();
            foreach (var p in vocab.EnumerateObject())
            {
                if (!p.Value.TryGetInt32(out int id) || id < 0)
                    throw new ModelFormatException(path, $"vocab entry '{Shorten(p.Name)}' has no valid id");
                if (addedIds.Contains(id)) continue;
                var bytes = ByteLevel.ToBytes(p.Name)
                    ?? throw new ModelFormatException(path, $"vocab entry '{Shorten(p.Name)}' is not byte-level text");
                if (!byId.TryAdd(id, bytes)) throw new ModelFormatException(path, $"vocab id {id} appears twice");
            }
            int expect = 0;
            foreach (int id in byId.Keys)
            {
                if (id != expect) throw new ModelFormatException(path, $"vocab ids are not contiguous: {expect} is missing");
                expect++;
            }
            var ranks = BuildRanks(path, byId.Values.ToList());

            int? bos = added.TryGetValue("<|begin_of_text|>", out int b) ? b : null;
            int? eos = added.TryGetValue("<|end_of_text|>", out int e) ? e : null;
            string? template = null;
            if (configPath != null)
            {
                using var cfg = ParseJson(configPath);
                if (TokenText(cfg.RootElement, "bos_token") is string bt && added.TryGetValue(bt, out int bi)) bos = bi;
                if (TokenText(cfg.RootElement, "eos_token") is string et && added.TryGetValue(et, out int ei)) eos = ei;
                if (cfg.RootElement.TryGetProperty("chat_template", out var ct) && ct.ValueKind == JsonValueKind.String) template = ct.GetString();
            }
            var stops = new List<int>();
            if (eos is int eosId) stops.Add(eosId);
            if (generationConfigPath != null)
            {
                using var gen = ParseJson(generationConfigPath);
                if (gen.RootElement.TryGetProperty("eos_token_id", out var ge))
                {
                    if (ge.ValueKind == JsonValueKind.Number && ge.TryGetInt32(out int one)) stops.Add(one);
                    else if (ge.ValueKind == JsonValueKind.Array)
                        foreach (var x in ge.EnumerateArray()) if (x.TryGetInt32(out int v)) stops.Add(v);
                }
            }
            return new Llama3Tokenizer(ranks, added, bos, eos, StopTokens(added, stops), addBos: true, path, template);
        }
    }

    private static JsonDocument ParseJson(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new ModelFormatException(path, "not UTF-8 text");
        try { return JsonDocument.Parse(bytes); }
        catch (JsonException e) { throw new ModelFormatException(path, $"not valid JSON: {e.Message}", e); }
    }

    private static string? TokenText(JsonElement cfg, string name)
    {
        if (!cfg.TryGetProperty(name, out var v)) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        if (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String) return c.GetString();
        return null;
    }

    // pre_tokenizer: Sequence[Split(Regex = pattern, Isolated), ByteLevel(use_regex=false)] as Llama 3's files have it.
    private static string? FindSplitPattern(JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object) return null;
        IEnumerable<JsonElement> steps = pre.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().ToList()
            : [pre];
        string? pattern = null;
        bool byteLevel = false;
        foreach (var s in steps)
        {
            string? type = s.TryGetProperty("type", out var ty) ? ty.GetString() : null;
            if (type == "Split" && s.TryGetProperty("pattern", out var pat) && pat.ValueKind == JsonValueKind.Object &&
                pat.TryGetProperty("Regex", out var rx))
                pattern = rx.GetString();
            else if (type == "ByteLevel")
                byteLevel = true;
        }
        return byteLevel ? pattern : null;
    }

    /// <summary>A tokenizer from GGUF metadata: <c>tokenizer.ggml.model</c> "gpt2" (Llama 3) or "llama" (SentencePiece).</summary>
    public static LlamaTokenizer FromGguf(GgufFile gguf)
    {
        string path = gguf.FilePath;
        string model = gguf.GetString("tokenizer.ggml.model") ?? throw new ModelFormatException(path, "no tokenizer (tokenizer.ggml.model is missing)");
        string[] tokens = gguf.GetArray<string>("tokenizer.ggml.tokens") ?? throw new ModelFormatException(path, "tokenizer.ggml.tokens is missing");
        var types = new GgufTokenType[tokens.Length];
        if (gguf.Find("tokenizer.ggml.token_type") is { } tt)
        {
            if (tt.Value is not GgufArray { Items: int[] or uint[] } arr || arr.Count != tokens.Length)
                throw new ModelFormatException(path, $"tokenizer.ggml.token_type should be {tokens.Length} integers");
            for (int i = 0; i < types.Length; i++)
                types[i] = (GgufTokenType)Convert.ToInt32(arr.Items.GetValue(i));
        }
        else Array.Fill(types, GgufTokenType.Normal);

        int? Id(string key)
        {
            long? v = gguf.GetInt64(key);
            if (v is null) return null;
            if (v < 0 || v >= tokens.Length) throw new ModelFormatException(path, $"{key} = {v} is outside the vocabulary of {tokens.Length}");
            return (int)v;
        }
        int? bos = Id("tokenizer.ggml.bos_token_id"), eos = Id("tokenizer.ggml.eos_token_id");
        int? eot = Id("tokenizer.ggml.eot_token_id"), eom = Id("tokenizer.ggml.eom_token_id");
        var extraStops = new[] { eos, eot, eom }.Where(x => x.HasValue).Select(x => x!.Value).ToList();

        switch (model)
        {
            case "llama":
            {
                float[] scores = gguf.GetArray<float>("tokenizer.ggml.scores") ?? new float[tokens.Length];
                if (scores.Length != tokens.Length)
                    throw new ModelFormatException(path, $"tokenizer.ggml.scores has {scores.Length} entries for {tokens.Length} tokens");
                return new SentencePieceTokenizer(tokens, scores, types, bos, eos, Id("tokenizer.ggml.unknown_token_id"),
                    extraStops, gguf.GetBool("tokenizer.ggml.add_bos_token") ?? true,
                    gguf.GetBool("tokenizer.ggml.add_space_prefix") ?? true, path);
            }
            case "gpt2":
            {
                string pre = gguf.GetString("tokenizer.ggml.pre") ?? "llama-bpe";
                if (pre is not ("llama-bpe" or "llama3" or "default"))
                    throw new ModelFormatException(path, $"tokenizer.ggml.pre = '{pre}' is not Llama 3's pre-tokenizer (llama-bpe)");
                var ranked = new List<byte[]>(tokens.Length);
                var specials = new Dictionary<string, int>(StringComparer.Ordinal);
                for (int i = 0; i < tokens.Length; i++)
                {
                    if (types[i] is GgufTokenType.Normal or GgufTokenType.Undefined or GgufTokenType.Byte)
                    {
                        if (specials.Count > 0)
                            throw new ModelFormatException(path, $"token {i} is ordinary but follows special tokens (ordinary tokens must come first)");
                        ranked.Add(ByteLevel.ToBytes(tokens[i]) ?? throw new ModelFormatException(path, $"token {i} '{Shorten(tokens[i])}' is not byte-level text"));
                    }
                    else specials[tokens[i]] = i;
                }
                var ranks = BuildRanks(path, ranked);
                return new Llama3Tokenizer(ranks, specials, bos, eos, StopTokens(specials, extraStops),
                    gguf.GetBool("tokenizer.ggml.add_bos_token") ?? true, path, gguf.GetString("tokenizer.chat_template"));
            }
            default:
                throw new ModelFormatException(path, $"tokenizer.ggml.model = '{model}' is not supported (gpt2 for Llama 3, llama for SentencePiece)");
        }
    }
}
