using System.Buffers.Binary;
using System.Text;
using Llama3.Formats;
using Llama3.Formats.Gguf;
using Llama3.Kernels.Quant;

namespace Llama3.Tests.Formats;

/// <summary>Reading the GGUF files in the shared data.</summary>
public sealed class GgufReadTests
{
    [Fact]
    public void Stories260K_metadata_is_a_llama_model_with_a_512_token_sentencepiece_vocabulary()
    {
        string path = SharedData.Path("models", "stories260K.gguf");
        using var f = GgufFile.Open(path);

        Assert.Equal(path, f.FilePath);
        Assert.Equal(3u, f.Version);
        Assert.Equal(new FileInfo(path).Length, f.FileLength);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal("llama", f.GetString("tokenizer.ggml.model"));

        var tokens = f.GetArray<string>("tokenizer.ggml.tokens");
        Assert.NotNull(tokens);
        Assert.Equal(512, tokens.Length);
        // SentencePiece's fixed ids: <unk> 0, <s> 1 (BOS), </s> 2 (EOS), then the 256 byte tokens.
        Assert.Equal("<unk>", tokens[0]);
        Assert.Equal("<s>", tokens[1]);
        Assert.Equal("</s>", tokens[2]);
        Assert.Equal("<0x00>", tokens[3]);
        Assert.Equal("<0xFF>", tokens[258]);
        Assert.Equal(1, f.GetInt64("tokenizer.ggml.bos_token_id"));
        Assert.Equal(2, f.GetInt64("tokenizer.ggml.eos_token_id"));
        Assert.Equal(512, f.GetArray<float>("tokenizer.ggml.scores")!.Length);
        Assert.Equal(512, f.GetArray<int>("tokenizer.ggml.token_type")!.Length);

        Assert.Equal(f.Metadata.Count, f.MetadataKeys.Count);
        Assert.Equal(f.MetadataKeys.Count, f.MetadataKeys.Distinct().Count());
        Assert.Null(f.Find("no.such.key"));
        Assert.Null(f.GetString("no.such.key"));
        Assert.Throws<ModelFormatException>(() => f.GetString("llama.block_count"));
    }

    [Fact]
    public void Stories260K_tensors_follow_from_its_hyperparameters()
    {
        string path = SharedData.Path("models", "stories260K.gguf");
        using var f = GgufFile.Open(path);

        long dim = f.GetInt64("llama.embedding_length")!.Value;
        long layers = f.GetInt64("llama.block_count")!.Value;
        long ffn = f.GetInt64("llama.feed_forward_length")!.Value;
        long heads = f.GetInt64("llama.attention.head_count")!.Value;
        long kvHeads = f.GetInt64("llama.attention.head_count_kv")!.Value;
        long vocab = f.GetArray<string>("tokenizer.ggml.tokens")!.Length;
        long kvDim = dim * kvHeads / heads;

        // token_embd, output_norm, output, then 9 tensors per layer.
        Assert.Equal(3 + 9 * layers, f.Tensors.Count);
        Assert.Equal(f.Tensors.Count, f.Tensors.Select(t => t.Name).Distinct().Count());

        void Expect(string name, params long[] dims)
        {
            var t = f.FindTensor(name);
            Assert.True(t != null, $"missing {name}");
            Assert.Equal(dims, t.Dimensions);
            Assert.Equal(GgmlType.F32, t.Type);
        }
        Expect("token_embd.weight", dim, vocab);
        Expect("output.weight", dim, vocab);
        Expect("output_norm.weight", dim);
        for (int l = 0; l < layers; l++)
        {
            Expect($"blk.{l}.attn_q.weight", dim, dim);
            Expect($"blk.{l}.attn_k.weight", dim, kvDim);
            Expect($"blk.{l}.attn_v.weight", dim, kvDim);
            Expect($"blk.{l}.attn_output.weight", dim, dim);
            Expect($"blk.{l}.attn_norm.weight", dim);
            Expect($"blk.{l}.ffn_gate.weight", dim, ffn);
            Expect($"blk.{l}.ffn_up.weight", dim, ffn);
            Expect($"blk.{l}.ffn_down.weight", ffn, dim);
            Expect($"blk.{l}.ffn_norm.weight", dim);
        }
        Assert.Null(f.FindTensor("blk.99.attn_q.weight"));

        GgufAssert.LayoutIsSound(f);
        foreach (var t in f.Tensors)
            Assert.Equal(t.ElementCount * 4, t.ByteSize);

        // RMSNorm weights of a converted model are finite and not all zero.
        var norm = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.GetTensorBytes(f.FindTensor("output_norm.weight")!));
        Assert.Equal((int)dim, norm.Length);
        foreach (float x in norm) Assert.True(float.IsFinite(x));
        Assert.Contains(norm.ToArray(), x => x != 0);
    }

    public static TheoryData<string> TinyFiles()
    {
        var data = new TheoryData<string>();
        foreach (string p in Directory.GetFiles(SharedData.Path("models", "tiny"), "*.gguf").Order(StringComparer.Ordinal))
            data.Add(System.IO.Path.GetFileName(p));
        return data;
    }

    [Fact]
    public void The_tiny_folder_holds_every_weight_type_of_its_readme()
    {
        var names = Directory.GetFiles(SharedData.Path("models", "tiny"), "*.gguf").Select(System.IO.Path.GetFileName).ToHashSet();
        foreach (string type in new[] { "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K" })
            Assert.Contains($"tiny-{type}.gguf", names);
        Assert.Contains("tiny-tied-Q8_0.gguf", names);
        Assert.Contains("llama3-tiny-BF16.gguf", names);
    }

    [Theory]
    [MemberData(nameof(TinyFiles))]
    public void Tiny_file_holds_matrices_of_the_type_in_its_name_and_F32_vectors(string fileName)
    {
        string path = SharedData.Path("models", "tiny", fileName);
        using var f = GgufFile.Open(path);

        // The type is the file name's last part: tiny-Q4_K.gguf, tiny-tied-Q8_0.gguf, llama3-tiny-BF16.gguf.
        string typeName = System.IO.Path.GetFileNameWithoutExtension(fileName).Split('-')[^1];
        var named = QuantTable.All.Single(q => q.Name == typeName).Type;

        Assert.Equal("llama", f.GetString("general.architecture"));
        long layers = f.GetInt64("llama.block_count")!.Value;
        long dim = f.GetInt64("llama.embedding_length")!.Value;
        bool tied = fileName.Contains("-tied-", StringComparison.Ordinal);

        // Per layer 9 tensors; then token_embd, output_norm, rope_freqs and (untied only) output.
        Assert.Equal(9 * layers + (tied ? 3 : 4), f.Tensors.Count);
        Assert.Equal(tied, f.FindTensor("output.weight") is null);

        // --pure quantization (and the BF16 conversion) gives every matrix the named type; the norms and
        // rope_freqs stay F32.
        foreach (var t in f.Tensors)
        {
            var expected = t.Dimensions.Length == 1 ? GgmlType.F32 : named;
            Assert.True(expected == t.Type, $"{fileName}: {t.Name} is {t.Type}, expected {expected}");
        }
        Assert.Equal(2 + 7 * layers - (tied ? 1 : 0), f.Tensors.Count(t => t.Type == named && t.Dimensions.Length == 2));
        Assert.Equal(dim, f.FindTensor("token_embd.weight")!.Dimensions[0]);
        Assert.Equal(new[] { dim }, f.FindTensor("output_norm.weight")!.Dimensions);

        GgufAssert.LayoutIsSound(f);
    }
}

