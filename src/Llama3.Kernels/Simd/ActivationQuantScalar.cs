using System.Buffers.Binary;
using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Simd;

/// <summary>
/// Scalar twins of <see cref="ActivationQuant"/>: an activation row (floats) converted to the type a weight row's dot
/// product takes (ggml-cpu's <c>vec_dot_type</c>, the <see cref="QuantType.VecDotType"/> column of the table).
/// Written for clarity; the SIMD versions must give the same bytes.
/// </summary>
/// <remarks>
/// <para>Two roundings of Q8_0 and Q8_1 exist in ggml and they differ in rare cases:</para>
/// <list type="bullet">
/// <item><c>quantize_row_q8_0_ref</c> (ggml-quants.c, used by ggml-cpu only when built without SIMD):
/// <c>d = amax / 127</c>, <c>id = d != 0 ? 1 / d : 0</c>, <c>q = roundf(x * id)</c>: ties away from zero.
/// Here <see cref="QuantizeQ8_0Reference"/> and <see cref="QuantizeQ8_1Reference"/>.</item>
/// <item>ggml-cpu's x86 <c>quantize_row_q8_0</c> (arch/x86/quants.c, AVX/AVX2 builds, and the same arithmetic in
/// the repacking path's <c>ggml_quantize_mat_q8_0_4x8</c>): <c>d = amax / 127</c> but
/// <c>id = amax != 0 ? 127 / amax : 0</c>, which is not always the same float as <c>1 / d</c>, and
/// <c>_mm256_round_ps(.., _MM_ROUND_NEAREST)</c>: ties to even. This is what llama.cpp computes on the x86 machine
/// that made the references in ../shared/reference/llamacpp, so it is what the table uses:
/// <see cref="QuantizeQ8_0"/> and <see cref="QuantizeQ8_1"/>.</item>
/// </list>
/// <para>Both divide by the float <c>d</c> (through <c>id</c>), not by the f16-rounded <c>d</c> that is stored; the
/// stored <c>d</c> is <c>GGML_FP32_TO_FP16(d)</c>, round to nearest even (as <see cref="Half"/>'s conversion).
/// Q8_K has one quantizer, <c>quantize_row_q8_K_ref</c> (ggml-cpu's <c>quantize_row_q8_K</c> calls it on every
/// architecture): see <see cref="QuantizeQ8_K"/>.</para>
/// <para>Results for rows holding NaN are unspecified (ggml's are too).</para>
/// </remarks>
public static class ActivationQuantScalar
{
    /// <summary>
    /// Q8_0 as ggml-cpu on x86 (<c>quantize_row_q8_0</c>, AVX2): per 32 values <c>amax = max |x|</c>,
    /// <c>d = amax / 127</c> stored as f16, <c>q = round_half_even(x * (127 / amax))</c>.
    /// </summary>
    /// <param name="x">A whole number of 32-blocks.</param>
    /// <param name="destination">34 bytes per block (ggml-common.h <c>block_q8_0</c>).</param>
    public static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> destination)
    {
        int blocks = ActivationQuant.CheckRow(x, destination, Blocks32.BlockSize, ActivationQuant.Q8_0Bytes, "Q8_0");
        for (int i = 0; i < blocks; i++)
        {
            ReadOnlySpan<float> v = x.Slice(i * 32, 32);
            Span<byte> block = destination.Slice(i * ActivationQuant.Q8_0Bytes, ActivationQuant.Q8_0Bytes);
            float amax = AbsMax(v);
            float d = amax / 127f;
            float id = amax != 0 ? 127f / amax : 0f;
            WriteHalf(block, d);
            for (int j = 0; j < 32; j++)
                block[2 + j] = (byte)SaturateToSByte(MathF.Round(v[j] * id, MidpointRounding.ToEven));
        }
    }

    /// <summary>
    /// Q8_0 exactly as ggml's reference <c>quantize_row_q8_0_ref</c>: <c>id = 1 / (amax / 127)</c>,
    /// <c>q = roundf(x * id)</c> (ties away from zero).
    /// </summary>
    public static void QuantizeQ8_0Reference(ReadOnlySpan<float> x, Span<byte> destination)
    {
        int blocks = ActivationQuant.CheckRow(x, destination, Blocks32.BlockSize, ActivationQuant.Q8_0Bytes, "Q8_0");
        for (int i = 0; i < blocks; i++)
        {
            ReadOnlySpan<float> v = x.Slice(i * 32, 32);
            Span<byte> block = destination.Slice(i * ActivationQuant.Q8_0Bytes, ActivationQuant.Q8_0Bytes);
            float d = AbsMax(v) / 127f;
            float id = d != 0 ? 1f / d : 0f;
            WriteHalf(block, d);
            for (int j = 0; j < 32; j++)
                block[2 + j] = (byte)SaturateToSByte(MathF.Round(v[j] * id, MidpointRounding.AwayFromZero));
        }
    }

    /// <summary>
    /// Q8_1 as ggml-cpu on x86 (<c>quantize_row_q8_1</c>, AVX2): the quants and <c>d</c> of
    /// <see cref="QuantizeQ8_0"/>, and <c>s = f16(d * sum(q))</c> with the float (not the f16) <c>d</c>.
    /// </summary>
    /// <param name="x">A whole number of 32-blocks.</param>
    /// <param name="destination">36 bytes per block (ggml-common.h <c>block_q8_1</c>: d, s, 32 quants).</param>
    public static void QuantizeQ8_1(ReadOnlySpan<float> x, Span<byte> destination) => QuantizeQ8_1Core(x, destination, reference: false);

    /// <summary>Q8_1 exactly as ggml's reference <c>quantize_row_q8_1_ref</c> (the rounding of <see cref="QuantizeQ8_0Reference"/>).</summary>
    public static void QuantizeQ8_1Reference(ReadOnlySpan<float> x, Span<byte> destination) => QuantizeQ8_1Core(x, destination, reference: true);

    private static void QuantizeQ8_1Core(ReadOnlySpan<float> x, Span<byte> destination, bool reference)
    {
        int blocks = ActivationQuant.CheckRow(x, destination, Blocks32.BlockSize, ActivationQuant.Q8_1Bytes, "Q8_1");
        for (int i = 0; i < blocks; i++)
        {
            ReadOnlySpan<float> v = x.Slice(i * 32, 32);
            Span<byte> block = destination.Slice(i * ActivationQuant.Q8_1Bytes, ActivationQuant.Q8_1Bytes);
            float amax = AbsMax(v);
            float d = amax / 127f;
            float id = reference ? (d != 0 ? 1f / d : 0f) : (amax != 0 ? 127f / amax : 0f);
            MidpointRounding rounding = reference ? MidpointRounding.AwayFromZero : MidpointRounding.ToEven;
            int sum = 0;
            for (int j = 0; j < 32; j++)
            {
                int q = SaturateToSByte(MathF.Round(v[j] * id, rounding));
                block[4 + j] = (byte)q;
                sum += q;
            }
            WriteHalf(block, d);
            WriteHalf(block[2..], d * sum);
        }
    }

    /// <summary>
    /// Q8_K as ggml's <c>quantize_row_q8_K_ref</c> (the only Q8_K quantizer ggml-cpu has): per 256 values,
    /// <c>max</c> = the first value of largest magnitude (sign kept); all zero gives <c>d = 0</c> and zero quants;
    /// otherwise <c>iscale = -127 / max</c>, <c>q = min(127, nearest_int(iscale * x))</c> (nearest_int adds
    /// 1.5 * 2^23 and reads the mantissa: round half to even), <c>d = 1 / iscale</c> stored as f32, and
    /// <c>bsums[k]</c> = the int16 sum of quants <c>16k .. 16k + 15</c>. The value of largest magnitude becomes
    /// exactly -127, so <c>d</c> has the opposite sign of <c>max</c>.
    /// </summary>
    /// <param name="x">A whole number of 256-blocks.</param>
    /// <param name="destination">292 bytes per block (ggml-common.h <c>block_q8_K</c>: f32 d, 256 quants, 16 int16 bsums).</param>
    public static void QuantizeQ8_K(ReadOnlySpan<float> x, Span<byte> destination)
    {
        int blocks = ActivationQuant.CheckRow(x, destination, BlocksK.BlockSize, ActivationQuant.Q8_KBytes, "Q8_K");
        for (int i = 0; i < blocks; i++)
        {
            ReadOnlySpan<float> v = x.Slice(i * 256, 256);
            Span<byte> block = destination.Slice(i * ActivationQuant.Q8_KBytes, ActivationQuant.Q8_KBytes);
            float max = 0, amax = 0;
            for (int j = 0; j < 256; j++)
            {
                float ax = MathF.Abs(v[j]);
                if (ax > amax)
                {
                    amax = ax;
                    max = v[j];
                }
            }
            if (amax == 0)
            {
                // ggml writes d = 0 and zero quants and leaves bsums unwritten; zeros are what they would sum to.
                block.Clear();
                continue;
            }
            float iscale = -127f / max;
            for (int k = 0; k < 16; k++)
            {
                int sum = 0;
                for (int l = 0; l < 16; l++)
                {
                    int q = Math.Min(127, (int)MathF.Round(iscale * v[16 * k + l], MidpointRounding.ToEven));
                    block[4 + 16 * k + l] = (byte)(sbyte)q;
                    sum += q;
                }
                BinaryPrimitives.WriteInt16LittleEndian(block[(4 + 256 + 2 * k)..], (short)sum);
            }
            BinaryPrimitives.WriteSingleLittleEndian(block, 1 / iscale);
        }
    }

    /// <summary>
    /// F16: each value rounded to the nearest half, ties to even (ggml-cpu's <c>ggml_cpu_fp32_to_fp16</c>, F16C
    /// <c>_mm_cvtps_ph(.., 0)</c> or the same rounding in software).
    /// </summary>
    /// <param name="x">Any number of values.</param>
    /// <param name="destination">2 bytes per value, little-endian.</param>
    public static void ToF16(ReadOnlySpan<float> x, Span<byte> destination)
    {
        ActivationQuant.CheckRow(x, destination, 1, 2, "F16");
        for (int i = 0; i < x.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], BitConverter.HalfToUInt16Bits((Half)x[i]));
    }

    /// <summary>
    /// BF16: each value rounded to the nearest bfloat16, ties to even; NaN keeps its upper bits and is made quiet
    /// (ggml-impl.h <c>ggml_compute_fp32_to_bf16</c>). On CPUs with AVX512-BF16, ggml-cpu converts rows with
    /// <c>vcvtne2ps2bf16</c>, which also flushes subnormal inputs and results to zero; that differs only below
    /// 2^-126, far under anything an activation holds.
    /// </summary>
    public static void ToBF16(ReadOnlySpan<float> x, Span<byte> destination)
    {
        ActivationQuant.CheckRow(x, destination, 1, 2, "BF16");
        for (int i = 0; i < x.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], RoundToBFloat16(x[i]));
    }

    /// <summary>F32: the values themselves, little-endian (ggml's F32 weights take F32 activations).</summary>
    public static void ToF32(ReadOnlySpan<float> x, Span<byte> destination)
    {
        ActivationQuant.CheckRow(x, destination, 1, 4, "F32");
        for (int i = 0; i < x.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(destination[(4 * i)..], x[i]);
    }

    /// <summary>The bits of the bfloat16 nearest to <paramref name="value"/> (ggml_compute_fp32_to_bf16).</summary>
    public static ushort RoundToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFFFFFF) > 0x7F800000)
            return (ushort)((bits >> 16) | 64);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    private static float AbsMax(ReadOnlySpan<float> v)
    {
        float amax = 0;
        foreach (float f in v)
            amax = MathF.Max(amax, MathF.Abs(f));
        return amax;
    }

    /// <summary>
    /// An integral float to a signed byte, saturating as ggml's <c>_mm256_packs_epi32</c>/<c>_mm256_packs_epi16</c>
    /// do (finite rows never need it: <c>|x * id| &lt;= 127</c> up to one rounding).
    /// </summary>
    private static int SaturateToSByte(float q) => (int)Math.Clamp(q, -128f, 127f);

    private static void WriteHalf(Span<byte> destination, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(destination, BitConverter.HalfToUInt16Bits((Half)value));
}
