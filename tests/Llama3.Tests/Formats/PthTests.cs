using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Llama3.Formats;
using Llama3.Formats.Pth;

namespace Llama3.Tests.Formats;

/// <summary>Reading Meta's checkpoints in the shared data, cross-checked against the Hugging Face copies.</summary>
public sealed class PthReadTests(Xunit.Abstractions.ITestOutputHelper output)
{
    internal static string Model(params string[] parts) => SharedData.Path(["models", .. parts]);

    /// <summary>The hyperparameters of a Meta params.json, with the FFN size as Meta's model.py derives it.</summary>
    private sealed record Params(int Dim, int Layers, int Heads, int KvHeads, int Vocab, int Hidden)
    {
        public int HeadDim => Dim / Heads;

        public static Params Read(string path)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var r = doc.RootElement;
            int dim = r.GetProperty("dim").GetInt32();
            // FeedForward in Meta's model.py: hidden = 4 * dim; hidden = int(2 * hidden / 3);
            // hidden = int(ffn_dim_multiplier * hidden); hidden = multiple_of * ceil(hidden / multiple_of).
            int multipleOf = r.GetProperty("multiple_of").GetInt32();
            int hidden = 2 * (4 * dim) / 3;
            if (r.TryGetProperty("ffn_dim_multiplier", out var m) && m.ValueKind == JsonValueKind.Number)
                hidden = (int)(m.GetDouble() * hidden);
            hidden = multipleOf * ((hidden + multipleOf - 1) / multipleOf);
            int heads = r.GetProperty("n_heads").GetInt32();
            return new Params(dim, r.GetProperty("n_layers").GetInt32(), heads,
                r.TryGetProperty("n_kv_heads", out var kv) ? kv.GetInt32() : heads, r.GetProperty("vocab_size").GetInt32(), hidden);
        }

