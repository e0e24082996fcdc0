using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Llama3.Kernels.Quant;

namespace Llama3.ModelMaker;

/// <summary>wyrand (Wang Yi's 64-bit generator): one multiply per 8 bytes, so gigabytes of weights take seconds.</summary>
internal struct WyRand(ulong seed)
{
    private ulong _state = seed;

    public ulong Next()
    {
        _state += 0xa0761d6478bd642f;
        ulong high = Math.BigMul(_state, _state ^ 0xe7037ed1a0b428db, out ulong low);
        return high ^ low;
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    public void Fill(Span<byte> bytes)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(bytes);
        for (int i = 0; i < words.Length; i++) words[i] = Next();
        for (int i = words.Length * sizeof(ulong); i < bytes.Length; i++) bytes[i] = (byte)Next();
    }
}

/// <summary>
/// Random weights written straight in their stored block format, never as floats through a quantizer (1.5 billion
/// weights would take minutes): random quants with scales of realistic size, so the weights come out with a standard
/// deviation near 0.02, as a trained Llama's linear layers have, and every value is finite and normal in float32.
/// </summary>
/// <remarks>Block layouts: ggml-common.h (<c>block_q8_0</c>, <c>block_q4_0</c>, <c>block_q4_K</c>, <c>block_q6_K</c>).</remarks>
internal static class RandomBlocks
{
    /// <summary>The standard deviation the weights aim at.</summary>
    public const double WeightSd = 0.02;

    private const int ChunkBytes = 1 << 20;

    // F16 weights: 65536 draws of N(0, WeightSd) as half bits, indexed by 16 random bits.
    private static readonly ushort[] NormalHalves = BuildNormalHalves();

    /// <summary>Streams <paramref name="elements"/> random weights of <paramref name="type"/>, in chunks of about 1 MiB.</summary>
    /// <param name="dry">Write zeros of the same length (to learn a file's size without making its data).</param>
    public static void Write(Stream destination, GgmlType type, long elements, ulong seed, bool dry)
    {
        var q = QuantTable.Get(type);
        long blocks = elements / q.BlockSize;
        int perChunk = Math.Max(1, ChunkBytes / q.BytesPerBlock);
        var chunk = new byte[perChunk * q.BytesPerBlock];
        var rng = new WyRand(seed);
        for (long done = 0; done < blocks; done += perChunk)
        {
            int n = (int)Math.Min(perChunk, blocks - done);
            var span = chunk.AsSpan(0, n * q.BytesPerBlock);
            if (!dry) Fill(span, type, ref rng);
            destination.Write(span);
        }
    }

    private static void Fill(Span<byte> span, GgmlType type, ref WyRand rng)
    {
        rng.Fill(span); // the quants; the fields below get their structure
        switch (type)
        {
            case GgmlType.F16: FillF16(span); break;
            case GgmlType.Q8_0: FillQ8_0(span, ref rng); break;
            case GgmlType.Q4_0: FillQ4_0(span, ref rng); break;
            case GgmlType.Q4_K: FillQ4_K(span, ref rng); break;
            case GgmlType.Q6_K: FillQ6_K(span, ref rng); break;
            default: throw new NotSupportedException($"no random writer for {QuantTable.Get(type).Name}");
        }
    }

    private static void FillF16(Span<byte> span)
    {
        var halves = MemoryMarshal.Cast<byte, ushort>(span);
        for (int i = 0; i < halves.Length; i++) halves[i] = NormalHalves[halves[i]];
    }

    // block_q8_0: f16 d, 32 int8. Uniform int8 has sd 73.6, so d ~ 0.02 / 73.6; -128 becomes -127, as ggml's
    // quantizer (round(x * 127 / amax)) never writes it.
    private static void FillQ8_0(Span<byte> span, ref WyRand rng)
    {
        const int bytes = 34;
        var min = Vector256.Create((sbyte)-127);
        for (int b = 0; b < span.Length; b += bytes)
        {
            Half(span[b..], Scale(WeightSd / 73.6, ref rng));
            var qs = MemoryMarshal.Cast<byte, sbyte>(span.Slice(b + 2, 32));
            Vector256.Max(Vector256.Create<sbyte>(qs), min).CopyTo(qs);
        }
    }

