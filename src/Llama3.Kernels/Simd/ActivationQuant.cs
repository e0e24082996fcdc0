using System.Buffers.Binary;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Simd;

/// <summary>
/// Activation rows converted to the type a weight type's dot product takes (ggml-cpu's <c>from_float</c> of
/// <c>type_traits_cpu[vec_dot_type]</c>): Q8_0, Q8_1, Q8_K, F16, BF16, F32. The SIMD versions give the same bytes as
/// their scalar twins in <see cref="ActivationQuantScalar"/>, where the rounding rules are described.
/// </summary>
/// <remarks>
/// Every quantizer takes a row that is a whole number of blocks (Q8_0 and Q8_1: 32 values, Q8_K: 256) and
/// writes them to the start of the destination, which may be longer. Only the per-block scalar arithmetic
/// (<c>d</c>, <c>id</c>) is done outside vectors, with exactly the scalar twin's operations, so the bytes match.
/// </remarks>
public static unsafe class ActivationQuant
{
    /// <summary>Bytes of one Q8_0 block: f16 d, 32 quants.</summary>
    public const int Q8_0Bytes = 2 + 32;

    /// <summary>Bytes of one Q8_1 block: f16 d, f16 s, 32 quants.</summary>
    public const int Q8_1Bytes = 2 + 2 + 32;

    /// <summary>Bytes of one Q8_K block: f32 d, 256 quants, 16 int16 block sums.</summary>
    public const int Q8_KBytes = 4 + 256 + 32;