/// <summary>Read, write, read again: the bytes and the parsed contents come back unchanged.</summary>
public sealed class GgufRoundTripTests
{
    public static TheoryData<string> SharedGgufFiles()
    {
        var data = new TheoryData<string> { "models/stories260K.gguf", "reference/tokenizer/llamacpp/ggml-vocab-llama-spm.gguf" };
        foreach (string p in Directory.GetFiles(SharedData.Path("models", "tiny"), "*.gguf").Order(StringComparer.Ordinal))
            data.Add("models/tiny/" + System.IO.Path.GetFileName(p));
        return data;
    }

    [Theory]
    [MemberData(nameof(SharedGgufFiles))]
    public void Rewriting_a_shared_file_gives_identical_bytes_and_contents(string relativePath)
    {
        string path = SharedData.Path(relativePath.Split('/'));
        using var tmp = new TempDir();
        string copy = tmp.File("copy.gguf");

        using (var original = GgufFile.Open(path))
        {
            var writer = GgufWriter.FromFile(original);
            Assert.Equal(original.Alignment, writer.Alignment);
            writer.WriteFile(copy);

            using var again = GgufFile.Open(copy);
            GgufAssert.SameContents(original, again);
        }

        byte[] expected = File.ReadAllBytes(path);
        byte[] actual = File.ReadAllBytes(copy);
        Assert.Equal(expected.Length, actual.Length);
        int firstDifference = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(firstDifference == expected.Length, $"{relativePath}: first differing byte at {firstDifference}");
    }

    [Fact]
    public void Writing_to_a_stream_gives_the_same_bytes_as_writing_the_file()
    {
        string path = SharedData.Path("models", "stories260K.gguf");
        using var f = GgufFile.Open(path);
        using var ms = new MemoryStream();
        long n = GgufWriter.FromFile(f).Write(ms);
        Assert.Equal(f.FileLength, n);
        Assert.True(ms.ToArray().AsSpan().SequenceEqual(File.ReadAllBytes(path)));
    }

    [Fact]
    public void Edited_metadata_round_trips_and_keeps_tensors_intact()
    {
        string path = SharedData.Path("models", "stories260K.gguf");
        using var tmp = new TempDir();
        string copy = tmp.File("edited.gguf");
        using var f = GgufFile.Open(path);

        var w = GgufWriter.FromFile(f);
        w.SetMetadata("general.name", new GgufValue(GgufValueType.String, "renamed"));
        Assert.True(w.RemoveMetadata("tokenizer.ggml.seperator_token_id"));
        Assert.False(w.RemoveMetadata("tokenizer.ggml.seperator_token_id"));
        w.SetMetadata("general.alignment", new GgufValue(GgufValueType.UInt32, 128u));
        w.WriteFile(copy);

        using var g = GgufFile.Open(copy);
        Assert.Equal("renamed", g.GetString("general.name"));
        Assert.Null(g.Find("tokenizer.ggml.seperator_token_id"));
        Assert.Equal(128, g.Alignment);
        Assert.Equal(0, g.DataOffset % 128);
        // general.name kept its place; general.alignment went to the end.
        Assert.Equal(f.MetadataKeys.ToList().IndexOf("general.name"), g.MetadataKeys.ToList().IndexOf("general.name"));
        Assert.Equal("general.alignment", g.MetadataKeys[^1]);
        Assert.Equal(f.Tensors.Count, g.Tensors.Count);
        foreach (var t in f.Tensors)
        {
            var u = g.FindTensor(t.Name)!;
            Assert.Equal(0, u.Offset % 128);
            Assert.True(f.GetTensorBytes(t).SequenceEqual(g.GetTensorBytes(u)), t.Name);
        }
        GgufAssert.LayoutIsSound(g);
    }
}

