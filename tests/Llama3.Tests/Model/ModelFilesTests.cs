using Llama3.Kernels.Quant;
using Llama3.Model;

namespace Llama3.Tests.Model;

public class ModelFilesTests
{
    public static TheoryData<string> TinyGgufs => new(Directory.GetFiles(SharedData.Path("models", "tiny"), "tiny-*.gguf")
        .Select(Path.GetFileName).Order()!);

    [Theory]
    [MemberData(nameof(TinyGgufs))]
    public void TinyGgufsDescribeTheShapeTheirReadmeGives(string file)
    {
        // models/tiny/README.md: dim 256, 2 layers, 4 heads (head_dim 64), 2 KV heads, FFN 512, rms eps 1e-5,
        // rope theta 500000, context_length 131072, vocab 512, rope_freqs tensor, untied except tiny-tied-Q8_0.
        using var m = ModelFiles.Open(SharedData.Path("models", "tiny", file));
        var c = m.Config;
        Assert.Equal(ModelFormat.Gguf, m.Format);
        Assert.Equal((256, 2, 4, 2, 64, 512, 512), (c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.VocabSize));
        Assert.Equal(1e-5, c.NormEps);
        Assert.Equal(500000, c.RopeTheta);
        Assert.Equal(131072, c.ContextLength);
        Assert.True(c.HasRopeFreqsTensor);
        Assert.Null(c.RopeScaling);
        Assert.Equal(file.Contains("tied"), c.TiedEmbeddings);
        string typeName = file["tiny-".Length..^".gguf".Length].Replace("tied-", "");
        Assert.Equal(typeName, QuantTable.Get(m.Get("layers.1.feed_forward.w2.weight").Type).Name);
        Assert.Equal(GgmlType.F32, m.Get("norm.weight").Type);
        Assert.Equal([256L, 512L], m.Get("layers.0.feed_forward.w2.weight").Shape);
        Assert.Equal(1, c.BosId);
        Assert.Equal("sentencepiece-bpe", m.Tokenizer!.Kind);
    }

    [Fact]
    public void Stories260KIsALlama2ShapedModel()
    {
        using var m = ModelFiles.Open(SharedData.Path("models", "stories260K.gguf"));
        var c = m.Config;
        Assert.Equal((64, 5, 8, 4, 8, 172, 512), (c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.VocabSize));
        Assert.Equal(10000, c.RopeTheta); // no freq_base key: llama.cpp's default
        Assert.False(c.TiedEmbeddings);
        Assert.Equal([1, 403, 407, 261, 378], m.Tokenizer!.EncodeToIds("Once upon a time", addBos: true));
    }

    [Fact]
    public void HuggingFaceConfigsAreRead()
    {
        using var m = ModelFiles.Open(SharedData.Path("models", "meta-tiny", "hf"));
        var c = m.Config;
        Assert.Equal(ModelFormat.HuggingFace, m.Format);
        Assert.Equal((32, 2, 4, 2, 8, 128, 128256), (c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.VocabSize));
        Assert.Equal(RopeScaling.Llama31(8), c.RopeScaling);
        Assert.False(c.TiedEmbeddings);
        Assert.Equal([128001, 128008, 128009], c.EosIds.Order());
        Assert.Equal(QkLayout.RotateHalf, m.QkLayout);

        using var tied = ModelFiles.Open(SharedData.Path("models", "meta-tiny-32", "hf"));
        Assert.True(tied.Config.TiedEmbeddings);
        Assert.Equal(32, tied.Config.RopeScaling!.Factor);
        Assert.Null(tied.Find("output.weight"));
        Assert.Null(tied.Tokenizer); // that directory ships no tokenizer.json (shared/reference/meta/README.md)
    }

