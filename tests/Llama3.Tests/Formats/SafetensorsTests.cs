using System.Text;
using Llama3.Formats;
using Llama3.Formats.Safetensors;
using Llama3.Model;

namespace Llama3.Tests.Formats;

public sealed class SafetensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("llama3-st-").FullName;
    private static string Real => SharedData.Path("models", "meta-tiny-32", "hf", "model.safetensors");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteFile(string name, byte[] bytes)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    private static byte[] Build(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BitConverter.GetBytes((ulong)h.Length).CopyTo(bytes, 0);
        h.CopyTo(bytes, 8);
        return bytes;
    }

    [Fact]
    public void ReadsTheRealFile()
    {
        using var f = SafetensorsFile.Open(Real);
        var emb = f.Find("model.embed_tokens.weight")!;
        Assert.Equal("BF16", emb.DType);
        Assert.Equal([128256L, 32L], emb.Shape);
        Assert.Equal(128256L * 32 * 2, emb.ByteSize);
        Assert.Null(f.Find("lm_head.weight")); // tied
        Assert.All(f.Tensors, t => Assert.InRange(t.Offset + t.ByteSize, 0, f.FileLength));
    }

    [Theory]
    [InlineData("""{"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 6]}}""", 8, "needs 8")]
    [InlineData("""{"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}""", 4, "past the end")]
    [InlineData("""{"a": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 2]}}""", 2, "unknown dtype")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}""", 8, "overlap")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}""", 4, "invalid dimension")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [1]}}""", 4, "data_offsets")]
    [InlineData("""[1, 2]""", 0, "not a JSON object")]
    [InlineData("""{"a": """, 0, "not valid JSON")]
    public void MalformedHeadersNameTheFileAndProblem(string header, int dataBytes, string problem)
    {
        string p = WriteFile("bad.safetensors", Build(header, dataBytes));
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(p));
        Assert.Contains(p, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void AHeaderLengthPastTheFileIsRejectedWithoutAllocating()
    {
        var bytes = new byte[64];
        BitConverter.GetBytes(1UL << 62).CopyTo(bytes, 0);
        string p = WriteFile("huge.safetensors", bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(p));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        Assert.Contains("header length", e.Message);
    }

    [Fact]
    public void TruncatedCopiesAreErrors()
    {
        var bytes = File.ReadAllBytes(Real);
        foreach (int cut in new[] { 0, 4, 8, 100, 1000, bytes.Length / 2, bytes.Length - 1 })
        {
            string p = WriteFile($"cut{cut}.safetensors", bytes[..cut]);
            var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(p));
            Assert.Contains(p, e.Message);
        }
    }

    [Fact]
    public void FuzzedHeadersGiveAFileOrAClearError()
    {
        var original = File.ReadAllBytes(Real);
        ulong headerLen = BitConverter.ToUInt64(original, 0);
        int region = (int)Math.Min((ulong)original.Length, 8 + headerLen);
        var rng = new Random(99);
        string p = Path.Combine(_dir, "fuzz.safetensors");
        int opened = 0, rejected = 0;
        for (int i = 0; i < 300; i++)
        {
            var m = (byte[])original.Clone();
            int flips = rng.Next(1, 6);
            for (int k = 0; k < flips; k++)
            {
                int at = rng.Next(region);
                m[at] = rng.Next(3) == 0 ? (byte)rng.Next(256) : (byte)"0123456789[]{}\",:-"[rng.Next(18)];
            }
            File.WriteAllBytes(p, m);
            try
            {
                using var f = SafetensorsFile.Open(p);
                foreach (var t in f.Tensors) Assert.InRange(t.Offset + t.ByteSize, 0, f.FileLength);
                opened++;
            }
            catch (ModelFormatException) { rejected++; }
        }
        Assert.Equal(300, opened + rejected);
        Assert.True(rejected > 0);
    }

    [Fact]
    public void HuggingFaceDirectoryErrorsNameTheFile()
    {
        string dir = Directory.CreateDirectory(Path.Combine(_dir, "hf")).FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"), """{"architectures": ["MistralForCausalLM"], "model_type": "mistral"}""");
        var e = Assert.Throws<ModelFormatException>(() => ModelFiles.Open(dir));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("MistralForCausalLM", e.Message);

        foreach (var f in Directory.GetFiles(SharedData.Path("models", "meta-tiny", "hf")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)), overwrite: true);
        string config = File.ReadAllText(Path.Combine(dir, "config.json")).Replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        var kv = Assert.Throws<ModelFormatException>(() => ModelFiles.Open(dir));
        Assert.Contains("kv_heads = 3", kv.Message);
    }

    [Fact]
    public void MissingModelPathIsAClearError()
    {
        string missing = Path.Combine(_dir, "nothing.gguf");
        var e = Assert.Throws<FileNotFoundException>(() => ModelFiles.Open(missing));
        Assert.Contains(missing, e.Message);
        var empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        var d = Assert.Throws<FileNotFoundException>(() => ModelFiles.Open(empty));
        Assert.Contains("not a model directory", d.Message);
    }
}