/// <summary>The writer on values and tensors built by hand.</summary>
public sealed class GgufWriterTests
{
    /// <summary>One value of every type, edge values, empty strings and arrays, arrays of arrays.</summary>
    internal static GgufWriter AllValueTypes(uint version = 3)
    {
        var w = new GgufWriter(version);
        void Add(string key, GgufValueType type, object value) => w.AddMetadata(key, new GgufValue(type, value));
        GgufArray Arr<T>(GgufValueType et, params T[] items) => new(et, items);

        Add("general.architecture", GgufValueType.String, "llama");
        Add("t.u8", GgufValueType.UInt8, (byte)255);
        Add("t.i8", GgufValueType.Int8, (sbyte)-128);
        Add("t.u16", GgufValueType.UInt16, ushort.MaxValue);
        Add("t.i16", GgufValueType.Int16, short.MinValue);
        Add("t.u32", GgufValueType.UInt32, uint.MaxValue);
        Add("t.i32", GgufValueType.Int32, int.MinValue);
        Add("t.f32", GgufValueType.Float32, -0.0f);
        Add("t.f32.nan", GgufValueType.Float32, float.NaN);
        Add("t.f32.tiny", GgufValueType.Float32, float.Epsilon);
        Add("t.bool.true", GgufValueType.Bool, true);
        Add("t.bool.false", GgufValueType.Bool, false);
        Add("t.str", GgufValueType.String, "héllo ✓ 𝄞 \0 tab\t");
        Add("t.str.empty", GgufValueType.String, "");
        Add("t.u64", GgufValueType.UInt64, ulong.MaxValue);
        Add("t.i64", GgufValueType.Int64, long.MinValue);
        Add("t.f64", GgufValueType.Float64, Math.PI);
        Add("a.u8", GgufValueType.Array, Arr<byte>(GgufValueType.UInt8, 0, 1, 255));
        Add("a.i8", GgufValueType.Array, Arr<sbyte>(GgufValueType.Int8, -1, 0, 127));
        Add("a.u16", GgufValueType.Array, Arr<ushort>(GgufValueType.UInt16, 1, 65535));
        Add("a.i16", GgufValueType.Array, Arr<short>(GgufValueType.Int16, -32768, 7));
        Add("a.u32", GgufValueType.Array, Arr<uint>(GgufValueType.UInt32, 0, uint.MaxValue));
        Add("a.i32", GgufValueType.Array, Arr<int>(GgufValueType.Int32, -5, 5, int.MaxValue));
        Add("a.f32", GgufValueType.Array, Arr<float>(GgufValueType.Float32, 1.5f, float.NegativeInfinity, float.NaN));
        Add("a.bool", GgufValueType.Array, Arr<bool>(GgufValueType.Bool, true, false, true));
        Add("a.str", GgufValueType.Array, Arr<string>(GgufValueType.String, "", "a", "", "ü"));
        Add("a.u64", GgufValueType.Array, Arr<ulong>(GgufValueType.UInt64, ulong.MaxValue));
        Add("a.i64", GgufValueType.Array, Arr<long>(GgufValueType.Int64, long.MinValue, 0));
        Add("a.f64", GgufValueType.Array, Arr<double>(GgufValueType.Float64, double.Epsilon, -1e300));
        Add("a.empty.u8", GgufValueType.Array, Arr<byte>(GgufValueType.UInt8));
        Add("a.empty.str", GgufValueType.Array, Arr<string>(GgufValueType.String));
        Add("a.empty.arr", GgufValueType.Array, Arr<GgufArray>(GgufValueType.Array));
        Add("a.nested", GgufValueType.Array, Arr(GgufValueType.Array,
            Arr<int>(GgufValueType.Int32, 1, 2, 3),
            Arr<string>(GgufValueType.String, "x", ""),
            Arr<byte>(GgufValueType.UInt8),
            Arr(GgufValueType.Array, Arr<bool>(GgufValueType.Bool, false), Arr<GgufArray>(GgufValueType.Array)),
            Arr<double>(GgufValueType.Float64, 2.5)));
        // The deepest nesting the reader takes: 8 array levels.
        var deep = Arr<long>(GgufValueType.Int64, 42);
        for (int i = 1; i < GgufWriter.MaxArrayDepth; i++) deep = Arr(GgufValueType.Array, deep);
        Add("a.deep", GgufValueType.Array, deep);
        return w;
    }

    [Theory]
    [InlineData(3u)]
    [InlineData(2u)]
    public void Every_value_type_round_trips_in_order(uint version)
    {
        var w = AllValueTypes(version);
        using var tmp = new TempDir();
        string path = tmp.File("values.gguf");
        w.WriteFile(path);

        using var f = GgufFile.Open(path);
        Assert.Equal(version, f.Version);
        Assert.Equal(w.MetadataKeys, f.MetadataKeys);
        foreach (string key in w.MetadataKeys)
            GgufAssert.SameValue(w.Metadata[key], f.Metadata[key], key);
        Assert.Empty(f.Tensors);

        // Spot checks through the typed getters.
        Assert.Equal("héllo ✓ 𝄞 \0 tab\t", f.GetString("t.str"));
        Assert.Equal("", f.GetString("t.str.empty"));
        Assert.Equal(uint.MaxValue, (uint)f.GetInt64("t.u32")!.Value);
        Assert.True(float.IsNegative((float)f.Metadata["t.f32"].Value));
        Assert.True(float.IsNaN((float)f.Metadata["t.f32.nan"].Value));
        Assert.Equal(new[] { "", "a", "", "ü" }, f.GetArray<string>("a.str"));
        Assert.Empty(f.GetArray<GgufArray>("a.empty.arr")!);
        var nested = f.GetArray<GgufArray>("a.nested")!;
        Assert.Equal(5, nested.Length);
        Assert.Equal(new[] { 1, 2, 3 }, (int[])nested[0].Items);
        Assert.Empty((GgufArray[])((GgufArray[])nested[3].Items)[1].Items);
        var deep = (GgufArray)f.Metadata["a.deep"].Value;
        for (int i = 1; i < GgufWriter.MaxArrayDepth; i++) deep = ((GgufArray[])deep.Items)[0];
        Assert.Equal(new[] { 42L }, (long[])deep.Items);

        // No tensors: the file ends right after the header, unpadded (gguf-py's vocabulary-only files do this).
        Assert.Equal(new FileInfo(path).Length, w.Write(Stream.Null));
    }

    [Fact]
    public void Rewriting_a_written_file_is_byte_identical()
    {
        var w = AllValueTypes();
        w.AddTensor("a", [3], GgmlType.F32, new byte[12]);
        using var tmp = new TempDir();
        string first = tmp.File("first.gguf"), second = tmp.File("second.gguf");
        w.WriteFile(first);
        using (var f = GgufFile.Open(first))
            GgufWriter.FromFile(f).WriteFile(second);
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }

