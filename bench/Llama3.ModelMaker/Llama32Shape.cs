using Llama3.Formats.Gguf;
using Llama3.Kernels.Quant;

namespace Llama3.ModelMaker;

/// <summary>
/// One benchmark file's weight types, after llama.cpp's: <paramref name="FileType"/> is its <c>llama_ftype</c>
/// number (general.file_type), the others the types of the 2-D tensors.
/// </summary>
internal sealed record Variant(string Name, uint FileType, GgmlType Weights, GgmlType Embedding, GgmlType Output, GgmlType AttnV, GgmlType FfnDown)
{
    /// <summary>
    /// F16 (MOSTLY_F16 = 1), Q8_0 (7), Q4_0 (2; output Q6_K, as llama-quantize does) and a Q4_K_M-like mix (15;
    /// Q6_K for attn_v, ffn_down and output — llama-quantize gives Q6_K to only some layers' attn_v and ffn_down).
    /// </summary>
    public static readonly Variant[] All =
    [
        new("F16", 1, GgmlType.F16, GgmlType.F16, GgmlType.F16, GgmlType.F16, GgmlType.F16),
        new("Q8_0", 7, GgmlType.Q8_0, GgmlType.Q8_0, GgmlType.Q8_0, GgmlType.Q8_0, GgmlType.Q8_0),
        new("Q4_0", 2, GgmlType.Q4_0, GgmlType.Q4_0, GgmlType.Q6_K, GgmlType.Q4_0, GgmlType.Q4_0),
        new("Q4_K_M", 15, GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q6_K, GgmlType.Q6_K),
    ];

    public string FileName => $"llama3.2-1b-shape-{Name}.gguf";
}

/// <summary>
/// Llama 3.2 1B's shape (Meta's params.json / Hugging Face config.json for Llama-3.2-1B) as llama.cpp's
/// convert_hf_to_gguf.py writes it: arch <c>llama</c>, tensor names and ggml-order dimensions, metadata keys and types,
/// Llama 3.1 RoPE scaling as the <c>rope_freqs.weight</c> tensor. Untied here (output.weight written), so the output
/// projection is a separate read, as it is for every larger Llama.
/// </summary>
internal static class Llama32Shape
{
    public const int Dim = 2048, Layers = 16, Heads = 32, KvHeads = 8, HeadDim = 64, FfnDim = 8192, Vocab = 128256;
    public const int Context = 131072;
    public const float RopeTheta = 500000f, NormEps = 1e-5f;
    public const double RopeFactor = 32, LowFreqFactor = 1, HighFreqFactor = 4;
    public const int OriginalContext = 8192;

    private const ulong Seed = 0x4c6c616d61333231; // fixed: the same file every time

