using System.CommandLine;
using Llama3.Model;

namespace Llama3.Cli;

/// <summary>Opens the model a command names, with a progress bar on a terminal.</summary>
internal static class ModelLoader
{
    public static ModelFiles Open(ParseResult p, Option<string> model, Option<double?> ropeFactor)
    {
        string path = p.GetValue(model)!;
        var files = ModelFiles.Open(path, new ModelLoadOptions { RopeFactor = p.GetValue(ropeFactor) });
        try
        {
            using var bar = new ProgressBar($"loading {Path.GetFileName(Path.TrimEndingDirectorySeparator(path))}");
            files.Prefetch(bar);
            return files;
        }
        catch
        {
            files.Dispose();
            throw;
        }
    }

    /// <summary>The context to allocate: what the user asks for, at most the model's.</summary>
    public static int Context(ModelFiles files, int? requested, int fallback = 4096)
    {
        int ctx = requested ?? Math.Min(fallback, files.Config.ContextLength);
        if (ctx <= 0) throw new Cli.UsageException($"--ctx must be positive (got {ctx})");
        if (ctx > files.Config.ContextLength)
            throw new Cli.UsageException($"--ctx {ctx} is larger than the model's context of {files.Config.ContextLength}");
        return ctx;
    }

    /// <summary>Token ids from "1,2,3" or "1 2 3" or a JSON array.</summary>
    public static int[] ParseIds(string text, string what)
    {
        var parts = text.Trim().TrimStart('[').TrimEnd(']').Split([',', ' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out ids[i]))
                throw new Cli.UsageException($"{what}: '{parts[i]}' is not a token id");
        return ids;
    }

    /// <summary>The ids of --tokens or --tokens-file.</summary>
    public static int[]? ReadIds(ParseResult p, Option<string> tokens, Option<string> tokensFile)
    {
        if (p.GetValue(tokens) is string t) return ParseIds(t, "--tokens");
        if (p.GetValue(tokensFile) is string f)
        {
            if (!File.Exists(f)) throw new FileNotFoundException($"{f}: file not found", f);
            return ParseIds(File.ReadAllText(f), f);
        }
        return null;
    }

    /// <summary>Checks ids against the vocabulary.</summary>
    public static void CheckIds(ReadOnlySpan<int> ids, int vocab)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab) throw new Cli.UsageException($"token {id} is outside the vocabulary (0..{vocab - 1})");
    }
}