    [Fact]
    public void Tensors_are_aligned_to_a_non_default_alignment_and_padded_with_zeros()
    {
        var rng = new Random(7);
        byte[] Bytes(int n) { var b = new byte[n]; rng.NextBytes(b); return b; }
        var tensors = new (string Name, long[] Dims, GgmlType Type, byte[] Data)[]
        {
            ("odd.f32", [3], GgmlType.F32, Bytes(12)),
            ("blocks.q8_0", [32, 2], GgmlType.Q8_0, Bytes(2 * 34)),
            ("half", [5, 1, 1, 1], GgmlType.F16, Bytes(10)),
            ("super.q4_k", [256, 3], GgmlType.Q4_K, Bytes(3 * 144)),
            ("exact.f32", [16], GgmlType.F32, Bytes(64)),
        };

        var w = new GgufWriter();
        w.AddMetadata("general.architecture", new GgufValue(GgufValueType.String, "test"));
        w.AddMetadata("general.alignment", new GgufValue(GgufValueType.UInt32, 64u));
        Assert.Equal(64, w.Alignment);
        foreach (var t in tensors)
        {
            if (t.Name == "half")
                w.AddTensor(t.Name, t.Dims, t.Type, s => { s.Write(t.Data, 0, 4); s.Write(t.Data.AsSpan(4)); });
            else
                w.AddTensor(t.Name, t.Dims, t.Type, t.Data);
        }
        Assert.Equal(new long[] { 0, 64, 192, 256, 704 }, w.Tensors.Select(t => t.Offset));

        using var tmp = new TempDir();
        string path = tmp.File("aligned.gguf");
        w.WriteFile(path);
        byte[] file = File.ReadAllBytes(path);

        using var f = GgufFile.Open(path);
        Assert.Equal(64, f.Alignment);
        Assert.Equal(0, f.DataOffset % 64);
        Assert.Equal(0, f.FileLength % 64);
        Assert.Equal(f.DataOffset + 704 + 64, f.FileLength);
        Assert.Equal(tensors.Length, f.Tensors.Count);
        long end = f.DataOffset;
        for (int i = 0; i < tensors.Length; i++)
        {
            var (name, dims, type, data) = tensors[i];
            var t = f.Tensors[i];
            Assert.Equal(name, t.Name);
            Assert.Equal(dims, t.Dimensions);
            Assert.Equal(type, t.Type);
            Assert.Equal(w.Tensors[i].Offset, t.Offset);
            Assert.Equal(0, t.Offset % 64);
            Assert.Equal(data, f.GetTensorBytes(t).ToArray());
            // Everything between the previous tensor's end and this one's start is zero padding.
            long start = f.DataOffset + t.Offset;
            Assert.All(file[(int)end..(int)start], b => Assert.Equal(0, b));
            end = start + t.ByteSize;
        }
        Assert.All(file[(int)end..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void Bad_tensors_are_rejected_with_the_tensor_named()
    {
        var w = new GgufWriter();
        w.AddTensor("ok", [4], GgmlType.F32, new byte[16]);

        var e = Assert.Throws<ArgumentException>(() => w.AddTensor("short", [4], GgmlType.F32, new byte[15]));
        Assert.Contains("'short'", e.Message);
        Assert.Contains("16", e.Message);
        Assert.Contains("15", e.Message);
        e = Assert.Throws<ArgumentException>(() => w.AddTensor("ok", [4], GgmlType.F32, new byte[16]));
        Assert.Contains("already present", e.Message);
        e = Assert.Throws<ArgumentException>(() => w.AddTensor("q", [31], GgmlType.Q4_0, new byte[18]));
        Assert.Contains("block size 32", e.Message);
        e = Assert.Throws<ArgumentException>(() => w.AddTensor("weird", [4], (GgmlType)99, new byte[16]));
        Assert.Contains("99", e.Message);
        e = Assert.Throws<ArgumentException>(() => w.AddTensor("zero", [4, 0], GgmlType.F32, ReadOnlyMemory<byte>.Empty));
        Assert.Contains("dimension 1 = 0", e.Message);
        e = Assert.Throws<ArgumentException>(() => w.AddTensor("five", [1, 1, 1, 1, 1], GgmlType.F32, new byte[4]));
        Assert.Contains("5 dimensions", e.Message);
        Assert.Throws<ArgumentException>(() => w.AddTensor("none", [], GgmlType.F32, ReadOnlyMemory<byte>.Empty));
        e = Assert.Throws<ArgumentException>(() => w.AddTensor("huge", [1L << 40, 1L << 40], GgmlType.F32, ReadOnlyMemory<byte>.Empty));
        Assert.Contains("impossibly large", e.Message);
        Assert.Throws<ArgumentException>(() => w.AddTensor(new string('n', 64), [1], GgmlType.F32, new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("", [1], GgmlType.F32, new byte[4]));
        Assert.Single(w.Tensors);
    }

    [Fact]
    public void A_data_callback_that_writes_the_wrong_size_fails_the_write()
    {
        var tooFew = new GgufWriter();
        tooFew.AddTensor("t", [8], GgmlType.F32, s => s.Write(new byte[31]));
        var e = Assert.Throws<InvalidOperationException>(() => tooFew.Write(new MemoryStream()));
        Assert.Contains("'t'", e.Message);

        var tooMany = new GgufWriter();
        tooMany.AddTensor("t", [8], GgmlType.F32, s => s.Write(new byte[33]));
        Assert.Throws<InvalidOperationException>(() => tooMany.Write(new MemoryStream()));

        // A failed WriteFile leaves nothing behind.
        using var tmp = new TempDir();
        Assert.Throws<InvalidOperationException>(() => tooFew.WriteFile(tmp.File("partial.gguf")));
        Assert.Empty(Directory.GetFiles(tmp.Path));
    }

    [Fact]
    public void Bad_metadata_is_rejected_with_the_key_named()
    {
        var w = new GgufWriter();
        w.AddMetadata("k", new GgufValue(GgufValueType.UInt32, 1u));

        Assert.Contains("already present", Assert.Throws<ArgumentException>(() => w.AddMetadata("k", new GgufValue(GgufValueType.UInt32, 2u))).Message);
        var e = Assert.Throws<ArgumentException>(() => w.AddMetadata("wrong", new GgufValue(GgufValueType.UInt32, 5)));
        Assert.Contains("'wrong'", e.Message);
        Assert.Contains("UInt32", e.Message);
        Assert.Throws<ArgumentException>(() => w.AddMetadata("arr", new GgufValue(GgufValueType.Array, new int[] { 1 })));
        Assert.Throws<ArgumentException>(() => w.AddMetadata("arr", new GgufValue(GgufValueType.Array, new GgufArray(GgufValueType.UInt32, new int[] { 1 }))));
        Assert.Throws<ArgumentException>(() => w.AddMetadata("arr", new GgufValue(GgufValueType.Array, new GgufArray(GgufValueType.String, new string[] { "a", null! }))));
        Assert.Contains("13", Assert.Throws<ArgumentException>(() => w.AddMetadata("unk", new GgufValue((GgufValueType)13, 1))).Message);
        Assert.Contains("13", Assert.Throws<ArgumentException>(() => w.AddMetadata("unk", new GgufValue(GgufValueType.Array, new GgufArray((GgufValueType)13, new int[0])))).Message);
        Assert.Throws<ArgumentException>(() => w.AddMetadata("", new GgufValue(GgufValueType.UInt32, 1u)));

        var tooDeep = new GgufArray(GgufValueType.UInt8, new byte[] { 1 });
        for (int i = 0; i < GgufWriter.MaxArrayDepth; i++) tooDeep = new GgufArray(GgufValueType.Array, new[] { tooDeep });
        Assert.Contains("deeper", Assert.Throws<ArgumentException>(() => w.AddMetadata("deep", new GgufValue(GgufValueType.Array, tooDeep))).Message);

        foreach (object bad in new object[] { 48u, 0u, 1u << 21, "32", 32.0f })
        {
            var type = bad switch { uint => GgufValueType.UInt32, string => GgufValueType.String, _ => GgufValueType.Float32 };
            Assert.Throws<ArgumentException>(() => w.SetMetadata("general.alignment", new GgufValue(type, bad)));
        }
        Assert.Equal(32, w.Alignment);
        Assert.Equal(new[] { "k" }, w.MetadataKeys);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufWriter(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufWriter(4));
    }
}

/// <summary>Malformed files: always a <see cref="ModelFormatException"/> naming the file, never another exception.</summary>
public sealed class GgufBadInputTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static ModelFormatException OpenFails(string path, string? because = null)
    {
        var ex = Record.Exception(() => GgufFile.Open(path).Dispose());
        if (ex is not ModelFormatException mfe)
            throw new Xunit.Sdk.XunitException($"{because}: expected ModelFormatException, got {(ex is null ? "success" : ex.ToString())}");
        Assert.Equal(path, mfe.FilePath);
        Assert.Contains(path, mfe.Message);
        return mfe;
    }

    private static ModelFormatException OpenFails(byte[] bytes, TempDir tmp, string name)
    {
        string path = tmp.File(name);
        File.WriteAllBytes(path, bytes);
        return OpenFails(path, name);
    }

    [Fact]
    public void A_missing_file_is_FileNotFoundException_naming_the_path()
    {
        using var tmp = new TempDir();
        string path = tmp.File("absent.gguf");
        var e = Assert.Throws<FileNotFoundException>(() => GgufFile.Open(path));
        Assert.Equal(path, e.FileName);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Bad_magic_is_rejected()
    {
        using var tmp = new TempDir();
        byte[] bytes = File.ReadAllBytes(SharedData.Path("models", "stories260K.gguf"))[..4096];
        bytes[3] = (byte)'X';
        Assert.Contains("magic", OpenFails(bytes, tmp, "magic.gguf").Message);
        Assert.Contains("magic", OpenFails(Encoding.UTF8.GetBytes("this is a text file, not a model at all\n"), tmp, "text.gguf").Message);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(1u)]
    [InlineData(4u)]
    [InlineData(0x03000000u)] // a big-endian file's version 3
    public void Unsupported_versions_are_rejected(uint version)
    {
        using var tmp = new TempDir();
        byte[] bytes = File.ReadAllBytes(SharedData.Path("models", "stories260K.gguf"));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), version);
        Assert.Contains($"version {version}", OpenFails(bytes, tmp, "version.gguf").Message);
    }

    [Fact]
    public void Truncated_copies_are_rejected_at_every_cut()
    {
        string source = SharedData.Path("models", "stories260K.gguf");
        byte[] bytes = File.ReadAllBytes(source);
        long dataOffset;
        using (var f = GgufFile.Open(source)) dataOffset = f.DataOffset;

        var cuts = new SortedSet<long>();
        for (long c = 0; c <= 64; c++) cuts.Add(c);                               // magic, version, counts, first key
        for (long c = 64; c < dataOffset; c += 97) cuts.Add(c);                   // all through the metadata and tensor infos
        for (long c = dataOffset - 48; c < dataOffset + 8; c++) cuts.Add(c);      // end of the header and its padding
        foreach (long c in new[] { dataOffset + 1000, bytes.Length / 2, bytes.Length - 257, bytes.Length - 1 }) cuts.Add(c);

        using var tmp = new TempDir();
        string path = tmp.File("cut.gguf");
        foreach (long cut in cuts)
        {
            File.WriteAllBytes(path, bytes[..(int)cut]);
            OpenFails(path, $"cut at {cut}");
        }
        Assert.Contains("past the end", OpenFails(path, "last cut").Message);
    }

    [Fact]
    public void Huge_counts_and_lengths_are_rejected_without_allocating_them()
    {
        using var tmp = new TempDir();
        const ulong Huge = 1UL << 60;
        // Each header is followed by 64 spare bytes, so the counts before the huge one are plausible.
        var cases = new List<(string Name, Raw Raw, string Says)>
        {
            ("tensor count", Raw.Header(tensors: Huge, kvs: 0), "tensor count"),
            ("metadata count", Raw.Header(tensors: 0, kvs: Huge), "metadata count"),
            ("key length", Raw.Header(0, 1).U64(Huge), "string of"),
            ("key length max", Raw.Header(0, 1).U64(ulong.MaxValue), "string of"),
            ("string value", Raw.Header(0, 1).Str("k").U32(8).U64(Huge), "string of"),
            ("u8 array", Raw.Header(0, 1).Str("k").U32(9).U32(0).U64(Huge), "array length"),
            ("u64 array", Raw.Header(0, 1).Str("k").U32(9).U32(10).U64(Huge), "array length"),
            ("string array", Raw.Header(0, 1).Str("k").U32(9).U32(8).U64(Huge), "array length"),
            ("array array", Raw.Header(0, 1).Str("k").U32(9).U32(9).U64(Huge), "array length"),
            ("inner array", Raw.Header(0, 1).Str("k").U32(9).U32(9).U64(1).U32(4).U64(Huge), "array length"),
            ("array element string", Raw.Header(0, 1).Str("k").U32(9).U32(8).U64(1).U64(Huge), "string of"),
            ("tensor name", Raw.Header(1, 0).U64(Huge), "string of"),
        };
        foreach (var (name, raw, says) in cases)
        {
            byte[] bytes = raw.Zeros(64).Bytes();
            long before = GC.GetAllocatedBytesForCurrentThread();
            var e = OpenFails(bytes, tmp, name.Replace(' ', '_') + ".gguf");
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(e.Message.Contains(says, StringComparison.Ordinal), $"{name}: {e.Message}");
            Assert.True(allocated < 1 << 20, $"{name}: {allocated} bytes allocated");
        }
    }

    [Fact]
    public void Lengths_past_2_GiB_in_a_file_that_holds_them_are_rejected()
    {
        // A sparse file a little over 2 GiB: the lengths fit in the file but not in a .NET string or array.
        using var tmp = new TempDir();
        const ulong Long = (1UL << 31) + 8;
        foreach (var (name, raw, says) in new[]
        {
            ("string", Raw.Header(0, 1).U64(Long), "too long"),
            ("array", Raw.Header(0, 1).Str("k").U32(9).U32(0).U64(Long), "too large"),
        })
        {
            string path = tmp.File(name + ".gguf");
            using (var fs = new FileStream(path, FileMode.CreateNew))
            {
                fs.Write(raw.Bytes());
                fs.SetLength((1L << 31) + 4096);
            }
            var e = OpenFails(path, name);
            Assert.True(e.Message.Contains(says, StringComparison.Ordinal), $"{name}: {e.Message}");
            File.Delete(path);
        }
    }

    [Fact]
    public void An_unknown_tensor_type_names_the_tensor_and_the_type()
    {
        using var tmp = new TempDir();
        var bytes = Raw.Header(1, 0).Tensor("blk.0.mystery.weight", [32], 99, 0).Pad(32).Zeros(128).Bytes();
        var e = OpenFails(bytes, tmp, "type99.gguf");
        Assert.Contains("blk.0.mystery.weight", e.Message);
        Assert.Contains("99", e.Message);
    }

    [Fact]
    public void Unknown_metadata_value_types_name_the_key_and_the_type()
    {
        using var tmp = new TempDir();
        var e = OpenFails(Raw.Header(0, 1).Str("my.key").U32(13).U64(0).Bytes(), tmp, "value13.gguf");
        Assert.Contains("my.key", e.Message);
        Assert.Contains("13", e.Message);
        e = OpenFails(Raw.Header(0, 1).Str("my.array").U32(9).U32(77).U64(0).U64(0).Bytes(), tmp, "element77.gguf");
        Assert.Contains("my.array", e.Message);
        Assert.Contains("77", e.Message);
    }

    [Fact]
    public void Other_malformed_headers_are_rejected()
    {
        using var tmp = new TempDir();
        var data = new byte[64];
        var cases = new (string Name, byte[] Bytes, string Says)[]
        {
            ("bool2", Raw.Header(0, 1).Str("b").U32(7).U8(2).Zeros(16).Bytes(), "bool"),
            ("dupkey", Raw.Header(0, 2).Str("k").U32(4).U32(1).Str("k").U32(4).U32(2).Zeros(8).Bytes(), "twice"),
            ("align48", Raw.Header(0, 1).Str("general.alignment").U32(4).U32(48).Zeros(8).Bytes(), "alignment"),
            ("alignstr", Raw.Header(0, 1).Str("general.alignment").U32(8).Str("32").Zeros(8).Bytes(), "alignment"),
            ("dims0", Raw.Header(1, 0).Str("t").U32(0).U32(0).U64(0).Pad(32).Bytes(), "dimensions"),
            ("dims5", Raw.Header(1, 0).Tensor("t", [1, 1, 1, 1, 1], 0, 0).Pad(32).Zeros(64).Bytes(), "dimensions"),
            ("dimzero", Raw.Header(1, 0).Tensor("t", [4, 0], 0, 0).Pad(32).Zeros(64).Bytes(), "dimension 1"),
            ("unaligned", Raw.Header(1, 0).Tensor("t", [4], 0, 4).Pad(32).Zeros(64).Bytes(), "aligned"),
            ("offsetpast", Raw.Header(1, 0).Tensor("t", [4], 0, 1 << 30).Pad(32).Zeros(64).Bytes(), "past the end"),
            ("block", Raw.Header(1, 0).Tensor("t", [31], 2, 0).Pad(32).Zeros(64).Bytes(), "block size"),
            ("duptensor", Raw.Header(2, 0).Tensor("t", [4], 0, 0).Tensor("t", [4], 0, 32).Pad(32).Zeros(64).Bytes(), "twice"),
            // 2^20 x 2^20 x (2^31 - 1) elements: the product overflows 64 bits; must not wrap to a small size.
            ("overflow", Raw.Header(1, 0).Tensor("t", [1 << 20, 1 << 20, int.MaxValue], 0, 0).Pad(32).Zeros(64).Bytes(), "impossibly large"),
            ("overflow4", Raw.Header(1, 0).Tensor("t", [int.MaxValue, int.MaxValue, int.MaxValue, int.MaxValue], 0, 0).Pad(32).Zeros(64).Bytes(), "impossibly large"),
        };
        foreach (var (name, bytes, says) in cases)
            Assert.Contains(says, OpenFails(bytes, tmp, name + ".gguf").Message);

        // Nesting: 8 levels read, 9 do not.
        Raw Nested(int levels)
        {
            var r = Raw.Header(0, 1).Str("deep").U32(9);
            for (int i = 1; i < levels; i++) r.U32(9).U64(1);
            return r.U32(0).U64(1).U8(7);
        }
        string ok = tmp.File("nest8.gguf");
        File.WriteAllBytes(ok, Nested(8).Zeros(8).Bytes());
        using (var f = GgufFile.Open(ok)) Assert.Single(f.MetadataKeys);
        Assert.Contains("deeper", OpenFails(Nested(9).Zeros(8).Bytes(), tmp, "nest9.gguf").Message);
    }

    [Fact]
    public void Fuzzed_headers_of_stories260K_open_or_throw_ModelFormatException()
    {
        string source = SharedData.Path("models", "stories260K.gguf");
        byte[] original = File.ReadAllBytes(source);
        int dataOffset, tensorInfoStart;
        using (var f = GgufFile.Open(source))
        {
            dataOffset = (int)f.DataOffset;
            int infoBytes = f.Tensors.Sum(t => 8 + Encoding.UTF8.GetByteCount(t.Name) + 4 + 8 * t.Dimensions.Length + 4 + 8);
            tensorInfoStart = dataOffset - (int)f.Alignment - infoBytes;
        }
        // The first 4 KB (counts, the first keys, the token strings) and the tensor infos at the end of the header.
        var (opened, rejected, failures) = Fuzz(original, dataOffset, [(0, 4096), (tensorInfoStart, dataOffset)], seed: 260, iterations: 2000);
        output.WriteLine($"{opened} mutants opened, {rejected} rejected, {failures.Count} failures");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures.Take(5)));
        Assert.True(opened > 0, "no mutant opened: the fuzzer only tests rejection");
        Assert.True(rejected > 0, "no mutant was rejected: the fuzzer mutates nothing that matters");
    }