        /// <summary>The state dict Meta's Transformer has, in its order, with PyTorch shapes ([out, in] for linear layers).</summary>
        public List<(string Name, long[] Shape)> Expected()
        {
            long q = Heads * HeadDim, kv = KvHeads * HeadDim;
            var list = new List<(string, long[])> { ("tok_embeddings.weight", [Vocab, Dim]) };
            for (int i = 0; i < Layers; i++)
            {
                string l = $"layers.{i}.";
                list.Add((l + "attention.wq.weight", [q, Dim]));
                list.Add((l + "attention.wk.weight", [kv, Dim]));
                list.Add((l + "attention.wv.weight", [kv, Dim]));
                list.Add((l + "attention.wo.weight", [Dim, q]));
                list.Add((l + "feed_forward.w1.weight", [Hidden, Dim]));
                list.Add((l + "feed_forward.w2.weight", [Dim, Hidden]));
                list.Add((l + "feed_forward.w3.weight", [Hidden, Dim]));
                list.Add((l + "attention_norm.weight", [Dim]));
                list.Add((l + "ffn_norm.weight", [Dim]));
            }
            list.Add(("norm.weight", [Dim]));
            list.Add(("output.weight", [Vocab, Dim]));
            return list;
        }
    }

    private static long[] RowMajor(long[] shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    [Theory]
    [InlineData("meta-tiny")]
    [InlineData("meta-tiny-32")]
    public void Meta_checkpoints_hold_the_tensors_of_params_json_in_order_as_contiguous_bfloat16(string model)
    {
        var p = Params.Read(Model(model, "meta", "params.json"));
        Assert.Equal(128, p.Hidden); // the shared README's worked example: 4*32 -> 85 -> 110 -> 128
        string path = Model(model, "meta", "consolidated.00.pth");
        using var c = PthCheckpoint.Open(path);

        Assert.Equal(path, c.FilePath);
        Assert.Equal(new FileInfo(path).Length, c.FileLength);
        Assert.Equal("consolidated.00", c.ArchiveName);
        var expected = p.Expected();
        Assert.Equal(expected.Select(e => e.Name), c.Tensors.Select(t => t.Name));
        var keys = new HashSet<string>();
        foreach (var ((name, shape), t) in expected.Zip(c.Tensors))
        {
            Assert.True(shape.SequenceEqual(t.Shape), $"{name}: shape {string.Join("x", t.Shape)}, expected {string.Join("x", shape)}");
            Assert.Equal(PthDType.BFloat16, t.DType);
            Assert.Equal(2, t.ElementSize);
            Assert.Equal(RowMajor(shape), t.Strides);
            Assert.True(t.IsContiguous);
            Assert.Equal(0, t.StorageOffset);
            Assert.True(keys.Add(t.StorageKey), $"{name} shares storage '{t.StorageKey}'");
            Assert.Equal(t.ByteSize, c.GetBytes(t).Length);
            // torch.save pads each storage's local header so that its data starts on a 64-byte boundary.
            long offset = c.GetFileOffset(t)!.Value;
            Assert.Equal(0, offset % 64);
            Assert.True(offset + t.ByteSize <= c.FileLength);
            Assert.Same(t, c.Find(name));
        }
        Assert.Null(c.Find("rope.freqs"));
        c.VerifyChecksums();
        output.WriteLine(string.Join("\n", c.Tensors.Select(t => $"{t} storage {t.StorageKey} at byte {c.GetFileOffset(t)}")));
    }

    [Theory]
    [InlineData("meta-tiny")]
    [InlineData("meta-tiny-32")]
    public void Meta_weights_equal_the_hugging_face_safetensors(string model)
    {
        var p = Params.Read(Model(model, "meta", "params.json"));
        using var c = PthCheckpoint.Open(Model(model, "meta", "consolidated.00.pth"));
        var hf = Safetensors.Read(Model(model, "hf", "model.safetensors"));

        void Same(string meta, string hfName)
        {
            var t = c.Find(meta) ?? throw new Xunit.Sdk.XunitException($"no {meta}");
            var (dtype, shape, bytes) = hf.Get(hfName);
            Assert.Equal("BF16", dtype);
            Assert.Equal(shape, t.Shape);
            Assert.True(bytes.Span.SequenceEqual(c.GetBytes(t)), $"{meta} differs from {hfName}");
        }

        Same("tok_embeddings.weight", "model.embed_tokens.weight");
        Same("norm.weight", "model.norm.weight");
        for (int i = 0; i < p.Layers; i++)
        {
            Same($"layers.{i}.attention.wv.weight", $"model.layers.{i}.self_attn.v_proj.weight");
            Same($"layers.{i}.attention.wo.weight", $"model.layers.{i}.self_attn.o_proj.weight");
            Same($"layers.{i}.feed_forward.w1.weight", $"model.layers.{i}.mlp.gate_proj.weight");
            Same($"layers.{i}.feed_forward.w2.weight", $"model.layers.{i}.mlp.down_proj.weight");
            Same($"layers.{i}.feed_forward.w3.weight", $"model.layers.{i}.mlp.up_proj.weight");
            Same($"layers.{i}.attention_norm.weight", $"model.layers.{i}.input_layernorm.weight");
            Same($"layers.{i}.ffn_norm.weight", $"model.layers.{i}.post_attention_layernorm.weight");
            // q_proj and k_proj rows are permuted for rotate-half RoPE (transformers' convert_llama_weights_to_hf.py:
            // w.view(heads, hd / 2, 2, in).transpose(1, 2)): HF row h*hd + t*hd/2 + j is Meta row h*hd + 2j + t.
            SamePermuted($"layers.{i}.attention.wq.weight", $"model.layers.{i}.self_attn.q_proj.weight", p.Heads);
            SamePermuted($"layers.{i}.attention.wk.weight", $"model.layers.{i}.self_attn.k_proj.weight", p.KvHeads);
        }
        if (hf.Has("lm_head.weight"))
            Same("output.weight", "lm_head.weight");
        else // tied (Llama 3.2 style): Meta still stores output.weight, equal to the embeddings
            Assert.True(c.GetBytes(c.Find("output.weight")!).SequenceEqual(hf.Get("model.embed_tokens.weight").Bytes.Span));

        void SamePermuted(string meta, string hfName, int heads)
        {
            var t = c.Find(meta)!;
            var (_, shape, hfMemory) = hf.Get(hfName);
            var hfBytes = hfMemory.Span;
            Assert.Equal(shape, t.Shape);
            var metaBytes = c.GetBytes(t);
            int row = (int)t.Shape[1] * 2, hd = (int)t.Shape[0] / heads;
            for (int h = 0; h < heads; h++)
                for (int tt = 0; tt < 2; tt++)
                    for (int j = 0; j < hd / 2; j++)
                    {
                        int hfRow = h * hd + tt * hd / 2 + j, metaRow = h * hd + 2 * j + tt;
                        Assert.True(hfBytes.Slice(hfRow * row, row).SequenceEqual(metaBytes.Slice(metaRow * row, row)),
                            $"{hfName} row {hfRow} is not {meta} row {metaRow}");
                    }
        }
    }

    [Fact]
    public void Meta_tiny_32_ties_output_by_storing_a_copy_of_the_embeddings()
    {
        using var c = PthCheckpoint.Open(Model("meta-tiny-32", "meta", "consolidated.00.pth"));
        var output = c.Find("output.weight");
        Assert.NotNull(output); // Meta's Transformer loads with strict=True, so a tied checkpoint still has it
        var emb = c.Find("tok_embeddings.weight")!;
        Assert.NotEqual(emb.StorageKey, output.StorageKey); // a copy, not a shared storage
        Assert.True(c.GetBytes(output).SequenceEqual(c.GetBytes(emb)));
        Assert.False(Safetensors.Read(Model("meta-tiny-32", "hf", "model.safetensors")).Has("lm_head.weight"));

        using var untied = PthCheckpoint.Open(Model("meta-tiny", "meta", "consolidated.00.pth"));
        Assert.False(untied.GetBytes(untied.Find("output.weight")!).SequenceEqual(untied.GetBytes(untied.Find("tok_embeddings.weight")!)));
    }

    /// <summary>Meta's model parallel split: 0 for column-parallel (and the vocab-parallel embedding), 1 for row-parallel, -1 replicated.</summary>
    internal static int SplitDim(string name) =>
        name is "tok_embeddings.weight" or "output.weight" ? 0
        : name.EndsWith(".attention.wq.weight") || name.EndsWith(".attention.wk.weight") || name.EndsWith(".attention.wv.weight")
          || name.EndsWith(".feed_forward.w1.weight") || name.EndsWith(".feed_forward.w3.weight") ? 0
        : name.EndsWith(".attention.wo.weight") || name.EndsWith(".feed_forward.w2.weight") ? 1
        : -1;

    [Fact]
    public void Two_shards_concatenate_along_the_model_parallel_dimension_to_the_single_file()
    {
        using var full = PthCheckpoint.Open(Model("meta-tiny", "meta", "consolidated.00.pth"));
        using var s0 = PthCheckpoint.Open(Model("meta-tiny", "meta-2shard", "consolidated.00.pth"));
        using var s1 = PthCheckpoint.Open(Model("meta-tiny", "meta-2shard", "consolidated.01.pth"));
        Assert.Equal("consolidated.01", s1.ArchiveName);
        Assert.Equal(full.Tensors.Select(t => t.Name), s0.Tensors.Select(t => t.Name));
        Assert.Equal(full.Tensors.Select(t => t.Name), s1.Tensors.Select(t => t.Name));
        var checkedDims = new Dictionary<int, int>();

        foreach (var f in full.Tensors)
        {
            var a = s0.Find(f.Name)!;
            var b = s1.Find(f.Name)!;
            Assert.Equal(f.DType, a.DType);
            Assert.Equal(f.DType, b.DType);
            Assert.True(a.IsContiguous && b.IsContiguous);
            Assert.Equal(0, s0.GetFileOffset(a)!.Value % 64);
            Assert.Equal(0, s1.GetFileOffset(b)!.Value % 64);
            int dim = SplitDim(f.Name);
            checkedDims[dim] = checkedDims.GetValueOrDefault(dim) + 1;
            var fb = full.GetBytes(f);
            var ab = s0.GetBytes(a);
            var bb = s1.GetBytes(b);
            if (dim < 0)
            {
                Assert.Equal(f.Shape, a.Shape);
                Assert.True(ab.SequenceEqual(fb) && bb.SequenceEqual(fb), $"{f.Name} is not replicated");
                continue;
            }
            var half = (long[])f.Shape.Clone();
            half[dim] /= 2;
            Assert.Equal(half, a.Shape);
            Assert.Equal(half, b.Shape);
            if (dim == 0)
            {
                Assert.True(fb[..ab.Length].SequenceEqual(ab) && fb[ab.Length..].SequenceEqual(bb), $"{f.Name}: shards do not concatenate on dim 0");
            }
            else
            {
                int rowA = (int)a.Shape[1] * a.ElementSize, rowB = (int)b.Shape[1] * b.ElementSize;
                for (int r = 0; r < f.Shape[0]; r++)
                {
                    var fr = fb.Slice(r * (rowA + rowB), rowA + rowB);
                    Assert.True(fr[..rowA].SequenceEqual(ab.Slice(r * rowA, rowA)) && fr[rowA..].SequenceEqual(bb.Slice(r * rowB, rowB)),
                        $"{f.Name}: row {r} is not the shards' rows side by side");
                }
            }
        }
        Assert.Equal(new Dictionary<int, int> { [0] = 2 + 5 * 2, [1] = 2 * 2, [-1] = 1 + 2 * 2 }, checkedDims);
    }

    /// <summary>Just enough of the safetensors format to read the Hugging Face copies: u64 header length, JSON, data.</summary>
    internal sealed class Safetensors
    {
        private readonly byte[] _bytes;
        private readonly long _dataStart;
        private readonly Dictionary<string, (string DType, long[] Shape, long Begin, long End)> _tensors = [];

        private Safetensors(byte[] bytes)
        {
            _bytes = bytes;
            long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            _dataStart = 8 + n;
            using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__") continue;
                var offsets = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                _tensors[prop.Name] = (prop.Value.GetProperty("dtype").GetString()!,
                    prop.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray(), offsets[0], offsets[1]);
            }
        }

        public static Safetensors Read(string path) => new(File.ReadAllBytes(path));

        public bool Has(string name) => _tensors.ContainsKey(name);

        public (string DType, long[] Shape, ReadOnlyMemory<byte> Bytes) Get(string name)
        {
            Assert.True(_tensors.TryGetValue(name, out var t), $"safetensors has no {name}");
            return (t.DType, t.Shape, _bytes.AsMemory((int)(_dataStart + t.Begin), (int)(t.End - t.Begin)));
        }
    }
}

