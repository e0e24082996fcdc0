using System.Text.Json;

namespace Llama3.Tests.Cli;

/// <summary><c>llama3 bench</c> as a user runs it: the JSON shape and the errors, never the speeds.</summary>
public class BenchCommandTests
{
    private static string Stories => SharedData.Path("models", "stories260K.gguf");

    private static readonly string[] RequiredKeys =
        ["model", "threads", "prompt_tokens", "gen_tokens", "pp_tps", "tg_tps", "load_s", "peak_rss_bytes"];

    [Fact]
    public void JsonHasTheRequiredKeysFirstWithPositiveFigures()
    {
        var r = CliRunner.Run("bench", "-m", Stories, "-p", "16", "-n", "8", "-r", "2", "-t", "2", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("", r.Stderr); // no progress bar on a pipe
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        var keys = root.EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal(RequiredKeys, keys.Take(RequiredKeys.Length));
        Assert.Equal(Stories, root.GetProperty("model").GetString());
        Assert.Equal(2, root.GetProperty("threads").GetInt32());
        Assert.Equal(16, root.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(8, root.GetProperty("gen_tokens").GetInt32());
        foreach (string test in new[] { "pp_tps", "tg_tps" })
        {
            var s = root.GetProperty(test);
            Assert.Equal(["mean", "sd"], s.EnumerateObject().Select(p => p.Name));
            Assert.True(s.GetProperty("mean").GetDouble() > 0, test);
            Assert.True(s.GetProperty("sd").GetDouble() >= 0, test);
        }
        Assert.True(root.GetProperty("load_s").GetDouble() > 0);
        Assert.True(root.GetProperty("peak_rss_bytes").GetInt64() > 0);
        Assert.True(root.GetProperty("bandwidth_gbps").GetDouble() > 0);
        Assert.True(root.GetProperty("decode_floor_tps").GetDouble() > 0);
        Assert.Equal(2, root.GetProperty("pp_samples_tps").GetArrayLength());
        Assert.Equal(2, root.GetProperty("tg_samples_tps").GetArrayLength());

        // One decode step reads every weight but the embedding table, of which it gathers one row.
        long perToken = root.GetProperty("weight_bytes_per_token").GetInt64();
        long modelBytes = root.GetProperty("model_bytes").GetInt64();
        Assert.True(perToken > 0 && perToken < modelBytes, $"{perToken} of {modelBytes}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Q4_0MatricesArePackedUnlessNoRepackIsGiven(bool noRepack)
    {
        string tiny = SharedData.Path("models", "tiny", "tiny-Q4_0.gguf");
        string[] args = ["bench", "-m", tiny, "-p", "8", "-n", "2", "-r", "1", "--json"];
        var r = CliRunner.Run(noRepack ? [.. args, "--no-repack"] : args);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        // 2 layers of 7 matrices and the output, on the machines whose kernels have the packed layout (AVX-512).
        int expected = noRepack || !Llama3.Kernels.Simd.QuantDot.HasPromptKernels ? 0 : 15;
        Assert.Equal(expected, doc.RootElement.GetProperty("packed_matrices").GetInt32());
    }

    [Theory]
    [InlineData("f32", 4)]
    [InlineData("f16", 2)]
    public void The_cache_type_is_reported_with_its_size(string type, int bytesPerValue)
    {
        string tiny = SharedData.Path("models", "tiny", "tiny-Q8_0.gguf");
        var r = CliRunner.Run("bench", "-m", tiny, "-p", "8", "-n", "2", "-r", "1", "--json", "--cache-type", type);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(type, doc.RootElement.GetProperty("cache_type").GetString());
        using var files = Llama3.Model.ModelFiles.Open(tiny);
        var c = files.Config;
        Assert.Equal(2L * c.Layers * 10 * c.KvHeads * c.HeadDim * bytesPerValue, doc.RootElement.GetProperty("kv_cache_bytes").GetInt64());
        Assert.True(doc.RootElement.GetProperty("tg_tps").GetProperty("mean").GetDouble() > 0);
    }

    [Fact]
    public void An_unknown_cache_type_is_a_usage_error()
    {
        var r = CliRunner.Run("bench", "-m", Stories, "-p", "8", "-n", "2", "-r", "1", "--cache-type", "q4");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("q4", r.Stderr);
        Assert.DoesNotContain("pp8", r.Stdout); // no test ran
    }

    [Fact]
    public void ZeroGenTokensSkipTheDecodeTest()
    {
        var r = CliRunner.Run("bench", "-m", Stories, "-p", "8", "-n", "0", "-r", "1", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("tg_tps").ValueKind);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.GetProperty("pp_tps").ValueKind);
        Assert.Equal(0, doc.RootElement.GetProperty("gen_tokens").GetInt32());
    }

    [Fact]
    public void TextOutputIsATableWithOneRowPerTest()
    {
        var r = CliRunner.Run("bench", "-m", Stories, "-p", "8", "-n", "4", "-r", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("| model", lines[0]);
        var tests = lines.Where(l => l.StartsWith('|')).Skip(2).Select(l => l.Split('|')[5].Trim());
        Assert.Equal(["pp8", "tg4 @ d8"], tests);
        Assert.Contains(lines, l => l.StartsWith("memory bandwidth", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("-p", "-1")]
    [InlineData("-n", "-2")]
    [InlineData("-t", "-1")]
    [InlineData("-r", "0")]
    [InlineData("-p", "100000")]
    public void BadArgumentsAreOneLineErrors(string option, string value)
    {
        string[] args = option == "-r" ? ["bench", "-m", Stories, option, value] : ["bench", "-m", Stories, option, value, "-r", "1"];
        var r = CliRunner.Run(args);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        string error = r.Stderr.TrimEnd('\n', '\r');
        Assert.StartsWith("llama3: error: ", error);
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void PromptAndDecodeBeyondTheContextNameIt()
    {
        // stories260K's context is 128 tokens.
        var r = CliRunner.Run("bench", "-m", Stories, "-p", "100", "-n", "29");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("exceed the model's context of 128", r.Stderr);
    }
}
