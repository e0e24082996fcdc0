using System.Text.Json;
using Llama3.Tests.Model;

namespace Llama3.Tests.Cli;

public class ModelCommandTests
{
    private static string Stories => SharedData.Path("models", "stories260K.gguf");

    [Fact]
    public void GenerateJsonIsLlamaCppsGreedyOutputWithNothingOnStderrForAPipe()
    {
        var r = CliRunner.Run("generate", "-m", Stories, "-p", "Once upon a time", "-n", "64", "--temperature", "0", "--json");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Stderr); // no progress bar on a pipe
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.Equal([1, 403, 407, 261, 378], root.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32()));
        var reference = LogitsReference.Load("reference", "stories260K", "once-upon-a-time.json");
        Assert.Equal(reference.GreedyTokens, root.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal("length", root.GetProperty("finish_reason").GetString());
        Assert.StartsWith("QQQQQQQ9pphe", root.GetProperty("text").GetString());
        Assert.Equal(64, root.GetProperty("timings").GetProperty("generated_tokens").GetInt32());
    }

    [Fact]
    public void GenerateStreamsTextAndRejectsBadInput()
    {
        var r = CliRunner.Run("generate", "-m", Stories, "--tokens", "1,403,407", "-n", "5", "--seed", "3");
        Assert.Equal(0, r.ExitCode);
        Assert.NotEmpty(r.Stdout.Trim());
        var bad = CliRunner.Run("generate", "-m", Stories, "--tokens", "1,99999", "-n", "5");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("outside the vocabulary", bad.Stderr);
        var tooLong = CliRunner.Run("generate", "-m", Stories, "--tokens", string.Join(",", Enumerable.Repeat(403, 40)), "--ctx", "32");
        Assert.Equal(1, tooLong.ExitCode);
        Assert.Contains("more than the context", tooLong.Stderr);
        var badTemp = CliRunner.Run("generate", "-m", Stories, "-p", "x", "--temperature", "-1");
        Assert.Equal(1, badTemp.ExitCode);
        Assert.DoesNotContain("   at ", badTemp.Stderr);
    }

    [Fact]
    public void LogitsJsonHasTheReferenceShapeAndValues()
    {
        var reference = LogitsReference.Load("reference", "llamacpp", "tiny-F32.json");
        string ids = string.Join(",", reference.Tokens);
        var r = CliRunner.Run("logits", "-m", SharedData.Path("models", "tiny", "tiny-F32.gguf"), "--tokens", ids,
            "--top", "10", "--fixed-ids", string.Join(",", reference.FixedIds), "--batch", "16", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var positions = doc.RootElement.GetProperty("positions").EnumerateArray().ToList();
        Assert.Equal(reference.Tokens.Length, positions.Count);
        double max = 0;
        foreach (var (p, expected) in positions.Zip(reference.Positions))
        {
            Assert.Equal(expected.Pos, p.GetProperty("pos").GetInt32());
            Assert.Equal(expected.InputId, p.GetProperty("input_id").GetInt32());
            var top = p.GetProperty("top").EnumerateArray().ToList();
            Assert.Equal(10, top.Count);
            max = Math.Max(max, Math.Abs(top[0][1].GetDouble() - expected.Top[0].Logit));
            var fixedLogits = p.GetProperty("fixed_logits").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            for (int i = 0; i < fixedLogits.Length; i++) max = Math.Max(max, Math.Abs(fixedLogits[i] - expected.FixedLogits[i]));
            max = Math.Max(max, Math.Abs(p.GetProperty("logsumexp").GetDouble() - expected.LogSumExp));
        }
        Assert.True(max <= 1e-4, $"max difference {max}");
    }

    [Fact]
    public void InfoJsonDescribesEachFormat()
    {
        foreach (var (path, format, tied, factor) in new (string[], string, bool, double?)[]
        {
            (["models", "stories260K.gguf"], "gguf", false, null),
            (["models", "tiny", "tiny-tied-Q8_0.gguf"], "gguf", true, null),
            (["models", "meta-tiny", "hf-sharded"], "hf", false, 8),
            (["models", "meta-tiny-32", "meta"], "meta", true, 32),
        })
        {
            var r = CliRunner.Run("info", "-m", SharedData.Path(path), "--json");
            Assert.Equal(0, r.ExitCode);
            using var doc = JsonDocument.Parse(r.Stdout);
            var root = doc.RootElement;
            Assert.Equal(format, root.GetProperty("format").GetString());
            Assert.Equal(tied, root.GetProperty("tied_embeddings").GetBoolean());
            var scaling = root.GetProperty("rope_scaling");
            Assert.Equal(factor, scaling.ValueKind == JsonValueKind.Null ? null : scaling.GetProperty("factor").GetDouble());
            foreach (var key in new[] { "architecture", "vocab_size", "dim", "layers", "heads", "kv_heads", "head_dim", "ffn_dim",
                         "norm_eps", "rope_theta", "context_length", "bos_id", "eos_ids", "tensor_types", "file_bytes", "tokenizer" })
                Assert.True(root.TryGetProperty(key, out _), key);
            long bytes = root.GetProperty("tensor_types").EnumerateObject().Sum(t => t.Value.GetProperty("bytes").GetInt64());
            Assert.InRange(bytes, 1, root.GetProperty("file_bytes").GetInt64());
        }
        var q = CliRunner.Run("info", "-m", SharedData.Path("models", "tiny", "tiny-Q4_K.gguf"), "--json");
        using var qd = JsonDocument.Parse(q.Stdout);
        Assert.Equal(16, qd.RootElement.GetProperty("tensor_types").GetProperty("Q4_K").GetProperty("count").GetInt32());
    }

    [Fact]
    public void ChatAnswersOneMessageAndNeedsALlama3Vocabulary()
    {
        var r = CliRunner.Run("chat", "-m", SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"), "-p", "Hello!", "-n", "5", "--seed", "1");
        Assert.Equal(0, r.ExitCode);
        Assert.NotEmpty(r.Stdout.Trim());
        var interactive = CliRunner.RunWithInput("Hi\nHow are you?\n\n", "chat", "-m", SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"), "-n", "3", "--temperature", "0");
        Assert.Equal(0, interactive.ExitCode);
        // The first answer of the conversation is the one-shot answer to the same message; a second answer follows.
        var first = CliRunner.Run("chat", "-m", SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"), "-p", "Hi", "-n", "3", "--temperature", "0");
        Assert.StartsWith(first.Stdout, interactive.Stdout);
        Assert.True(interactive.Stdout.Length > first.Stdout.Length);
        var spm = CliRunner.Run("chat", "-m", Stories, "-p", "Hello");
        Assert.Equal(1, spm.ExitCode);
        Assert.Contains("no Llama 3 chat tokens", spm.Stderr);
    }

    [Fact]
    public void PerplexityIsReported()
    {
        string file = Path.Combine(Path.GetTempPath(), $"llama3-ppl-{Guid.NewGuid():N}.txt");
        File.WriteAllText(file, string.Concat(Enumerable.Repeat("Once upon a time there was a little girl. ", 40)));
        try
        {
            var r = CliRunner.Run("perplexity", "-m", Stories, "-f", file, "--ctx", "64", "--json");
            Assert.Equal(0, r.ExitCode);
            using var doc = JsonDocument.Parse(r.Stdout);
            double ppl = doc.RootElement.GetProperty("perplexity").GetDouble();
            Assert.True(ppl > 1 && double.IsFinite(ppl));
            Assert.True(doc.RootElement.GetProperty("windows").GetInt32() >= 2);
        }
        finally { File.Delete(file); }
    }
}