    // block_q4_0: f16 d, 16 bytes of nibbles; x = d * (q - 8), and q - 8 uniform in -8..7 has sd 4.61.
    private static void FillQ4_0(Span<byte> span, ref WyRand rng)
    {
        const int bytes = 18;
        for (int b = 0; b < span.Length; b += bytes) Half(span[b..], Scale(WeightSd / 4.61, ref rng));
    }

    // block_q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles; x = d*sc*q - dmin*m.
    // sc in 32..63 and m = sc ± 2 with dmin = 7.5 d: each sub-block is centred near zero (7.5 = the mean nibble),
    // as a quantizer's min is; q uniform in 0..15 has sd 4.61 and sc averages 47.5.
    private static void FillQ4_K(Span<byte> span, ref WyRand rng)
    {
        const int bytes = 144;
        Span<int> sc = stackalloc int[8], m = stackalloc int[8];
        for (int b = 0; b < span.Length; b += bytes)
        {
            var block = span.Slice(b, bytes);
            float d = Scale(WeightSd / (4.61 * 47.5), ref rng);
            Half(block, d);
            Half(block[2..], 7.5f * RoundHalf(d));
            ulong r = rng.Next();
            for (int j = 0; j < 8; j++, r >>= 8)
            {
                sc[j] = 32 + (int)(r & 31);
                m[j] = Math.Clamp(sc[j] + (int)((r >> 5) % 5) - 2, 0, 63);
            }
            PackScaleMinK4(sc, m, block.Slice(4, 12));
        }
    }

    // block_q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d; x = d * scale * (q - 32), q - 32 uniform in
    // -32..31 (sd 18.47). Scales of 32..127 with either sign (ggml's quantizer writes both), averaging 79.5 in size.
    private static void FillQ6_K(Span<byte> span, ref WyRand rng)
    {
        const int bytes = 210;
        for (int b = 0; b < span.Length; b += bytes)
        {
            var block = span.Slice(b, bytes);
            var scales = block.Slice(192, 16);
            for (int j = 0; j < 16; j++)
            {
                int v = 32 + scales[j] % 96;
                scales[j] = (byte)(sbyte)((scales[j] & 0x80) != 0 ? -v : v);
            }
            Half(block[208..], Scale(WeightSd / (18.47 * 79.5), ref rng));
        }
    }

    /// <summary>
    /// The inverse of ggml's <c>get_scale_min_k4</c>: sub-blocks 0..3 keep scale and min in the low 6 bits of bytes
    /// j and j + 4; sub-blocks 4..7 keep their low 4 bits in byte j + 4 (scale low nibble, min high nibble) and their
    /// top 2 bits in the top bits of bytes j - 4 (scale) and j (min).
    /// </summary>
    public static void PackScaleMinK4(ReadOnlySpan<int> sc, ReadOnlySpan<int> m, Span<byte> q)
    {
        for (int j = 0; j < 4; j++)
        {
            q[j] = (byte)(sc[j] | (sc[j + 4] >> 4) << 6);
            q[j + 4] = (byte)(m[j] | (m[j + 4] >> 4) << 6);
            q[j + 8] = (byte)((sc[j + 4] & 0xF) | (m[j + 4] & 0xF) << 4);
        }
    }

    // A block scale: the base size times 0.5..1.5, so blocks differ as real ones do.
    private static float Scale(double size, ref WyRand rng) => (float)(size * (0.5 + rng.NextDouble()));

    private static float RoundHalf(float v) => (float)(Half)v;

    private static void Half(Span<byte> destination, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(destination, BitConverter.HalfToUInt16Bits((Half)value));

    private static ushort[] BuildNormalHalves()
    {
        var rng = new WyRand(0x6e6f726d616c);
        var table = new ushort[65536];
        for (int i = 0; i < table.Length; i += 2)
        {
            // Box-Muller: two standard normals from two uniforms.
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            double radius = Math.Sqrt(-2 * Math.Log(u1)) * WeightSd;
            table[i] = BitConverter.HalfToUInt16Bits((Half)(radius * Math.Cos(2 * Math.PI * u2)));
            table[i + 1] = BitConverter.HalfToUInt16Bits((Half)(radius * Math.Sin(2 * Math.PI * u2)));
        }
        return table;
    }
}