/// <summary>Hand-made checkpoints: every supported feature, and every kind of malformed input.</summary>
public sealed class PthSyntheticTests
{
    [Fact]
    public void A_hand_made_state_dict_opens_with_its_dtypes_shapes_strides_and_values()
    {
        float[] f32 = [1.5f, -2f, 3.25f, 0f, 7f, 8f];
        var f32Bytes = new byte[24];
        Buffer.BlockCopy(f32, 0, f32Bytes, 0, 24);
        var i64Bytes = new byte[8 * 4];
        for (int i = 0; i < 4; i++) BinaryPrimitives.WriteInt64LittleEndian(i64Bytes.AsSpan(8 * i), -1000L * i);
        byte[] pickle = Pickles.StateDict(ordered: true,
            new("w", "FloatStorage", "0", 6, 0, [2, 3], [3, 1]),
            new("w.T", "FloatStorage", "0", 6, 0, [3, 2], [1, 3]),          // a transposed view: not contiguous
            new("row1", "FloatStorage", "0", 6, 3, [3], [1]),               // offset into a shared storage
            new("ids", "LongStorage", "1", 4, 0, [4], [1], Parameter: true),
            new("scalar", "HalfStorage", "2", 1, 0, [], []),
            new("mask", "BoolStorage", "3", 3, 0, [3, 1], [1, 7]),           // a size-1 dimension's stride is irrelevant
            new("empty", "BFloat16Storage", "4", 0, 0, [0, 5], [5, 1]),
            new("big", "FloatStorage", "5", 40000, 0, [200, 200], [200, 1]));
        var big = new byte[160000];
        new Random(5).NextBytes(big);
        byte[] zip = Pickles.Zip("archive",
            ("data.pkl", pickle, true), // deflated, as some writers do for small entries
            ("data/0", f32Bytes, false), ("data/1", i64Bytes, false), ("data/2", [0x00, 0x3C], false),
            ("data/3", [1, 0, 1], false), ("data/4", [], false), ("data/5", big, true), ("version", "3\n"u8.ToArray(), false));

        using var c = PthCheckpoint.FromBytes("hand-made.pth", zip);
        Assert.Equal("archive", c.ArchiveName);
        Assert.Equal(new[] { "w", "w.T", "row1", "ids", "scalar", "mask", "empty", "big" }, c.Tensors.Select(t => t.Name));
        var w = c.Find("w")!;
        Assert.Equal(PthDType.Float32, w.DType);
        Assert.Equal(new long[] { 2, 3 }, w.Shape);
        Assert.True(w.IsContiguous);
        Assert.Equal(f32Bytes, c.GetBytes(w).ToArray());
        Assert.NotNull(c.GetFileOffset(w));

        var wt = c.Find("w.T")!;
        Assert.False(wt.IsContiguous);
        var ex = Assert.Throws<ModelFormatException>(() => c.GetBytes(wt));
        Assert.Contains("'w.T' is not contiguous", ex.Message);
        unsafe { Assert.True(c.GetPointer(wt) == c.GetPointer(w)); }

        Assert.Equal(f32Bytes[12..], c.GetBytes(c.Find("row1")!).ToArray());
        Assert.Equal(c.GetFileOffset(w) + 12, c.GetFileOffset(c.Find("row1")!));
        var ids = c.Find("ids")!;
        Assert.Equal(PthDType.Int64, ids.DType);
        Assert.Equal(i64Bytes, c.GetBytes(ids).ToArray());
        var scalar = c.Find("scalar")!;
        Assert.Equal((PthDType.Float16, 0, 1L), (scalar.DType, scalar.Shape.Length, scalar.ElementCount));
        Assert.Equal((Half)1, BinaryPrimitives.ReadHalfLittleEndian(c.GetBytes(scalar)));
        var mask = c.Find("mask")!;
        Assert.True(mask.IsContiguous);
        Assert.Equal(PthDType.Bool, mask.DType);
        Assert.Equal(new byte[] { 1, 0, 1 }, c.GetBytes(mask).ToArray());
        var empty = c.Find("empty")!;
        Assert.Equal(0, c.GetBytes(empty).Length);
        var bigT = c.Find("big")!;
        Assert.Null(c.GetFileOffset(bigT)); // deflated: inflated into memory
        Assert.Equal(big, c.GetBytes(bigT).ToArray());
        c.VerifyChecksums();

        // A tensor from another checkpoint is refused rather than read from the wrong storage.
        using var other = PthCheckpoint.FromBytes("other.pth", zip);
        Assert.Throws<ArgumentException>(() => c.GetBytes(other.Find("w")!));
        c.Dispose();
        Assert.Throws<ObjectDisposedException>(() => c.GetBytes(w));
    }

    [Fact]
    public void A_plain_dict_keeps_the_order_of_its_keys_and_a_repeated_key_its_first_place()
    {
        var p = new Pickles.Writer().Proto(2).Op('}').Op('(')
            .Str("b").Tensor("FloatStorage", "0", 1, 0, [1], [1])
            .Str("a").Tensor("FloatStorage", "0", 1, 0, [1], [1])
            .Str("b").Tensor("FloatStorage", "0", 1, 0, [], [])
            .Op('u').Op('.').Bytes();
        using var c = PthCheckpoint.FromBytes("dict.pth", Pickles.Zip("x", ("data.pkl", p, false), ("data/0", new byte[4], false)));
        Assert.Equal(new[] { "b", "a" }, c.Tensors.Select(t => t.Name));
        Assert.Empty(c.Find("b")!.Shape); // the value was replaced in place, as Python's dict does
    }

    [Fact]
    public void Protocol_4_opcodes_are_understood()
    {
        // FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, BINUNICODE8, LONG1, and BINGET of a memoized global.
        var w = new Pickles.Writer().Proto(4).Frame(0).Op('}').Op(0x94).Op('(');
        w.ShortStr("weight").Op(0x94);                                                  // memo 1
        w.ShortStr("torch._utils").ShortStr("_rebuild_tensor_v2").Op(0x93).Op(0x94);    // memo 2
        w.Op('(').Op('(').ShortStr("storage").ShortStr("torch").ShortStr("FloatStorage").Op(0x93).Op(0x94) // memo 3
            .Str8("0").ShortStr("cpu").Long1(2).Op('t').Op('Q')
            .Long1(0).Int(2).Op(0x85).Int(1).Op(0x85).Op(0x89).Op('}').Op('t').Op('R');
        w.ShortStr("bias").Op('h', 2)
            .Op('(').Op('(').ShortStr("storage").Op('h', 3).Str8("0").ShortStr("cpu").Long1(2).Op('t').Op('Q')
            .Long1(1).Int(1).Op(0x85).Int(1).Op(0x85).Op(0x89).Op('}').Op('t').Op('R');
        w.Op('u').Op('.');
        byte[] p = w.Bytes();
        using var c = PthCheckpoint.FromBytes("p4.pth", Pickles.Zip("archive", ("data.pkl", p, false), ("data/0", [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40], false)));
        Assert.Equal(2, c.Tensors.Count);
        var t = c.Tensors[0];
        Assert.Equal(2.0f, BitConverter.ToSingle(c.GetBytes(c.Tensors[1])));
        Assert.Equal(("weight", PthDType.Float32, 2L), (t.Name, t.DType, t.ElementCount));
    }