    [Fact]
    public void Fuzzed_copies_of_a_file_with_every_value_type_open_or_throw_ModelFormatException()
    {
        var w = GgufWriterTests.AllValueTypes();
        w.AddTensor("t", [8], GgmlType.F32, new byte[32]);
        var ms = new MemoryStream();
        w.Write(ms);
        byte[] original = ms.ToArray();
        var (opened, rejected, failures) = Fuzz(original, original.Length, [(0, original.Length)], seed: 99, iterations: 2000);
        output.WriteLine($"{opened} mutants opened, {rejected} rejected, {failures.Count} failures");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures.Take(5)));
        Assert.True(opened > 0);
        Assert.True(rejected > 0);
    }

    /// <summary>
    /// Mutates the first <paramref name="headerLength"/> bytes of <paramref name="original"/> inside
    /// <paramref name="regions"/> (bit flips, random bytes, boundary bytes, boundary 32/64-bit values) and opens
    /// each mutant; any exception other than <see cref="ModelFormatException"/> is a failure.
    /// </summary>
    private static (int Opened, int Rejected, List<string> Failures) Fuzz(
        byte[] original, int headerLength, (int Start, int End)[] regions, int seed, int iterations)
    {
        byte[] boundaryBytes = [0, 1, 0x7F, 0x80, 0xFE, 0xFF];
        ulong[] boundaryWords = [0, 1, 2, 4, 13, 31, 32, 33, 63, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1UL << 32, 1UL << 40, 1UL << 60, long.MaxValue, ulong.MaxValue];
        using var tmp = new TempDir();
        string path = tmp.File("fuzz.gguf");
        File.WriteAllBytes(path, original);
        var rng = new Random(seed);
        var mutant = new byte[headerLength];
        int opened = 0, rejected = 0;
        var failures = new List<string>();

        for (int i = 0; i < iterations; i++)
        {
            original.AsSpan(0, headerLength).CopyTo(mutant);
            int edits = 1 + rng.Next(rng.Next(2) == 0 ? 2 : 8);
            var log = new StringBuilder();
            for (int e = 0; e < edits; e++)
            {
                var (start, end) = regions[rng.Next(regions.Length)];
                // A quarter of the edits hit the fixed header fields (magic, version, counts, first key).
                int pos = rng.Next(4) == 0 ? rng.Next(Math.Min(48, headerLength)) : rng.Next(start, end);
                switch (rng.Next(4))
                {
                    case 0: mutant[pos] ^= (byte)(1 << rng.Next(8)); break;
                    case 1: mutant[pos] = (byte)rng.Next(256); break;
                    case 2: mutant[pos] = boundaryBytes[rng.Next(boundaryBytes.Length)]; break;
                    default:
                        pos = Math.Min(pos, headerLength - 8);
                        ulong v = boundaryWords[rng.Next(boundaryWords.Length)];
                        if (rng.Next(2) == 0) BinaryPrimitives.WriteUInt64LittleEndian(mutant.AsSpan(pos), v);
                        else BinaryPrimitives.WriteUInt32LittleEndian(mutant.AsSpan(pos), (uint)v);
                        break;
                }
                log.Append($" @{pos}");
            }
            using (var h = File.OpenHandle(path, FileMode.Open, FileAccess.Write))
                RandomAccess.Write(h, mutant, 0);

            try
            {
                using var f = GgufFile.Open(path);
                opened++;
                // Whatever opens must be usable: every value printable, every tensor's bytes inside the file.
                foreach (string key in f.MetadataKeys) _ = f.Metadata[key].ToString();
                foreach (var t in f.Tensors)
                {
                    if (f.GetTensorBytes(t).Length != t.ByteSize || t.ByteSize < 0 || f.DataOffset + t.Offset + t.ByteSize > f.FileLength)
                        failures.Add($"iteration {i} (edits{log}): tensor '{t.Name}' lies outside the file");
                }
            }
            catch (ModelFormatException ex)
            {
                rejected++;
                if (!ex.Message.Contains(path, StringComparison.Ordinal))
                    failures.Add($"iteration {i} (edits{log}): message does not name the file: {ex.Message}");
            }
            catch (Exception ex)
            {
                failures.Add($"iteration {i} (edits{log}): {ex}");
            }
        }
        return (opened, rejected, failures);
    }
}