    /// <summary>Q8_0 with ggml-cpu's x86 rounding (see <see cref="ActivationQuantScalar.QuantizeQ8_0"/>).</summary>
    public static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> destination) =>
        QuantizeQ8_0(x, destination, KernelPaths.Best);

    /// <summary>Q8_1 with ggml-cpu's x86 rounding (see <see cref="ActivationQuantScalar.QuantizeQ8_1"/>).</summary>
    public static void QuantizeQ8_1(ReadOnlySpan<float> x, Span<byte> destination) =>
        QuantizeQ8_1(x, destination, KernelPaths.Best);

    /// <summary>Q8_K as ggml's <c>quantize_row_q8_K_ref</c> (see <see cref="ActivationQuantScalar.QuantizeQ8_K"/>).</summary>
    public static void QuantizeQ8_K(ReadOnlySpan<float> x, Span<byte> destination) =>
        QuantizeQ8_K(x, destination, KernelPaths.Best);

    /// <summary>F16, round to nearest even: <see cref="TensorPrimitives.ConvertToHalf"/> (the library is vectorized).</summary>
    public static void ToF16(ReadOnlySpan<float> x, Span<byte> destination)
    {
        CheckRow(x, destination, 1, 2, "F16");
        TensorPrimitives.ConvertToHalf(x, MemoryMarshal.Cast<byte, Half>(destination[..(2 * x.Length)]));
    }

    /// <summary>BF16, round to nearest even, NaN made quiet (see <see cref="ActivationQuantScalar.ToBF16"/>).</summary>
    public static void ToBF16(ReadOnlySpan<float> x, Span<byte> destination) => ToBF16(x, destination, KernelPaths.Best);

    /// <summary>F32: the values copied as little-endian bytes.</summary>
    public static void ToF32(ReadOnlySpan<float> x, Span<byte> destination)
    {
        CheckRow(x, destination, 1, 4, "F32");
        MemoryMarshal.AsBytes(x).CopyTo(destination);
    }

    internal static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> destination, KernelPath path)
    {
        if (path == KernelPath.Scalar)
        {
            ActivationQuantScalar.QuantizeQ8_0(x, destination);
            return;
        }
        int blocks = CheckRow(x, destination, 32, Q8_0Bytes, "Q8_0");
        fixed (float* px = x)
        fixed (byte* py = destination)
            Blocks32(px, py, blocks, q81: false, path);
    }

    internal static void QuantizeQ8_1(ReadOnlySpan<float> x, Span<byte> destination, KernelPath path)
    {
        if (path == KernelPath.Scalar)
        {
            ActivationQuantScalar.QuantizeQ8_1(x, destination);
            return;
        }
        int blocks = CheckRow(x, destination, 32, Q8_1Bytes, "Q8_1");
        fixed (float* px = x)
        fixed (byte* py = destination)
            Blocks32(px, py, blocks, q81: true, path);
    }

    private static void Blocks32(float* x, byte* y, int blocks, bool q81, KernelPath path)
    {
        if (path == KernelPath.Avx512)
            Blocks32Avx512(x, y, blocks, q81);
        else if (path == KernelPath.Avx2)
            Blocks32Avx2(x, y, blocks, q81);
        else
            Blocks32Vector128(x, y, blocks, q81);
    }

    // One method per instruction set, so that each is compiled alone (code for a wider, unsupported set would be
    // software-emulated and bloat the method past the JIT's inlining budget); the cores are inlined with a constant path.
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Blocks32Avx512(float* x, byte* y, int blocks, bool q81) => Blocks32Core(x, y, blocks, q81, KernelPath.Avx512);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Blocks32Avx2(float* x, byte* y, int blocks, bool q81) => Blocks32Core(x, y, blocks, q81, KernelPath.Avx2);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Blocks32Vector128(float* x, byte* y, int blocks, bool q81) => Blocks32Core(x, y, blocks, q81, KernelPath.Vector128);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Blocks32Core(float* x, byte* y, int blocks, bool q81, KernelPath path)
    {
        int stride = q81 ? Q8_1Bytes : Q8_0Bytes;
        for (int i = 0; i < blocks; i++)
        {
            byte* block = y + stride * i;
            (float d, int sum) = Quantize32(x + 32 * i, block, block + (q81 ? 4 : 2), path);
            if (q81)
                WriteHalf(block + 2, d * sum);
        }
    }

    /// <summary>
    /// One block of 32 with the x86 rounding: writes f16 <c>d</c> at <paramref name="scale"/> and 32 quants at
    /// <paramref name="quants"/>; returns the float <c>d</c> and the sum of the quants (for Q8_1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float D, int Sum) Quantize32(float* x, byte* scale, byte* quants, KernelPath path)
    {
        if (path == KernelPath.Avx512)
        {
            Vector512<float> v0 = Vector512.Load(x), v1 = Vector512.Load(x + 16);
            Vector512<float> m = Vector512.MaxNative(Vector512.Abs(v0), Vector512.Abs(v1));
            float amax = HorizontalMax(Vector256.MaxNative(m.GetLower(), m.GetUpper()));
            float d = amax / 127f;
            float id = amax != 0 ? 127f / amax : 0f;
            WriteHalf(scale, d);
            Vector512<float> mul = Vector512.Create(id);
            Vector512<int> q0 = Vector512.ConvertToInt32Native(Vector512.Round(v0 * mul));
            Vector512<int> q1 = Vector512.ConvertToInt32Native(Vector512.Round(v1 * mul));
            // vpmovsdb saturates like the packs of ggml's AVX2 code.
            Avx512F.ConvertToVector128SByteWithSaturation(q0).Store((sbyte*)quants);
            Avx512F.ConvertToVector128SByteWithSaturation(q1).Store((sbyte*)quants + 16);
            return (d, Vector512.Sum(q0 + q1));
        }
        if (path == KernelPath.Avx2)
        {
            Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8);
            Vector256<float> v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
            Vector256<float> m = Vector256.MaxNative(
                Vector256.MaxNative(Vector256.Abs(v0), Vector256.Abs(v1)),
                Vector256.MaxNative(Vector256.Abs(v2), Vector256.Abs(v3)));
            float amax = HorizontalMax(m);
            float d = amax / 127f;
            float id = amax != 0 ? 127f / amax : 0f;
            WriteHalf(scale, d);
            Vector256<float> mul = Vector256.Create(id);
            Vector256<int> q0 = Round256(v0 * mul), q1 = Round256(v1 * mul);
            Vector256<int> q2 = Round256(v2 * mul), q3 = Round256(v3 * mul);
            Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3)).Store((sbyte*)quants);
            return (d, Vector256.Sum(q0 + q1 + q2 + q3));
        }
        {
            Vector128<float> max = Vector128<float>.Zero;
            for (int k = 0; k < 8; k++)
                max = Vector128.MaxNative(max, Vector128.Abs(Vector128.Load(x + 4 * k)));
            float amax = HorizontalMax(max);
            float d = amax / 127f;
            float id = amax != 0 ? 127f / amax : 0f;
            WriteHalf(scale, d);
            Vector128<float> mul = Vector128.Create(id);
            Vector128<int> sum = Vector128<int>.Zero;
            for (int k = 0; k < 2; k++)
            {
                float* xk = x + 16 * k;
                Vector128<int> q0 = Round128(Vector128.Load(xk) * mul), q1 = Round128(Vector128.Load(xk + 4) * mul);
                Vector128<int> q2 = Round128(Vector128.Load(xk + 8) * mul), q3 = Round128(Vector128.Load(xk + 12) * mul);
                Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).Store((sbyte*)quants + 16 * k);
                sum += q0 + q1 + q2 + q3;
            }
            return (d, Vector128.Sum(sum));
        }
    }

    internal static void QuantizeQ8_K(ReadOnlySpan<float> x, Span<byte> destination, KernelPath path)
    {
        if (path == KernelPath.Scalar)
        {
            ActivationQuantScalar.QuantizeQ8_K(x, destination);
            return;
        }
        int blocks = CheckRow(x, destination, 256, Q8_KBytes, "Q8_K");
        fixed (float* px = x)
        fixed (byte* py = destination)
        {
            if (path == KernelPath.Avx512)
                Blocks256Avx512(px, py, blocks);
            else if (path == KernelPath.Avx2)
                Blocks256Avx2(px, py, blocks);
            else
                Blocks256Vector128(px, py, blocks);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)] private static void Blocks256Avx512(float* x, byte* y, int blocks) => Blocks256Core(x, y, blocks, KernelPath.Avx512);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Blocks256Avx2(float* x, byte* y, int blocks) => Blocks256Core(x, y, blocks, KernelPath.Avx2);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void Blocks256Vector128(float* x, byte* y, int blocks) => Blocks256Core(x, y, blocks, KernelPath.Vector128);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Blocks256Core(float* x, byte* y, int blocks, KernelPath path)
    {
        for (int i = 0; i < blocks; i++)
            Quantize256(x + 256 * i, y + Q8_KBytes * i, path);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quantize256(float* x, byte* y, KernelPath path)
    {
        // amax over the block, then the first value of that magnitude (its sign matters: iscale = -127 / max).
        float amax = AbsMax256(x, path);
        if (amax == 0)
        {
            new Span<byte>(y, Q8_KBytes).Clear();
            return;
        }
        int first = FirstOfMagnitude256(x, amax, path);
        float iscale = -127f / x[first];
        sbyte* qs = (sbyte*)(y + 4);
        short* bsums = (short*)(y + 4 + 256);
        for (int k = 0; k < 16; k++)
        {
            float* xk = x + 16 * k;
            Vector128<sbyte> q;
            int sum;
            if (path == KernelPath.Avx512)
            {
                Vector512<int> qi = Vector512.Min(
                    Vector512.ConvertToInt32Native(Vector512.Round(Vector512.Load(xk) * Vector512.Create(iscale))),
                    Vector512.Create(127));
                q = Avx512F.ConvertToVector128SByteWithSaturation(qi);
                sum = Vector512.Sum(qi);
            }
            else if (path == KernelPath.Avx2)
            {
                Vector256<float> s = Vector256.Create(iscale);
                Vector256<int> q0 = Vector256.Min(Round256(Vector256.Load(xk) * s), Vector256.Create(127));
                Vector256<int> q1 = Vector256.Min(Round256(Vector256.Load(xk + 8) * s), Vector256.Create(127));
                Vector256<short> q01 = Vector256.Narrow(q0, q1);
                q = Vector128.Narrow(q01.GetLower(), q01.GetUpper());
                sum = Vector256.Sum(q0 + q1);
            }
            else
            {
                Vector128<float> s = Vector128.Create(iscale);
                Vector128<int> c = Vector128.Create(127);
                Vector128<int> q0 = Vector128.Min(Round128(Vector128.Load(xk) * s), c);
                Vector128<int> q1 = Vector128.Min(Round128(Vector128.Load(xk + 4) * s), c);
                Vector128<int> q2 = Vector128.Min(Round128(Vector128.Load(xk + 8) * s), c);
                Vector128<int> q3 = Vector128.Min(Round128(Vector128.Load(xk + 12) * s), c);
                q = Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3));
                sum = Vector128.Sum(q0 + q1 + q2 + q3);
            }
            q.Store(qs + 16 * k);
            bsums[k] = (short)sum;
        }
        BinaryPrimitives.WriteSingleLittleEndian(new Span<byte>(y, 4), 1 / iscale);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float AbsMax256(float* x, KernelPath path)
    {
        if (path == KernelPath.Avx512)
        {
            Vector512<float> m = Vector512<float>.Zero;
            for (int k = 0; k < 16; k++)
                m = Vector512.MaxNative(m, Vector512.Abs(Vector512.Load(x + 16 * k)));
            return HorizontalMax(Vector256.MaxNative(m.GetLower(), m.GetUpper()));
        }
        if (path == KernelPath.Avx2)
        {
            Vector256<float> m = Vector256<float>.Zero;
            for (int k = 0; k < 32; k++)
                m = Vector256.MaxNative(m, Vector256.Abs(Vector256.Load(x + 8 * k)));
            return HorizontalMax(m);
        }
        Vector128<float> m4 = Vector128<float>.Zero;
        for (int k = 0; k < 64; k++)
            m4 = Vector128.MaxNative(m4, Vector128.Abs(Vector128.Load(x + 4 * k)));
        return HorizontalMax(m4);
    }

    /// <summary>The index of the first value with <c>|x| == amax</c>, as the scalar scan's strict <c>&gt;</c> finds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int FirstOfMagnitude256(float* x, float amax, KernelPath path)
    {
        if (path == KernelPath.Avx512)
        {
            Vector512<float> a = Vector512.Create(amax);
            for (int k = 0; k < 16; k++)
            {
                ulong mask = Vector512.Equals(Vector512.Abs(Vector512.Load(x + 16 * k)), a).ExtractMostSignificantBits();
                if (mask != 0)
                    return 16 * k + BitOperations.TrailingZeroCount(mask);
            }
        }
        else if (path == KernelPath.Avx2)
        {
            Vector256<float> a = Vector256.Create(amax);
            for (int k = 0; k < 32; k++)
            {
                uint mask = Vector256.Equals(Vector256.Abs(Vector256.Load(x + 8 * k)), a).ExtractMostSignificantBits();
                if (mask != 0)
                    return 8 * k + BitOperations.TrailingZeroCount(mask);
            }
        }
        else
        {
            Vector128<float> a = Vector128.Create(amax);
            for (int k = 0; k < 64; k++)
            {
                uint mask = Vector128.Equals(Vector128.Abs(Vector128.Load(x + 4 * k)), a).ExtractMostSignificantBits();
                if (mask != 0)
                    return 4 * k + BitOperations.TrailingZeroCount(mask);
            }
        }
        // Only a NaN in the block gets here (its vector maximum need not equal any value): scan as the scalar twin does.
        int first = 0;
        float amaxSeen = 0;
        for (int j = 0; j < 256; j++)
            if (MathF.Abs(x[j]) > amaxSeen)
                (amaxSeen, first) = (MathF.Abs(x[j]), j);
        return first;
    }

    internal static void ToBF16(ReadOnlySpan<float> x, Span<byte> destination, KernelPath path)
    {
        if (path == KernelPath.Scalar)
        {
            ActivationQuantScalar.ToBF16(x, destination);
            return;
        }
        CheckRow(x, destination, 1, 2, "BF16");
        fixed (float* px = x)
        fixed (byte* py = destination)
        {
            if (path == KernelPath.Avx512)
                BF16Avx512(px, (ushort*)py, x.Length);
            else if (path == KernelPath.Avx2)
                BF16Avx2(px, (ushort*)py, x.Length);
            else
                BF16Vector128(px, (ushort*)py, x.Length);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Avx512(float* x, ushort* y, int n) => ToBF16Core(x, y, n, KernelPath.Avx512);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Avx2(float* x, ushort* y, int n) => ToBF16Core(x, y, n, KernelPath.Avx2);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Vector128(float* x, ushort* y, int n) => ToBF16Core(x, y, n, KernelPath.Vector128);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ToBF16Core(float* x, ushort* dst, int n, KernelPath path)
    {
        uint* src = (uint*)x;
        int i = 0;
        if (path == KernelPath.Avx512)
        {
            for (; i + 32 <= n; i += 32)
                Vector512.Narrow(RoundToBFloat16(Vector512.Load(src + i)), RoundToBFloat16(Vector512.Load(src + i + 16))).Store(dst + i);
        }
        else if (path == KernelPath.Avx2)
        {
            for (; i + 16 <= n; i += 16)
                Vector256.Narrow(RoundToBFloat16(Vector256.Load(src + i)), RoundToBFloat16(Vector256.Load(src + i + 8))).Store(dst + i);
        }
        for (; i + 8 <= n; i += 8)
            Vector128.Narrow(RoundToBFloat16(Vector128.Load(src + i)), RoundToBFloat16(Vector128.Load(src + i + 4))).Store(dst + i);
        for (; i < n; i++)
            dst[i] = ActivationQuantScalar.RoundToBFloat16(x[i]);
    }

    // ggml_compute_fp32_to_bf16, lane by lane: NaN -> (bits >> 16) | 64, else round to nearest even.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> RoundToBFloat16(Vector512<uint> bits)
    {
        Vector512<uint> rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) >> 16;
        Vector512<uint> nan = Vector512.GreaterThan(bits & Vector512.Create(0x7FFFFFFFu), Vector512.Create(0x7F800000u));
        return Vector512.ConditionalSelect(nan, (bits >> 16) | Vector512.Create(64u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> RoundToBFloat16(Vector256<uint> bits)
    {
        Vector256<uint> rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One)) >> 16;
        Vector256<uint> nan = Vector256.GreaterThan(bits & Vector256.Create(0x7FFFFFFFu), Vector256.Create(0x7F800000u));
        return Vector256.ConditionalSelect(nan, (bits >> 16) | Vector256.Create(64u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> RoundToBFloat16(Vector128<uint> bits)
    {
        Vector128<uint> rounded = (bits + Vector128.Create(0x7FFFu) + ((bits >> 16) & Vector128<uint>.One)) >> 16;
        Vector128<uint> nan = Vector128.GreaterThan(bits & Vector128.Create(0x7FFFFFFFu), Vector128.Create(0x7F800000u));
        return Vector128.ConditionalSelect(nan, (bits >> 16) | Vector128.Create(64u), rounded);
    }

    /// <summary>Round half to even, then to int32; clamped to the signed-byte range as the scalar twin saturates.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Round256(Vector256<float> v) =>
        Vector256.Clamp(Vector256.ConvertToInt32Native(Vector256.Round(v)), Vector256.Create(-128), Vector256.Create(127));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Round128(Vector128<float> v) =>
        Vector128.Clamp(Vector128.ConvertToInt32Native(Vector128.Round(v)), Vector128.Create(-128), Vector128.Create(127));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector256<float> v) => HorizontalMax(Vector128.MaxNative(v.GetLower(), v.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector128<float> v)
    {
        v = Vector128.MaxNative(v, Vector128.Shuffle(v, Vector128.Create(2, 3, 0, 1)));
        v = Vector128.MaxNative(v, Vector128.Shuffle(v, Vector128.Create(1, 0, 3, 2)));
        return v.ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WriteHalf(byte* destination, float value) =>
        *(ushort*)destination = BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>
    /// Checks that <paramref name="x"/> is a whole number of blocks and that <paramref name="destination"/> holds
    /// them; returns the number of blocks.
    /// </summary>
    internal static int CheckRow(ReadOnlySpan<float> x, Span<byte> destination, int blockSize, int bytesPerBlock, string type)
    {
        if (x.Length % blockSize != 0)
            throw new ArgumentException(
                $"an activation row of {x.Length} values is not a whole number of {type} blocks of {blockSize}", nameof(x));
        int blocks = x.Length / blockSize;
        if (destination.Length < (long)blocks * bytesPerBlock)
            throw new ArgumentException(
                $"{blocks} {type} blocks take {(long)blocks * bytesPerBlock} bytes but the destination has {destination.Length}",
                nameof(destination));
        return blocks;
    }
}