    [Theory]
    [InlineData("os", "system", "os.system")]
    [InlineData("builtins", "eval", "builtins.eval")]
    [InlineData("__builtin__", "getattr", "__builtin__.getattr")]
    [InlineData("torch.storage", "_load_from_bytes", "torch.storage._load_from_bytes")]
    [InlineData("torch._tensor", "_rebuild_from_type_v2", "torch._tensor._rebuild_from_type_v2")]
    [InlineData("numpy.core.multiarray", "_reconstruct", "numpy.core.multiarray._reconstruct")]
    public void Globals_other_than_tensors_storages_and_OrderedDict_are_refused_by_name(string module, string name, string shown)
    {
        // GLOBAL 'os system', then what an exploit does with it: REDUCE with a command.
        var classic = new Pickles.Writer().Proto(2).Global(module, name).Str("echo pwned").Op(0x85).Op('R').Op('.').Bytes();
        // The same through STACK_GLOBAL (protocol 4).
        var stack = new Pickles.Writer().Proto(4).ShortStr(module).ShortStr(name).Op(0x93).Op(')').Op('R').Op('.').Bytes();
        foreach (var pickle in new[] { classic, stack })
        {
            using var tmp = new PthBadInputTests.Temp();
            string path = tmp.File("evil.pth");
            File.WriteAllBytes(path, Pickles.Zip("archive", ("data.pkl", pickle, false), ("version", "3\n"u8.ToArray(), false)));
            var ex = Assert.Throws<ModelFormatException>(() => PthCheckpoint.Open(path));
            Assert.Equal(path, ex.FilePath);
            Assert.Contains($"refusing to load arbitrary Python object {shown}", ex.Message);
        }
    }

    public static TheoryData<string, byte[], string> BadPickles()
    {
        static byte[] P(Func<Pickles.Writer, Pickles.Writer> f) => f(new Pickles.Writer().Proto(2)).Bytes();
        var d = new TheoryData<string, byte[], string>
        {
            { "stack underflow", P(w => w.Op(0x86).Op('.')), "stack underflow" },
            { "pop below a mark", P(w => w.Op('N').Op('(').Op(0x85)), "stack underflow" },
            { "memo miss", P(w => w.Op('h', 7).Op('.')), "memo entry 7" },
            { "long memo miss", P(w => w.Op('j', 0, 0, 0, 1).Op('.')), "memo entry 16777216" },
            { "put on an empty stack", P(w => w.Op('q', 0).Op('.')), "stack underflow" },
            { "no STOP", P(w => w.Op('N')), "truncated" },
            { "empty pickle", [], "truncated" },
            { "truncated string", P(w => w.Op('X', 100, 0, 0, 0).Op((byte)'a')), "truncated" },
            { "absurd string length", P(w => w.Op('X', 0xF0, 0xFF, 0xFF, 0xFF).Op('.')), "truncated" },
            { "absurd BINUNICODE8 length", P(w => w.Op(0x8d, 0, 0, 0, 0, 0, 0, 0, 0x80).Op('.')), "truncated" },
            { "absurd BINBYTES8 length", P(w => w.Op(0x8e, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF).Op('.')), "truncated" },
            { "negative BINSTRING length", P(w => w.Op('T', 0xFF, 0xFF, 0xFF, 0xFF).Op('.')), "negative" },
            { "absurd frame", P(w => w.Op(0x95, 0, 0, 0, 0, 1, 0, 0, 0).Op('.')), "frame" },
            { "huge LONG1", P(w => w.Op(0x8a, 20).Op(new byte[20]).Op('.')), "64 bits" },
            { "huge LONG4", P(w => w.Op(0x8b, 0xFF, 0xFF, 0xFF, 0x7F).Op('.')), "truncated" },
            { "unknown opcode", P(w => w.Op(0xFF)), "unsupported pickle opcode 0xff" },
            { "text-mode INT", P(w => w.Op('I').Op("1\n"u8.ToArray()).Op('.')), "unsupported pickle opcode 0x49 ('I')" },
            { "future protocol", [0x80, 6, (byte)'N', (byte)'.'], "protocol 6" },
            { "GLOBAL without newline", P(w => w.Op('c').Op("os"u8.ToArray())), "truncated" },
            { "endless GLOBAL name", P(w => w.Op('c').Op(new byte[300]).Op('.')), "longer than" },
            { "invalid UTF-8", P(w => w.Op(0x8c, 2, 0xC3, 0x28).Op('.')), "UTF-8" },
            { "APPENDS without MARK", P(w => w.Op(']').Op('N').Op('e').Op('.')), "no MARK" },
            { "SETITEM on a list", P(w => w.Op(']').Op('N').Op('N').Op('s').Op('.')), "not a dict" },
            { "APPEND on a dict", P(w => w.Op('}').Op('N').Op('a').Op('.')), "not a list" },
            { "odd SETITEMS", P(w => w.Op('}').Op('(').Op('N').Op('u').Op('.')), "odd number" },
            { "tuple as dict key", P(w => w.Op('}').Op(')').Op('N').Op('s').Op('.')), "dict key" },
            { "giant dict key", P(w => w.Op('}').Str(new string('k', 5000)).Op('N').Op('s').Op('.')), "dict key of 5000" },
            { "REDUCE on a string", P(w => w.Str("f").Op(')').Op('R').Op('.')), "not a callable" },
            { "REDUCE without a tuple", P(w => w.Global("collections", "OrderedDict").Op('N').Op('R').Op('.')), "not an argument tuple" },
            { "BUILD on a plain dict", P(w => w.Op('}').Op('}').Op('b').Op('.')), "BUILD" },
            { "NEWOBJ of a storage", P(w => w.Global("torch", "FloatStorage").Op(')').Op(0x81).Op('.')), "NEWOBJ" },
            { "unknown storage type", P(w => w.Global("torch", "ComplexFloatStorage").Op('.')), "storage type torch.ComplexFloatStorage is not supported" },
            { "bad persistent id", P(w => w.Str("file").Op(0x85).Op('Q').Op('.')), "persistent id" },
            { "persistent id with a string type", P(w => w.Op('(').Str("storage").Str("torch.FloatStorage").Str("0").Str("cpu").Int(1).Op('t').Op('Q').Op('.')), "not a torch storage class" },
            { "negative numel", P(w => w.Op('(').Str("storage").Global("torch", "FloatStorage").Str("0").Str("cpu").Op('J', 0xFF, 0xFF, 0xFF, 0xFF).Op('t').Op('Q').Op('.')), "element count -1" },
            { "one storage, two dtypes", P(w => w.Op('}').Op('(')
                .Str("a").Tensor("FloatStorage", "0", 2, 0, [2], [1]).Str("b").Tensor("HalfStorage", "0", 2, 0, [2], [1]).Op('u').Op('.')), "named as Float32" },
            { "five arguments", P(w => w.Global("torch._utils", "_rebuild_tensor_v2").Op('(').Storage("FloatStorage", "0", 1).Int(0).Op(')').Op(')').Op(0x89).Op('t').Op('R').Op('.')), "6 or 7 arguments" },
            { "past the storage", P(w => w.Op('}').Str("t").Tensor("FloatStorage", "0", 6, 1, [2, 3], [3, 1]).Op('s').Op('.')), "reaches past the end of storage '0'" },
            { "stride past the storage", P(w => w.Op('}').Str("t").Tensor("FloatStorage", "0", 6, 0, [2, 3], [4, 1]).Op('s').Op('.')), "reaches past" },
            { "overflowing shape", P(w => w.Op('}').Str("t").Tensor("FloatStorage", "0", 6, 0, [1L << 40, 1L << 40], [0, 0]).Op('s').Op('.')), "impossibly large" },
            { "negative size", P(w => w.Op('}').Str("t").Tensor("FloatStorage", "0", 6, 0, [-1], [1]).Op('s').Op('.')), "size has -1" },
            { "size and stride differ", P(w => w.Op('}').Str("t").Tensor("FloatStorage", "0", 6, 0, [6], [1, 1]).Op('s').Op('.')), "differ in length" },
            { "not a dict", P(w => w.Op('N').Op('.')), "holds None, not a state dict" },
            { "a value that is not a tensor", P(w => w.Op('}').Str("lr").Op('G', 0x3F, 0xF0, 0, 0, 0, 0, 0, 0).Op('s').Op('.')), "'lr' is 1, not a tensor" },
            { "an integer key", P(w => w.Op('}').Int(3).Op('N').Op('s').Op('.')), "has a key 3" },
            { "missing storage entry", P(w => w.Op('}').Str("t").Tensor("FloatStorage", "9", 6, 0, [6], [1]).Op('s').Op('.')), "no entry archive/data/9" },
            { "storage of the wrong size", P(w => w.Op('}').Str("t").Tensor("FloatStorage", "0", 5, 0, [5], [1]).Op('s').Op('.')), "has 24 bytes, but 5 Float32 elements need 20" },
        };
        return d;
    }