/// <summary>Shared assertions on parsed GGUF files.</summary>
internal static class GgufAssert
{
    /// <summary>Sizes agree with the quant table; tensors are aligned, inside the file and do not overlap.</summary>
    public static void LayoutIsSound(GgufFile f)
    {
        Assert.Equal(0, f.DataOffset % f.Alignment);
        long previousEnd = 0;
        foreach (var t in f.Tensors.OrderBy(t => t.Offset))
        {
            var q = QuantTable.Get(t.Type);
            Assert.Equal(0, t.Dimensions[0] % q.BlockSize);
            Assert.Equal(t.ElementCount / q.BlockSize * q.BytesPerBlock, t.ByteSize);
            Assert.Equal(0, t.Offset % f.Alignment);
            Assert.True(t.Offset >= previousEnd, $"{t.Name} overlaps the tensor before it");
            Assert.True(f.DataOffset + t.Offset + t.ByteSize <= f.FileLength, $"{t.Name} runs past the end");
            Assert.Equal(t.ByteSize, f.GetTensorBytes(t).Length);
            previousEnd = t.Offset + t.ByteSize;
        }
    }

    /// <summary>Same version, alignment, metadata (keys in order, values deeply equal) and tensors (infos and bytes).</summary>
    public static void SameContents(GgufFile expected, GgufFile actual)
    {
        Assert.Equal(expected.Version, actual.Version);
        Assert.Equal(expected.Alignment, actual.Alignment);
        Assert.Equal(expected.DataOffset, actual.DataOffset);
        Assert.Equal(expected.MetadataKeys, actual.MetadataKeys);
        foreach (string key in expected.MetadataKeys)
            SameValue(expected.Metadata[key], actual.Metadata[key], key);
        Assert.Equal(expected.Tensors.Count, actual.Tensors.Count);
        for (int i = 0; i < expected.Tensors.Count; i++)
        {
            var e = expected.Tensors[i];
            var a = actual.Tensors[i];
            Assert.Equal(e.Name, a.Name);
            Assert.Equal(e.Dimensions, a.Dimensions);
            Assert.Equal(e.Type, a.Type);
            Assert.Equal(e.Offset, a.Offset);
            Assert.Equal(e.ByteSize, a.ByteSize);
            Assert.True(expected.GetTensorBytes(e).SequenceEqual(actual.GetTensorBytes(a)), $"{e.Name}: data differs");
        }
    }