    [Fact]
    public void RopeFactorOptionOverridesTheFiles()
    {
        using var hf = ModelFiles.Open(SharedData.Path("models", "meta-tiny", "hf"), new ModelLoadOptions { RopeFactor = 32 });
        Assert.Equal(RopeScaling.Llama31(32), hf.Config.RopeScaling);
        using var gguf = ModelFiles.Open(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"), new ModelLoadOptions { RopeFactor = 16 });
        Assert.Equal(16, gguf.Config.RopeScaling!.Factor);
        Assert.False(gguf.Config.HasRopeFreqsTensor);
        Assert.Throws<ArgumentException>(() => ModelFiles.Open(SharedData.Path("models", "tiny", "tiny-F32.gguf"), new ModelLoadOptions { RopeFactor = -1 }));
    }

    [Fact]
    public void ShardedAndSingleSafetensorsHoldTheSameBytes()
    {
        using var one = ModelFiles.Open(SharedData.Path("models", "meta-tiny", "hf"));
        using var two = ModelFiles.Open(SharedData.Path("models", "meta-tiny", "hf-sharded"));
        Assert.Equal(one.Tensors.Keys.Order(), two.Tensors.Keys.Order());
        foreach (var (name, t) in one.Tensors)
        {
            var u = two.Get(name);
            Assert.Equal(t.Shape, u.Shape);
            Assert.True(t.Bytes.SequenceEqual(u.Bytes), name);
        }
    }

    [Fact]
    public void HuggingFaceQkRowsAreMetasRowsPermuted()
    {
        // llama3-tiny-BF16.gguf was converted from meta-tiny/hf by gguf-py with convert_hf_to_gguf.py's un-permutation,
        // an outside reference for the permutation: HF row r holds Meta's row MetaRowOfRotateHalfRow(r).
        using var hf = ModelFiles.Open(SharedData.Path("models", "meta-tiny", "hf"));
        using var gguf = ModelFiles.Open(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"));
        int headDim = hf.Config.HeadDim;
        foreach (var (name, t) in hf.Tensors)
        {
            var g = gguf.Get(name);
            Assert.Equal(t.Shape, g.Shape);
            if (t.Type != g.Type)
            {
                // The converter stores the norms as F32: the BF16 values widened exactly.
                Assert.Equal((GgmlType.BF16, GgmlType.F32), (t.Type, g.Type));
                var bf = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(t.Bytes);
                var f32 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(g.Bytes);
                for (int i = 0; i < bf.Length; i++) Assert.Equal(BitConverter.Int32BitsToSingle(bf[i] << 16), f32[i]);
                continue;
            }
            bool permuted = name.EndsWith("wq.weight") || name.EndsWith("wk.weight");
            int rowsDiffering = 0;
            for (int r = 0; r < t.Rows; r++)
            {
                int metaRow = permuted ? ModelFiles.MetaRowOfRotateHalfRow(r, headDim) : r;
                Assert.True(t.Row(r).SequenceEqual(g.Row(metaRow)), $"{name} row {r}");
                if (metaRow != r) rowsDiffering++;
            }
            if (permuted) Assert.True(rowsDiffering > 0);
        }
    }
}

public class MetaCheckpointTests
{
    [Fact]
    public void EveryLayoutOfMetaTinyHoldsTheSameWeights()
    {
        // Bitwise, after undoing Hugging Face's q/k row permutation.
        using var meta = ModelFiles.Open(SharedData.Path("models", "meta-tiny", "meta"));
        Assert.Equal(ModelFormat.Meta, meta.Format);
        foreach (var layout in new[] { "meta-2shard", "hf", "hf-sharded" })
        {
            using var other = ModelFiles.Open(SharedData.Path("models", "meta-tiny", layout));
            Assert.Equal(meta.Config with { EosIds = [] , ChatTemplate = null }, other.Config with { EosIds = [], ChatTemplate = null });
            Assert.Equal(meta.Tensors.Keys.Order(), other.Tensors.Keys.Order());
            foreach (var (name, t) in meta.Tensors)
            {
                var u = other.Get(name);
                Assert.Equal(t.Shape, u.Shape);
                bool permuted = other.QkLayout == QkLayout.RotateHalf && (name.EndsWith("wq.weight") || name.EndsWith("wk.weight"));
                for (int r = 0; r < t.Rows; r++)
                {
                    int metaRow = permuted ? ModelFiles.MetaRowOfRotateHalfRow(r, meta.Config.HeadDim) : r;
                    Assert.True(t.Row(metaRow).SequenceEqual(u.Row(r)), $"{layout} {name} row {r}");
                }
            }
        }
    }

    [Fact]
    public void MetaTiny32IsRecognisedAsTiedWithFactor32()
    {
        // Its params.json only says use_scaled_rope; output.weight is a copy of tok_embeddings (Llama 3.2 ties them).
        using var meta = ModelFiles.Open(SharedData.Path("models", "meta-tiny-32", "meta"));
        Assert.True(meta.Config.TiedEmbeddings);
        Assert.Equal(RopeScaling.Llama31(32), meta.Config.RopeScaling);
        using var hf = ModelFiles.Open(SharedData.Path("models", "meta-tiny-32", "hf"));
        Assert.Equal(hf.Config.RopeScaling, meta.Config.RopeScaling);
        // The untied 3.1-style model keeps factor 8, and the option overrides the rule.
        using var untied = ModelFiles.Open(SharedData.Path("models", "meta-tiny", "meta"));
        Assert.Equal(8, untied.Config.RopeScaling!.Factor);
        using var forced = ModelFiles.Open(SharedData.Path("models", "meta-tiny-32", "meta"), new ModelLoadOptions { RopeFactor = 8 });
        Assert.Equal(8, forced.Config.RopeScaling!.Factor);
    }
}