    [Theory]
    [MemberData(nameof(BadPickles))]
    public void Malformed_pickles_are_ModelFormatException_saying_what(string what, byte[] pickle, string expected)
    {
        byte[] zip = Pickles.Zip("archive", ("data.pkl", pickle, false), ("data/0", new byte[24], false));
        var ex = Record.Exception(() => PthCheckpoint.FromBytes("bad.pth", zip).Dispose());
        var mfe = Assert.IsType<ModelFormatException>(ex);
        Assert.Equal("bad.pth", mfe.FilePath);
        Assert.True(mfe.Message.Contains(expected, StringComparison.Ordinal), $"{what}: '{mfe.Message}' does not say '{expected}'");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_zip64_archive_with_sizes_and_offsets_in_extra_fields_opens(bool saturateSizes)
    {
        // As miniz writes entries past 4 GiB: 32-bit fields 0xFFFFFFFF, the values in ZIP64 extra fields, and end
        // records that defer to the ZIP64 ones. Only the local header offsets (or also the sizes) are saturated.
        var data = new byte[96];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(3 * i);
        byte[] pickle = Pickles.StateDict(false, new Pickles.FakeTensor("t", "ShortStorage", "0", 48, 0, [6, 8], [8, 1]));
        byte[] zip = Pickles.Zip64(saturateSizes, ("big/data.pkl", pickle), ("big/data/0", data), ("big/version", "3\n"u8.ToArray()));

        // The fixture is a valid archive by an independent reader.
        using (var check = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read))
        {
            Assert.Equal(3, check.Entries.Count);
            using var s = check.GetEntry("big/data/0")!.Open();
            var copy = new MemoryStream();
            s.CopyTo(copy);
            Assert.Equal(data, copy.ToArray());
        }
        using var c = PthCheckpoint.FromBytes("zip64.pth", zip);
        var t = Assert.Single(c.Tensors);
        Assert.Equal(PthDType.Int16, t.DType);
        Assert.Equal(data, c.GetBytes(t).ToArray());
        Assert.Equal(0, c.GetFileOffset(t)!.Value % 64);
    }

    [Fact]
    public void Corrupt_zip_records_are_ModelFormatException_saying_what()
    {
        byte[] pickle = Pickles.StateDict(false, new Pickles.FakeTensor("t", "FloatStorage", "0", 1, 0, [1], [1]));
        byte[] Build(bool deflate) => Pickles.Zip("a", ("data.pkl", pickle, deflate), ("data/0", new byte[4], false));
        void Fails(byte[] zip, string expected)
        {
            var ex = Assert.Throws<ModelFormatException>(() => PthCheckpoint.FromBytes("records.pth", zip));
            Assert.Contains(expected, ex.Message);
        }
        // Central directory fields (offsets per APPNOTE 4.3.12).
        byte[] Patch(bool deflate, int field, uint value, int width)
        {
            byte[] zip = Build(deflate);
            int at = PthBadInputTests.FindCentralEntry(zip, "a/data.pkl") + field;
            if (width == 2) BinaryPrimitives.WriteUInt16LittleEndian(zip.AsSpan(at), (ushort)value);
            else BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan(at), value);
            return zip;
        }
        Fails(Patch(false, 8, 0x0001, 2), "encrypted");
        Fails(Patch(false, 10, 12, 2), "disagree on the compression method");
        Fails(Patch(false, 24, 5000, 4), "sizes differ");
        Fails(Patch(false, 42, 7, 4), "no local file header");
        Fails(Patch(false, 34, 1, 2), "disk 1");
        Fails(Patch(false, 16, 0x12345678, 4), "CRC-32");
        Fails(Patch(true, 24, 1, 4), "more than the 1 bytes declared");
        Fails(Patch(true, 24, (uint)pickle.Length + 10, 4), "fewer than");
        Fails(Patch(true, 24, 10_000_000, 4), "more than deflate can");
        Fails(Patch(true, 24, 0x7FFFFFF0, 4), "at most 67108864");
        byte[] bzip = Patch(true, 10, 12, 2);
        BinaryPrimitives.WriteUInt16LittleEndian(bzip.AsSpan(8), 12); // the local header's method too
        Fails(bzip, "compression method 12");
        byte[] garbled = Build(true);
        int lh = BinaryPrimitives.ReadUInt16LittleEndian(garbled.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(garbled.AsSpan(28)) + 30;
        garbled[lh] = 0xFF; // the first deflate block header: reserved block type 3
        Fails(garbled, "corrupt deflate data");
        byte[] renamed = Build(false);
        renamed[30] ^= 0x01; // the local header's name: 'a' becomes '`'
        Fails(renamed, "names another file");
    }

    [Fact]
    public void Archive_layout_problems_are_ModelFormatException()
    {
        byte[] pickle = Pickles.StateDict(false, new Pickles.FakeTensor("t", "FloatStorage", "0", 1, 0, [1], [1]));
        void Fails(string expected, params (string, byte[], bool)[] entries)
        {
            var ex = Assert.Throws<ModelFormatException>(() => PthCheckpoint.FromBytes("layout.pth", Pickles.ZipRaw(entries)));
            Assert.Contains(expected, ex.Message);
        }
        Fails("no FOLDER/data.pkl", ("data.pkl", pickle, false), ("data/0", new byte[4], false));
        Fails("no FOLDER/data.pkl", ("a/b/data.pkl", pickle, false));
        Fails("2 data.pkl", ("a/data.pkl", pickle, false), ("b/data.pkl", pickle, false));
        Fails("'big'-endian", ("a/data.pkl", pickle, false), ("a/data/0", new byte[4], false), ("a/byteorder", "big"u8.ToArray(), false));
        using (PthCheckpoint.FromBytes("le.pth", Pickles.ZipRaw(("a/data.pkl", pickle, false), ("a/data/0", new byte[4], false), ("a/byteorder", "little"u8.ToArray(), false)))) { }
    }
}