    /// <summary>Same type and value; arrays compared element by element, recursively.</summary>
    public static void SameValue(GgufValue expected, GgufValue actual, string key)
    {
        Assert.True(expected.Type == actual.Type, $"{key}: type {actual.Type}, expected {expected.Type}");
        if (expected.Value is GgufArray ea)
            SameArray(ea, Assert.IsType<GgufArray>(actual.Value), key);
        else
            Assert.True(expected.Value.Equals(actual.Value) && expected.Value.GetType() == actual.Value.GetType(),
                $"{key}: {actual.Value} ({actual.Value.GetType().Name}), expected {expected.Value} ({expected.Value.GetType().Name})");
    }

    private static void SameArray(GgufArray expected, GgufArray actual, string key)
    {
        Assert.True(expected.ElementType == actual.ElementType, $"{key}: element type {actual.ElementType}, expected {expected.ElementType}");
        Assert.Equal(expected.Items.GetType(), actual.Items.GetType());
        Assert.True(expected.Count == actual.Count, $"{key}: {actual.Count} items, expected {expected.Count}");
        if (expected.Items is GgufArray[] inner)
        {
            var other = (GgufArray[])actual.Items;
            for (int i = 0; i < inner.Length; i++)
                SameArray(inner[i], other[i], $"{key}[{i}]");
        }
        else
        {
            for (int i = 0; i < expected.Count; i++)
            {
                object? e = expected.Items.GetValue(i), a = actual.Items.GetValue(i);
                Assert.True(Equals(e, a), $"{key}[{i}]: {a}, expected {e}");
            }
        }
    }
}

/// <summary>A temporary folder, deleted with its contents on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "llama3-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Raw little-endian GGUF bytes written field by field, for headers no writer would produce.</summary>
internal sealed class Raw
{
    private readonly MemoryStream _ms = new();

    public static Raw Header(ulong tensors, ulong kvs, uint version = 3) =>
        new Raw().U32(0x46554747).U32(version).U64(tensors).U64(kvs);

    public Raw U8(byte v) { _ms.WriteByte(v); return this; }
    public Raw U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); _ms.Write(b); return this; }
    public Raw U64(ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); _ms.Write(b); return this; }
    public Raw Str(string s) { var b = Encoding.UTF8.GetBytes(s); U64((ulong)b.Length); _ms.Write(b); return this; }
    public Raw Zeros(int n) { _ms.Write(new byte[n]); return this; }
    public Raw Pad(int alignment) => Zeros((int)((alignment - _ms.Length % alignment) % alignment));

    public Raw Tensor(string name, long[] dims, uint type, ulong offset)
    {
        Str(name).U32((uint)dims.Length);
        foreach (long d in dims) U64((ulong)d);
        return U32(type).U64(offset);
    }

    public byte[] Bytes() => _ms.ToArray();
}
