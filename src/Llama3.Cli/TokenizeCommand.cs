using System.CommandLine;
using System.Text;
using System.Text.Json;
using Llama3.Tokenization;

namespace Llama3.Cli;

/// <summary><c>llama3 tokenize</c>: text to token ids.</summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "A GGUF file or a model directory (Meta or Hugging Face)" };
        var tokenizer = new Option<string>("--tokenizer") { Description = "A tokenizer.model, tokenizer.json, GGUF file or directory" };
        var special = new Option<bool>("--special") { Description = "Encode special-token text such as <|eot_id|> as special tokens" };
        var bos = new Option<bool>("--bos") { Description = "Prepend the BOS token" };
        var text = new Option<string>("--text") { Description = "The text to tokenize" };
        var file = new Option<string>("--file") { Description = "A UTF-8 text file to tokenize" };
        var jsonl = new Option<string>("--jsonl") { Description = "JSON lines with a \"text\" field; prints one JSON array of ids per line" };
        var json = new Option<bool>("--json") { Description = "Print a JSON array of ids instead of id<TAB>piece lines" };
        var cmd = new Command("tokenize", "Tokenize text and print the token ids") { model, tokenizer, special, bos, text, file, jsonl, json };
        cmd.SetAction(p =>
        {
            Cli.RequireOne(p, model, tokenizer);
            Cli.RequireOne(p, text, file, jsonl);
            var tok = LlamaTokenizer.FromFile(p.GetValue(model) ?? p.GetValue(tokenizer)!);
            var mode = p.GetValue(special) ? SpecialTokenMode.Allow : SpecialTokenMode.AsText;
            bool addBos = p.GetValue(bos);
            using var stdout = Cli.OpenStdout();
            if (p.GetValue(jsonl) is string jsonlPath)
            {
                EncodeJsonLines(tok, jsonlPath, addBos, mode, stdout);
            }
            else
            {
                string input = p.GetValue(text) ?? ReadText(p.GetValue(file)!);
                var ids = tok.EncodeToIds(input, addBos, false, mode);
                if (p.GetValue(json)) stdout.WriteLine(JsonSerializer.Serialize(ids));
                else foreach (int id in ids) stdout.WriteLine($"{id}\t{Escape(tok.GetTokenDisplayText(id))}");
            }
            stdout.Flush();
            return 0;
        });
        return cmd;
    }

    // Invalid UTF-8 in the file is read as U+FFFD, as the library documents.
    private static string ReadText(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        return File.ReadAllText(path, new UTF8Encoding(false, false));
    }

    private static void EncodeJsonLines(LlamaTokenizer tok, string path, bool addBos, SpecialTokenMode mode, TextWriter output)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        int lineNo = 0;
        var ids = new List<int>();
        foreach (string line in File.ReadLines(path, new UTF8Encoding(false, false)))
        {
            lineNo++;
            string? value;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("text", out var t)
                    || t.ValueKind != JsonValueKind.String)
                    throw new Cli.UsageException($"{path}: line {lineNo}: expected a JSON object with a string \"text\" field");
                value = t.GetString();
            }
            catch (JsonException e)
            {
                throw new Cli.UsageException($"{path}: line {lineNo}: not valid JSON ({e.Message})");
            }
            ids.Clear();
            tok.EncodeToIds(value!, ids, addBos, false, mode);
            output.WriteLine(JsonSerializer.Serialize(ids));
        }
    }

    /// <summary>Shows a piece on one line: backslash escapes for control characters and the backslash itself.</summary>
    internal static string Escape(string piece)
    {
        var sb = new StringBuilder(piece.Length);
        foreach (char c in piece)
        {
            switch (c)
            {
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\\': sb.Append("\\\\"); break;
                default:
                    if (char.IsControl(c)) sb.Append($"\\u{(int)c:X4}");
                    else sb.Append(c);
                    break;
            }
        }
        return sb.ToString();
    }
}