/// <summary>Files that are missing, not checkpoints, truncated, corrupt or fuzzed.</summary>
public sealed class PthBadInputTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>A temporary folder, deleted with its contents on dispose.</summary>
    internal sealed class Temp : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "llama3-pth-tests-" + Guid.NewGuid().ToString("N"));
        public Temp() => Directory.CreateDirectory(Path);
        public string File(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose()
        {
            try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
        }
    }

    private static ModelFormatException OpenFails(string path, string because)
    {
        var ex = Record.Exception(() => PthCheckpoint.Open(path).Dispose());
        if (ex is not ModelFormatException mfe)
            throw new Xunit.Sdk.XunitException($"{because}: expected ModelFormatException, got {(ex is null ? "success" : ex.ToString())}");
        Assert.Equal(path, mfe.FilePath);
        Assert.Contains(path, mfe.Message);
        return mfe;
    }

    private static ModelFormatException OpenFails(byte[] bytes, Temp tmp, string name)
    {
        string path = tmp.File(name);
        File.WriteAllBytes(path, bytes);
        return OpenFails(path, name);
    }

    [Fact]
    public void A_missing_file_is_FileNotFoundException_naming_the_path()
    {
        using var tmp = new Temp();
        string path = tmp.File("consolidated.00.pth");
        var e = Assert.Throws<FileNotFoundException>(() => PthCheckpoint.Open(path));
        Assert.Equal(path, e.FileName);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Files_that_are_not_zip_archives_are_rejected()
    {
        using var tmp = new Temp();
        Assert.Contains("too short", OpenFails([], tmp, "empty.pth").Message);
        Assert.Contains("not a zip archive", OpenFails(Encoding.UTF8.GetBytes("this is a text file, not a checkpoint at all\n"), tmp, "text.pth").Message);
        Assert.Contains("legacy", OpenFails([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, .. new byte[16]], tmp, "legacy.pth").Message);
        Assert.Contains("GGUF", OpenFails(SharedData.Path("models", "stories260K.gguf"), "a GGUF file").Message);
        // A zip archive, but of something else.
        var ms = new MemoryStream();
        using (var z = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
            using (var s = z.CreateEntry("readme.txt").Open()) s.Write("hello"u8);
        Assert.Contains("not a torch.save checkpoint", OpenFails(ms.ToArray(), tmp, "other.zip").Message);
    }

    [Fact]
    public void Truncated_and_holed_copies_are_rejected()
    {
        string source = PthReadTests.Model("meta-tiny", "meta-2shard", "consolidated.01.pth");
        byte[] original = File.ReadAllBytes(source);
        int n = original.Length;
        using var tmp = new Temp();
        // In the local header, in data.pkl, in a storage, halfway, in the central directory, in the ZIP64 records,
        // in the end record and one byte short.
        foreach (int cut in new[] { 1, 21, 22, 40, 1000, 2100, n / 2, n - 1500, n - 100, n - 60, n - 22, n - 10, n - 1 })
        {
            var m = OpenFails(original[..cut], tmp, $"cut{cut}.pth");
            output.WriteLine($"cut at {cut}: {m.Problem}");
        }
        // A hole: the first half and the last 4 KB, so the end records survive but point at the wrong bytes.
        foreach (int keep in new[] { 4096, 1700, 200 })
        {
            var m = OpenFails([.. original[..(n / 2)], .. original[(n - keep)..]], tmp, $"hole{keep}.pth");
            output.WriteLine($"hole keeping {keep}: {m.Problem}");
        }
        // A corrupt byte inside data.pkl fails the pickle's CRC check.
        byte[] flipped = (byte[])original.Clone();
        flipped[200] ^= 0x20;
        Assert.Contains("CRC-32", OpenFails(flipped, tmp, "flipped.pth").Message);
        // A corrupt byte inside a storage opens (storages are not read on open) but fails VerifyChecksums.
        flipped = (byte[])original.Clone();
        flipped[n / 4] ^= 0x01;
        string path = tmp.File("flipped-data.pth");
        File.WriteAllBytes(path, flipped);
        using var c = PthCheckpoint.Open(path);
        Assert.Contains("CRC-32", Assert.Throws<ModelFormatException>(c.VerifyChecksums).Message);
    }

    [Fact]
    public void Fuzzed_data_pkl_of_meta_tiny_opens_or_throws_ModelFormatException()
    {
        // Mutate the real data.pkl in place (same length), patching its CRC in the central directory so the
        // mutants reach the unpickler. Its local header starts the file; data.pkl is the first central entry.
        byte[] bytes = File.ReadAllBytes(PthReadTests.Model("meta-tiny", "meta", "consolidated.00.pth"));
        int pklAt = 30 + BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(28));
        int central = FindCentralEntry(bytes, "consolidated.00/data.pkl");
        int pklLen = (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(central + 24));
        Assert.Equal(1949, pklLen);
        byte[] original = bytes[pklAt..(pklAt + pklLen)];
        uint originalCrc = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(central + 16));

        var result = RunFuzz(seed: 1949, iterations: 400, original, mutant =>
        {
            // Same length only: grow or shrink and the zip offsets would move.
            Array.Resize(ref mutant, pklLen);
            mutant.CopyTo(bytes, pklAt);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(central + 16), Crc32.Compute(mutant));
            try { return Probe(() => PthCheckpoint.FromBytes("fuzz.pth", bytes)); }
            finally
            {
                original.CopyTo(bytes, pklAt);
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(central + 16), originalCrc);
            }
        }, sameLength: true);
        Report(result);
    }

    [Fact]
    public void Fuzzed_hand_made_pickles_in_rebuilt_zips_open_or_throw_ModelFormatException()
    {
        byte[] pickle = Pickles.StateDict(ordered: true,
            new("a", "FloatStorage", "0", 6, 0, [2, 3], [3, 1]),
            new("b", "FloatStorage", "0", 6, 2, [2, 2], [1, 2]),
            new("c", "BFloat16Storage", "1", 4, 0, [4], [1], Parameter: true),
            new("d", "LongStorage", "2", 2, 0, [2, 1], [1, 1]));
        var storages = new[] { ("data/0", new byte[24], false), ("data/1", new byte[8], false), ("data/2", new byte[16], false) };
        using var tmp = new Temp();
        int round = 0;
        var result = RunFuzz(seed: 2024, iterations: 400, pickle, mutant =>
        {
            byte[] zip = Pickles.Zip("archive", [("data.pkl", mutant, round % 3 == 0), .. storages]);
            if (round++ % 20 != 0)
                return Probe(() => PthCheckpoint.FromBytes("fuzz.pth", zip));
            string path = tmp.File("fuzz.pth"); // now and then through the file and its memory mapping
            File.WriteAllBytes(path, zip);
            return Probe(() => PthCheckpoint.Open(path), path);
        }, sameLength: false);
        Report(result);
    }

    [Fact]
    public void Fuzzed_zip_records_of_a_shard_open_or_throw_ModelFormatException()
    {
        // The central directory and end records (everything after the first central entry), then the first local
        // header with its padding, mutated in place.
        byte[] bytes = File.ReadAllBytes(PthReadTests.Model("meta-tiny", "meta-2shard", "consolidated.01.pth"));
        int central = FindCentralEntry(bytes, "consolidated.01/data.pkl");
        var results = new List<(int, int, List<string>)>();
        foreach (var (start, end, seed) in new[] { (central, bytes.Length, 17), (0, 64, 18) })
        {
            byte[] original = bytes[start..end];
            results.Add(RunFuzz(seed, 300, original, mutant =>
            {
                mutant.CopyTo(bytes, start);
                try { return Probe(() => PthCheckpoint.FromBytes("fuzz.pth", bytes)); }
                finally { original.CopyTo(bytes, start); }
            }, sameLength: true));
        }
        Report((results.Sum(r => r.Item1), results.Sum(r => r.Item2), results.SelectMany(r => r.Item3).ToList()));
    }

    private void Report((int Opened, int Rejected, List<string> Failures) r)
    {
        output.WriteLine($"{r.Opened} mutants opened, {r.Rejected} rejected, {r.Failures.Count} failures");
        Assert.True(r.Failures.Count == 0, string.Join("\n\n", r.Failures.Take(5)));
        Assert.True(r.Opened > 0, "no mutant opened: the fuzzer only tests rejection");
        Assert.True(r.Rejected > 0, "no mutant was rejected: the fuzzer mutates nothing that matters");
    }

    internal static int FindCentralEntry(byte[] bytes, string name)
    {
        byte[] sig = [0x50, 0x4b, 0x01, 0x02];
        for (int at = bytes.Length - 46; at >= 0; at--)
        {
            if (!bytes.AsSpan(at, 4).SequenceEqual(sig)) continue;
            int nameLen = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(at + 28));
            if (Encoding.UTF8.GetString(bytes, at + 46, nameLen) == name) return at;
        }
        throw new Xunit.Sdk.XunitException($"no central directory entry for {name}");
    }

    /// <summary>Opens, then uses whatever opened: every tensor's bytes must lie inside its storage.</summary>
    private static string? Probe(Func<PthCheckpoint> open, string? path = null)
    {
        try
        {
            using var c = open();
            foreach (var t in c.Tensors)
            {
                if (t.ElementCount < 0 || t.ByteSize < 0) return $"tensor '{t.Name}' has a negative size";
                _ = c.GetFileOffset(t);
                if (t.IsContiguous && c.GetBytes(t).Length != t.ByteSize) return $"tensor '{t.Name}': wrong byte count";
                _ = t.ToString();
            }
            return null;
        }
        catch (ModelFormatException ex)
        {
            string expected = path ?? "fuzz.pth";
            return ex.FilePath == expected && ex.Message.Contains(expected) ? "rejected" : $"message does not name the file: {ex.Message}";
        }
    }

    /// <summary>
    /// Mutates <paramref name="original"/> (bit flips, random and boundary bytes, interesting opcodes, boundary 32/64-bit
    /// values; and unless <paramref name="sameLength"/>, insertions, deletions, duplications and truncation) and hands
    /// each mutant to <paramref name="probe"/>, which returns null (opened), "rejected", or a failure. Anything thrown
    /// is a failure. The loop runs on a worker with a deadline, so a hang fails the test instead of stalling it.
    /// </summary>
    private static (int Opened, int Rejected, List<string> Failures) RunFuzz(int seed, int iterations, byte[] original, Func<byte[], string?> probe, bool sameLength)
    {
        byte[] boundaryBytes = [0, 1, 0x7F, 0x80, 0xFE, 0xFF];
        byte[] opcodes = "().0123JKMNQRXabcehjqrstu}])GUTCB"u8.ToArray().Concat(new byte[] { 0x80, 0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x93, 0x94, 0x95 }).ToArray();
        ulong[] boundaryWords = [0, 1, 2, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1UL << 32, 1UL << 62, long.MaxValue, ulong.MaxValue];
        int opened = 0, rejected = 0;
        var failures = new List<string>();
        var work = Task.Run(() =>
        {
            var rng = new Random(seed);
            for (int i = 0; i < iterations; i++)
            {
                var m = new List<byte>(original);
                int edits = 1 + rng.Next(rng.Next(2) == 0 ? 2 : 6);
                var log = new StringBuilder();
                for (int e = 0; e < edits && m.Count > 0; e++)
                {
                    int pos = rng.Next(m.Count);
                    int kind = rng.Next(sameLength ? 5 : 9);
                    switch (kind)
                    {
                        case 0: m[pos] ^= (byte)(1 << rng.Next(8)); break;
                        case 1: m[pos] = (byte)rng.Next(256); break;
                        case 2: m[pos] = boundaryBytes[rng.Next(boundaryBytes.Length)]; break;
                        case 3: m[pos] = opcodes[rng.Next(opcodes.Length)]; break;
                        case 4:
                        {
                            ulong v = boundaryWords[rng.Next(boundaryWords.Length)];
                            int w = rng.Next(2) == 0 ? 4 : 8;
                            for (int k = 0; k < w && pos + k < m.Count; k++) m[pos + k] = (byte)(v >> (8 * k));
                            break;
                        }
                        case 5: m.Insert(pos, opcodes[rng.Next(opcodes.Length)]); break;
                        case 6: m.RemoveRange(pos, Math.Min(m.Count - pos, 1 + rng.Next(8))); break;
                        case 7:
                        {
                            int len = Math.Min(m.Count - pos, 1 + rng.Next(40));
                            m.InsertRange(rng.Next(m.Count), m.GetRange(pos, len));
                            break;
                        }
                        default: m.RemoveRange(pos, m.Count - pos); break;
                    }
                    log.Append($" {kind}@{pos}");
                }
                string? r;
                try { r = probe([.. m]); }
                catch (Exception ex) { r = ex.ToString(); }
                if (r is null) opened++;
                else if (r == "rejected") rejected++;
                else failures.Add($"iteration {i} (edits{log}): {r}");
            }
        });
        Assert.True(work.Wait(TimeSpan.FromMinutes(3)), "the fuzz loop did not finish: a mutant hangs the reader");
        return (opened, rejected, failures);
    }
}

