using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Simd;

/// <summary>Pieces shared by the vectorized dot products.</summary>
internal static unsafe class QuantDotHelpers
{
    /// <summary>
    /// Every half widened to float (as ggml-cpu's <c>GGML_CPU_FP16_TO_FP32</c> on x86, a table lookup: it measured
    /// 3x faster here than <see cref="Half"/>'s software conversion, which .NET 10 does not map to F16C).
    /// </summary>
    private static readonly float[] HalfTable = BuildHalfTable();

    /// <summary>The little-endian half at <paramref name="p"/>, widened (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* p) => Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(HalfTable), *(ushort*)p);

    /// <summary>The little-endian float at <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Single(byte* p) => Unsafe.ReadUnaligned<float>(p);

    /// <summary>
    /// The sum of <c>a_i * b_i</c> over 16 signed bytes, in 4 int lanes; exact for every input (each product fits
    /// in 16 bits: |-128 * -128| = 2^14). Portable: the JIT maps it to SSE on x86 and AdvSimd on Arm.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot16(Vector128<sbyte> a, Vector128<sbyte> b)
    {
        Vector128<short> lo = Vector128.WidenLower(a) * Vector128.WidenLower(b);
        Vector128<short> hi = Vector128.WidenUpper(a) * Vector128.WidenUpper(b);
        return (Vector128.WidenLower(lo) + Vector128.WidenUpper(lo)) + (Vector128.WidenLower(hi) + Vector128.WidenUpper(hi));
    }

    /// <summary>
    /// <c>[lo | hi]</c> in one vinserti64x4 (<see cref="Vector512.Create(Vector256{byte}, Vector256{byte})"/> goes
    /// through the stack in .NET 10's code).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Join(Vector256<byte> lo, Vector256<byte> hi) =>
        Avx512F.InsertVector256(lo.AsUInt64().ToVector512Unsafe(), hi.AsUInt64(), 1).AsByte();

    /// <summary>The float twin of <see cref="Join(Vector256{byte}, Vector256{byte})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Join(Vector256<float> lo, Vector256<float> hi) =>
        Avx512F.InsertVector256(lo.ToVector512Unsafe(), hi, 1);

    /// <summary>
    /// <c>a * b + c</c>: fused where the hardware has it (FMA on x86, every Arm64), else a multiply and an add (not
    /// <see cref="Vector128.FusedMultiplyAdd(Vector128{float}, Vector128{float}, Vector128{float})"/>, which x86
    /// without FMA emulates one lane at a time).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c)
        : AdvSimd.Arm64.IsSupported ? Vector128.FusedMultiplyAdd(a, b, c)
        : a * b + c;

    /// <summary>
    /// 32 fifth bits (Q5_0, Q5_1: bit <c>j</c> belongs to weight <c>j</c>) spread to 32 bytes of 16 or 0, as ggml's
    /// <c>bytes_from_bits_32</c> (AVX2): byte <c>j</c> takes byte <c>j / 8</c> of <paramref name="qh"/>, keeps bit <c>j % 8</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> FifthBits(uint qh)
    {
        // In-lane byte shuffle: both 128-bit halves of the broadcast hold the 4 bytes, so lane-local indices suffice.
        Vector256<byte> spread = Avx2.Shuffle(Vector256.Create(qh).AsByte(), Vector256.Create(
            (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        Vector256<byte> bit = Vector256.Create(0x8040201008040201UL).AsByte();
        return Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)0x10);
    }

    /// <summary>The 128-bit twin of <see cref="FifthBits(uint)"/> for 16 bits (weights <c>16k .. 16k + 15</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> FifthBits16(uint bits16)
    {
        Vector128<byte> spread = Vector128.Shuffle(Vector128.Create((ushort)bits16).AsByte(),
            Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
        Vector128<byte> bit = Vector128.Create(0x8040201008040201UL).AsByte();
        return Vector128.Equals(spread & bit, bit) & Vector128.Create((byte)0x10);
    }

    /// <summary>
    /// Halves to floats, exactly as <see cref="Float16.HalfToSingle"/> (subnormals, infinities and NaN payloads
    /// included; a signaling NaN stays signaling, where .NET's conversion sets the quiet bit): <paramref name="halves"/>
    /// are the bits sign-extended to 32. Sign, exponent and mantissa are moved
    /// into a float's places and the value scaled by 2^112 (the exponent bias difference; exact, and subnormal
    /// halves come out right because their float image is subnormal too); exponent 31 becomes 255.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfToSingle(Vector512<int> halves)
    {
        Vector512<int> bits = (halves << 13) & Vector512.Create(unchecked((int)0x8FFFE000));
        Vector512<float> value = bits.AsSingle() * Vector512.Create(TwoTo112);
        Vector512<int> special = Vector512.Equals(halves & Vector512.Create(0x7C00), Vector512.Create(0x7C00));
        return Vector512.ConditionalSelect(special.AsSingle(), (bits | Vector512.Create(0x7F800000)).AsSingle(), value);
    }

    /// <summary>The 256-bit twin of <see cref="HalfToSingle(Vector512{int})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> HalfToSingle(Vector256<int> halves)
    {
        Vector256<int> bits = (halves << 13) & Vector256.Create(unchecked((int)0x8FFFE000));
        Vector256<float> value = bits.AsSingle() * Vector256.Create(TwoTo112);
        Vector256<int> special = Vector256.Equals(halves & Vector256.Create(0x7C00), Vector256.Create(0x7C00));
        return Vector256.ConditionalSelect(special.AsSingle(), (bits | Vector256.Create(0x7F800000)).AsSingle(), value);
    }

    /// <summary>The 128-bit twin of <see cref="HalfToSingle(Vector512{int})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> HalfToSingle(Vector128<int> halves)
    {
        Vector128<int> bits = (halves << 13) & Vector128.Create(unchecked((int)0x8FFFE000));
        Vector128<float> value = bits.AsSingle() * Vector128.Create(TwoTo112);
        Vector128<int> special = Vector128.Equals(halves & Vector128.Create(0x7C00), Vector128.Create(0x7C00));
        return Vector128.ConditionalSelect(special.AsSingle(), (bits | Vector128.Create(0x7F800000)).AsSingle(), value);
    }

    /// <summary>2^112 = 2^(127 - 15), the ratio of the float and half exponent biases.</summary>
    private static readonly float TwoTo112 = BitConverter.Int32BitsToSingle((112 + 127) << 23);

    private static float[] BuildHalfTable()
    {
        var table = new float[65536];
        for (int i = 0; i < table.Length; i++)
            table[i] = Float16.HalfToSingle((ushort)i);
        return table;
    }
}
