using System.Text.Json;

namespace Llama3.Tests.Cli;

public sealed class TokenizeCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("llama3-cli-").FullName;
    private static string MetaModel => SharedData.Path("reference", "tokenizer", "tokenizer.model");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void JsonOutputIsMetasIds()
    {
        var r = CliRunner.Run("tokenize", "--tokenizer", MetaModel, "--bos", "--text", "This is a test sentence.", "--json");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("[128000,2028,374,264,1296,11914,13]", r.Stdout.Trim());
    }

    [Fact]
    public void TabOutputHasOneLinePerTokenWithEscapedPieces()
    {
        var r = CliRunner.Run("tokenize", "--tokenizer", MetaModel, "--text", "Hi\n\n there");
        Assert.Equal(0, r.ExitCode);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["13347\tHi", "271\t\\n\\n", "1070\t there"], lines);
    }

    [Fact]
    public void SpecialFlagParsesSpecialTokens()
    {
        var plain = CliRunner.Run("tokenize", "--tokenizer", MetaModel, "--text", "<|eot_id|>", "--json");
        var special = CliRunner.Run("tokenize", "--tokenizer", MetaModel, "--text", "<|eot_id|>", "--json", "--special");
        Assert.Equal("[128009]", special.Stdout.Trim());
        Assert.NotEqual("[128009]", plain.Stdout.Trim());
    }

    [Fact]
    public void ModelGgufAndFileInput()
    {
        string file = Path.Combine(_dir, "in.txt");
        File.WriteAllText(file, "Once upon a time");
        var r = CliRunner.Run("tokenize", "-m", SharedData.Path("models", "stories260K.gguf"), "--bos", "--file", file, "--json");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("[1,403,407,261,378]", r.Stdout.Trim());
    }

    [Fact]
    public void JsonLinesGiveOneArrayPerLineInOrder()
    {
        string file = Path.Combine(_dir, "data.jsonl");
        File.WriteAllLines(file, [
            JsonSerializer.Serialize(new { text = "Hello world", id = 1 }),
            JsonSerializer.Serialize(new { text = "" }),
            JsonSerializer.Serialize(new { text = " Hello, world!" }),
        ]);
        var r = CliRunner.Run("tokenize", "--tokenizer", SharedData.Path("models", "meta-tiny", "hf"), "--jsonl", file);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(["[9906,1917]", "[]", "[22691,11,1917,0]"], r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void BadJsonLineNamesTheLine()
    {
        string file = Path.Combine(_dir, "bad.jsonl");
        File.WriteAllLines(file, ["{\"text\": \"ok\"}", "{\"txt\": 1}"]);
        var r = CliRunner.Run("tokenize", "--tokenizer", MetaModel, "--jsonl", file);
        Assert.Equal(1, r.ExitCode);
        Assert.True(r.Stderr.Contains("line 2"), r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr); // no stack trace
    }

    [Fact]
    public void MissingFileIsAClearErrorWithoutStackTrace()
    {
        string missing = Path.Combine(_dir, "nope.model");
        var r = CliRunner.Run("tokenize", "--tokenizer", missing, "--text", "x");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("llama3: error:", r.Stderr);
        Assert.Contains(missing, r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void ExactlyOneSourceAndOneInputAreRequired()
    {
        var both = CliRunner.Run("tokenize", "--tokenizer", MetaModel, "-m", MetaModel, "--text", "x");
        Assert.Equal(1, both.ExitCode);
        Assert.Contains("exactly one of", both.Stderr);
        var none = CliRunner.Run("tokenize", "--tokenizer", MetaModel);
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("--text", none.Stderr);
    }
}