/// <summary>Writes pickles opcode by opcode (as CPython's pickler and torch.save do) and zips them as torch.save lays out.</summary>
internal static class Pickles
{
    /// <summary>A tensor entry of a hand-made state dict.</summary>
    internal sealed record FakeTensor(string Name, string StorageType, string Key, long Numel, long Offset, long[] Size, long[] Stride, bool Parameter = false);

    internal sealed class Writer
    {
        private readonly MemoryStream _ms = new();
        private int _memo;

        public Writer Op(char op) => Op((byte)op);
        public Writer Op(params byte[] b) { _ms.Write(b); return this; }
        public Writer Op(char op, params byte[] args) => Op((byte)op).Op(args);
        public Writer Proto(byte v) => Op(0x80, v);
        public Writer Frame(ulong n) { Op(0x95); return U64(n); }
        public Writer Put() { _ = _memo < 256 ? Op('q', (byte)_memo) : Op('r').U32((uint)_memo); _memo++; return this; }
        public Writer Str(string s) { var b = Encoding.UTF8.GetBytes(s); Op('X').U32((uint)b.Length).Op(b); return Put(); }
        public Writer ShortStr(string s) { var b = Encoding.UTF8.GetBytes(s); return Op(0x8c, (byte)b.Length).Op(b); }
        public Writer Str8(string s) { var b = Encoding.UTF8.GetBytes(s); Op(0x8d).U64((ulong)b.Length); return Op(b); }
        public Writer Global(string module, string name) => Op('c').Op(Encoding.ASCII.GetBytes($"{module}\n{name}\n")).Put();
        public Writer U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); _ms.Write(b); return this; }
        public Writer U64(ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); _ms.Write(b); return this; }

        /// <summary>An integer the way CPython's pickler chooses: BININT1, BININT2, BININT, else LONG1.</summary>
        public Writer Int(long v)
        {
            if (v is >= 0 and < 256) return Op('K', (byte)v);
            if (v is >= 0 and < 65536) return Op('M', (byte)v, (byte)(v >> 8));
            if (v is >= int.MinValue and <= int.MaxValue) return Op('J').U32((uint)(int)v);
            return Long1(v);
        }

        public Writer Long1(long v)
        {
            var bytes = new System.Numerics.BigInteger(v).ToByteArray(); // little-endian two's complement, minimal
            return Op(0x8a, (byte)bytes.Length).Op(bytes);
        }

        /// <summary>torch.save's persistent id: <c>('storage', torch.TYPE, key, 'cpu', numel)</c>, then BINPERSID.</summary>
        public Writer Storage(string type, string key, long numel) =>
            Op('(').Str("storage").Global("torch", type).Str(key).Str("cpu").Int(numel).Op('t').Put().Op('Q');

        private Writer Dims(long[] dims)
        {
            switch (dims.Length)
            {
                case 0: return Op(')');
                case 1: return Int(dims[0]).Op(0x85);
                case 2: return Int(dims[0]).Int(dims[1]).Op(0x86);
                case 3: return Int(dims[0]).Int(dims[1]).Int(dims[2]).Op(0x87);
                default:
                    Op('(');
                    foreach (long d in dims) Int(d);
                    return Op('t');
            }
        }

        /// <summary><c>_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())</c>, as torch.save writes it.</summary>
        public Writer Tensor(string type, string key, long numel, long offset, long[] size, long[] stride) =>
            Global("torch._utils", "_rebuild_tensor_v2").Op('(').Storage(type, key, numel).Int(offset)
                .Dims(size).Put().Dims(stride).Put().Op(0x89)
                .Global("collections", "OrderedDict").Op(')').Op('R').Put().Op('t').Put().Op('R').Put();

        public Writer Parameter(FakeTensor t) =>
            Global("torch._utils", "_rebuild_parameter").Op('(').Tensor(t.StorageType, t.Key, t.Numel, t.Offset, t.Size, t.Stride)
                .Op(0x89).Global("collections", "OrderedDict").Op(')').Op('R').Op('t').Op('R').Put();

        public byte[] Bytes() => _ms.ToArray();
    }

    /// <summary>
    /// A state dict as torch.save writes one: a dict, or (from Module.state_dict()) an OrderedDict whose attributes
    /// (<c>_metadata</c>) follow as BUILD.
    /// </summary>
    public static byte[] StateDict(bool ordered, params FakeTensor[] tensors)
    {
        var w = new Writer().Proto(2);
        if (ordered) w.Global("collections", "OrderedDict").Op(')').Op('R').Put();
        else w.Op('}').Put();
        w.Op('(');
        foreach (var t in tensors)
        {
            w.Str(t.Name);
            if (t.Parameter) w.Parameter(t);
            else w.Tensor(t.StorageType, t.Key, t.Numel, t.Offset, t.Size, t.Stride);
        }
        w.Op('u');
        if (ordered)
            w.Op('}').Put().Str("_metadata").Global("collections", "OrderedDict").Op(')').Op('R').Put()
                .Str("").Op('}').Put().Str("version").Int(1).Op('s').Op('s').Op('s').Op('b');
        return w.Op('.').Bytes();
    }

    /// <summary>
    /// A ZIP64 archive written field by field (APPNOTE 4.3.7, 4.3.12, 4.3.14-16, 4.5.3) with stored entries padded
    /// to 64 bytes by an extra field, as torch.save does ("FB" padding): every local header offset, and when
    /// <paramref name="saturateSizes"/> every size, is 0xFFFFFFFF with the value in a ZIP64 extra field.
    /// </summary>
    public static byte[] Zip64(bool saturateSizes, params (string Name, byte[] Data)[] entries)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        var written = new List<(byte[] Name, uint Crc, long Size, long Offset)>();
        foreach (var (name, data) in entries)
        {
            long offset = ms.Position;
            byte[] nameBytes = Encoding.UTF8.GetBytes(name);
            uint crc = Crc32.Compute(data);
            int zip64Extra = saturateSizes ? 4 + 16 : 0;
            int pad = (int)((64 - (offset + 30 + nameBytes.Length + zip64Extra + 4) % 64) % 64);
            uint size32 = saturateSizes ? 0xFFFFFFFF : (uint)data.Length;
            w.Write(0x04034b50u); w.Write((ushort)45); w.Write((ushort)0x0800); w.Write((ushort)0); w.Write(0u);
            w.Write(crc); w.Write(size32); w.Write(size32); w.Write((ushort)nameBytes.Length); w.Write((ushort)(zip64Extra + 4 + pad));
            w.Write(nameBytes);
            if (saturateSizes) { w.Write((ushort)1); w.Write((ushort)16); w.Write((ulong)data.Length); w.Write((ulong)data.Length); }
            w.Write((ushort)0x4246); w.Write((ushort)pad); w.Write(new byte[pad]); // "FB", as PyTorch's writer
            w.Write(data);
            written.Add((nameBytes, crc, data.Length, offset));
        }
        long cdStart = ms.Position;
        foreach (var (name, crc, size, offset) in written)
        {
            uint size32 = saturateSizes ? 0xFFFFFFFF : (uint)size;
            int extra = 4 + (saturateSizes ? 24 : 8);
            w.Write(0x02014b50u); w.Write((ushort)45); w.Write((ushort)45); w.Write((ushort)0x0800); w.Write((ushort)0); w.Write(0u);
            w.Write(crc); w.Write(size32); w.Write(size32); w.Write((ushort)name.Length); w.Write((ushort)extra);
            w.Write((ushort)0); w.Write((ushort)0); w.Write((ushort)0); w.Write(0u); w.Write(0xFFFFFFFFu);
            w.Write(name);
            w.Write((ushort)1); w.Write((ushort)(extra - 4));
            if (saturateSizes) { w.Write((ulong)size); w.Write((ulong)size); }
            w.Write((ulong)offset);
        }
        long cdEnd = ms.Position;
        w.Write(0x06064b50u); w.Write(44UL); w.Write((ushort)45); w.Write((ushort)45); w.Write(0u); w.Write(0u);
        w.Write((ulong)written.Count); w.Write((ulong)written.Count); w.Write((ulong)(cdEnd - cdStart)); w.Write((ulong)cdStart);
        w.Write(0x07064b50u); w.Write(0u); w.Write((ulong)cdEnd); w.Write(1u);
        w.Write(0x06054b50u); w.Write((ushort)0); w.Write((ushort)0); w.Write((ushort)0xFFFF); w.Write((ushort)0xFFFF);
        w.Write(0xFFFFFFFFu); w.Write(0xFFFFFFFFu); w.Write((ushort)0);
        w.Flush();
        return ms.ToArray();
    }

    /// <summary>A zip of <paramref name="entries"/> under the folder <paramref name="archive"/>.</summary>
    public static byte[] Zip(string archive, params (string Name, byte[] Data, bool Deflate)[] entries) =>
        ZipRaw([.. entries.Select(e => ($"{archive}/{e.Name}", e.Data, e.Deflate))]);

    /// <summary>A zip of <paramref name="entries"/>: stored (CompressionLevel.NoCompression) or deflated.</summary>
    public static byte[] ZipRaw(params (string Name, byte[] Data, bool Deflate)[] entries)
    {
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, data, deflate) in entries)
            {
                var e = zip.CreateEntry(name, deflate ? CompressionLevel.Optimal : CompressionLevel.NoCompression);
                using var s = e.Open();
                s.Write(data);
            }
        }
        return ms.ToArray();
    }
}