    /// <summary>A writer for the whole file; tensor data is made while it is written (or zeros, when dry).</summary>
    public static GgufWriter Build(Variant v, GgufFile tokenizerSource, bool dry)
    {
        var w = new GgufWriter();
        void U32(string key, uint value) => w.AddMetadata(key, new GgufValue(GgufValueType.UInt32, value));
        void F32(string key, float value) => w.AddMetadata(key, new GgufValue(GgufValueType.Float32, value));
        void Str(string key, string value) => w.AddMetadata(key, new GgufValue(GgufValueType.String, value));

        // The keys and types convert_hf_to_gguf.py writes for a Llama (gguf-py's add_* methods).
        Str("general.architecture", "llama");
        Str("general.name", $"Llama 3.2 1B shape, random weights, {v.Name}");
        U32("llama.block_count", Layers);
        U32("llama.context_length", Context);
        U32("llama.embedding_length", Dim);
        U32("llama.feed_forward_length", FfnDim);
        U32("llama.attention.head_count", Heads);
        U32("llama.attention.head_count_kv", KvHeads);
        F32("llama.rope.freq_base", RopeTheta);
        F32("llama.attention.layer_norm_rms_epsilon", NormEps);
        U32("llama.attention.key_length", HeadDim);
        U32("llama.attention.value_length", HeadDim);
        U32("general.file_type", v.FileType);
        U32("llama.vocab_size", Vocab);
        U32("llama.rope.dimension_count", HeadDim);
        // The real Llama 3 vocabulary, merges, special ids and chat template, as stored.
        foreach (string key in tokenizerSource.MetadataKeys)
            if (key.StartsWith("tokenizer.", StringComparison.Ordinal))
                w.AddMetadata(key, tokenizerSource.Metadata[key]);
        U32("general.quantization_version", 2); // GGML_QUANT_VERSION

        ulong index = 0;
        void Matrix(string name, long columns, long rows, GgmlType type)
        {
            ulong seed = Seed ^ (++index * 0x9E3779B97F4A7C15);
            w.AddTensor(name, [columns, rows], type, s => RandomBlocks.Write(s, type, columns * rows, seed, dry));
        }
        void Norm(string name)
        {
            // 1 + small noise, F32, as norm weights are stored.
            var rng = new WyRand(Seed ^ (++index * 0x9E3779B97F4A7C15));
            var values = new float[Dim];
            for (int i = 0; i < Dim; i++) values[i] = 1f + (float)((rng.NextDouble() - 0.5) * 0.1);
            w.AddTensor(name, [Dim], GgmlType.F32, Bytes(values));
        }

        int kvDim = KvHeads * HeadDim;
        Matrix("token_embd.weight", Dim, Vocab, v.Embedding);
        w.AddTensor("rope_freqs.weight", [HeadDim / 2], GgmlType.F32, Bytes(RopeFactors(RopeFactor)));
        for (int l = 0; l < Layers; l++)
        {
            string p = $"blk.{l}.";
            Norm(p + "attn_norm.weight");
            Matrix(p + "attn_q.weight", Dim, Heads * HeadDim, v.Weights);
            Matrix(p + "attn_k.weight", Dim, kvDim, v.Weights);
            Matrix(p + "attn_v.weight", Dim, kvDim, v.AttnV);
            Matrix(p + "attn_output.weight", Heads * HeadDim, Dim, v.Weights);
            Norm(p + "ffn_norm.weight");
            Matrix(p + "ffn_gate.weight", Dim, FfnDim, v.Weights);
            Matrix(p + "ffn_up.weight", Dim, FfnDim, v.Weights);
            Matrix(p + "ffn_down.weight", FfnDim, Dim, v.FfnDown);
        }
        Norm("output_norm.weight");
        Matrix("output.weight", Dim, Vocab, v.Output);
        return w;
    }

    /// <summary>
    /// The <c>rope_freqs</c> factors of convert_hf_to_gguf.py (LlamaModel, rope_type llama3), which llama.cpp divides
    /// each frequency by: 1 for short wavelengths, the factor for long ones, and between them the inverse of Meta's
    /// <c>apply_scaling</c> blend. In float32 as torch computes it (<c>a / t</c> is <c>t.reciprocal() * a</c>).
    /// </summary>
    public static float[] RopeFactors(double factor)
    {
        var factors = new float[HeadDim / 2];
        float lowWavelen = (float)(OriginalContext / LowFreqFactor), highWavelen = (float)(OriginalContext / HighFreqFactor);
        for (int i = 0; i < factors.Length; i++)
        {
            // freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
            float freq = 1f / MathF.Pow(RopeTheta, (float)(2 * i) / HeadDim);
            float wavelen = 1f / freq * (float)(2 * Math.PI);
            if (wavelen < highWavelen) factors[i] = 1;
            else if (wavelen > lowWavelen) factors[i] = (float)factor;
            else
            {
                float smooth = (1f / wavelen * OriginalContext - (float)LowFreqFactor) / (float)(HighFreqFactor - LowFreqFactor);
                factors[i] = 1f / ((1 - smooth) / (float)factor + smooth);
            }
        }
        return factors;
    }

    private static byte[] Bytes(float[] values) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
