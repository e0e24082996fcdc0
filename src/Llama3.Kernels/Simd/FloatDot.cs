using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

/// <summary>
/// Fused dot products of a weight row stored as F16 or BF16 (little-endian) with float32 activations: the weights are
/// widened in registers (exactly, as <see cref="Quant.FloatRows"/>; see <see cref="QuantDotHelpers.HalfToSingle(Vector512{int})"/>)
/// and multiplied and added in float32 lanes, with no intermediate float row. The multi-row variants widen each weight
/// vector once for several activation rows (prompt processing) and give, row for row, the bits of the single-row one.
/// </summary>
/// <remarks>
/// Every path keeps the same additions for a row whatever the row count: its own accumulators, the same steps, their
/// sum by <c>Vector.Sum</c>, then the last weights one at a time. BF16: 4 accumulators (AVX-512: 64 weights a step, then
/// 16; AVX2: 32, then 8), rows 4 (AVX-512) or 2 (AVX2) at a time. F16, whose widening costs more than the FMA latency:
/// 2 accumulators (AVX-512: 32, then 16; AVX2: 16, then 8), rows 8 or 4 at a time. Vector128: 2 accumulators (8 a step),
/// 4 rows. Scalar twins: <see cref="FloatDotScalar"/>.
/// </remarks>
public static unsafe partial class FloatDot
{
    /// <summary>The most activation rows one call of <see cref="DotManyF16"/> or <see cref="DotManyBF16"/> takes.</summary>
    public const int MaxRows = 8;

    /// <summary><c>Σ w[i] · x[i]</c> for a little-endian F16 row of <c>2 * x.Length</c> bytes.</summary>
    public static float DotF16(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x) => Dot(weights, x, bfloat: false, KernelPaths.Best);

    /// <summary><c>Σ w[i] · x[i]</c> for a little-endian BF16 row of <c>2 * x.Length</c> bytes.</summary>
    public static float DotBF16(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x) => Dot(weights, x, bfloat: true, KernelPaths.Best);

    /// <summary>
    /// <c>results[r] = DotF16(weights, xRows[r * cols .. (r + 1) * cols])</c> for <c>r &lt; count</c>
    /// (1 to <see cref="MaxRows"/>), bit for bit, each weight vector widened once for several rows.
    /// </summary>
    public static void DotManyF16(ReadOnlySpan<byte> weights, ReadOnlySpan<float> xRows, int cols, int count, Span<float> results) =>
        DotMany(weights, xRows, cols, count, results, bfloat: false, KernelPaths.Best);

    /// <summary>The BF16 twin of <see cref="DotManyF16"/>.</summary>
    public static void DotManyBF16(ReadOnlySpan<byte> weights, ReadOnlySpan<float> xRows, int cols, int count, Span<float> results) =>
        DotMany(weights, xRows, cols, count, results, bfloat: true, KernelPaths.Best);

    /// <summary>The single-row dot product on a given path (the tests drive each one).</summary>
    internal static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, bool bfloat, KernelPath path)
    {
        if (path == KernelPath.Scalar)
            return bfloat ? FloatDotScalar.DotBF16(weights, x) : FloatDotScalar.DotF16(weights, x);
        FloatDotChecks.One(weights, x);
        float result;
        fixed (byte* w = weights)
        fixed (float* a = x)
            Rows((short*)w, a, 0, x.Length, 1, &result, bfloat, path);
        return result;
    }

    /// <summary>The multi-row dot product on a given path.</summary>
    internal static void DotMany(ReadOnlySpan<byte> weights, ReadOnlySpan<float> xRows, int cols, int count, Span<float> results,
        bool bfloat, KernelPath path)
    {
        if (path == KernelPath.Scalar)
        {
            if (bfloat) FloatDotScalar.DotManyBF16(weights, xRows, cols, count, results);
            else FloatDotScalar.DotManyF16(weights, xRows, cols, count, results);
            return;
        }
        FloatDotChecks.Many(weights, xRows, cols, count, results);
        int group = GroupRows(path, bfloat);
        fixed (byte* w = weights)
        fixed (float* a = xRows)
        fixed (float* y = results)
            for (int r = 0; r < count; r += group)
                Rows((short*)w, a + (long)r * cols, cols, cols, Math.Min(group, count - r), y + r, bfloat, path);
    }

    /// <summary>How many activation rows one kernel of <paramref name="path"/> takes (as many accumulators as the registers hold).</summary>
    internal static int GroupRows(KernelPath path, bool bfloat) => (path, bfloat) switch
    {
        (KernelPath.Avx512, false) => 8,
        (KernelPath.Avx2, false) => 4,
        (KernelPath.Avx2, true) => 2,
        _ => 4,
    };

    /// <summary><paramref name="rows"/> activation rows <paramref name="stride"/> floats apart, one kernel per path, type and row count.</summary>
    private static void Rows(short* w, float* x, int stride, int n, int rows, float* y, bool bfloat, KernelPath path)
    {
        switch (path, bfloat, rows)
        {
            case (KernelPath.Avx512, false, 1): F16Avx512x1(w, x, stride, n, y); break;
            case (KernelPath.Avx512, false, 2): F16Avx512x2(w, x, stride, n, y); break;
            case (KernelPath.Avx512, false, 3): F16Avx512x3(w, x, stride, n, y); break;
            case (KernelPath.Avx512, false, 4): F16Avx512x4(w, x, stride, n, y); break;
            case (KernelPath.Avx512, false, 5): F16Avx512x5(w, x, stride, n, y); break;
            case (KernelPath.Avx512, false, 6): F16Avx512x6(w, x, stride, n, y); break;
            case (KernelPath.Avx512, false, 7): F16Avx512x7(w, x, stride, n, y); break;
            case (KernelPath.Avx512, false, 8): F16Avx512x8(w, x, stride, n, y); break;
            case (KernelPath.Avx512, true, 1): BF16Avx512x1(w, x, stride, n, y); break;
            case (KernelPath.Avx512, true, 2): BF16Avx512x2(w, x, stride, n, y); break;
            case (KernelPath.Avx512, true, 3): BF16Avx512x3(w, x, stride, n, y); break;
            case (KernelPath.Avx512, true, 4): BF16Avx512x4(w, x, stride, n, y); break;
            case (KernelPath.Avx2, false, 1): F16Avx2x1(w, x, stride, n, y); break;
            case (KernelPath.Avx2, false, 2): F16Avx2x2(w, x, stride, n, y); break;
            case (KernelPath.Avx2, false, 3): F16Avx2x3(w, x, stride, n, y); break;
            case (KernelPath.Avx2, false, 4): F16Avx2x4(w, x, stride, n, y); break;
            case (KernelPath.Avx2, true, 1): BF16Avx2x1(w, x, stride, n, y); break;
            case (KernelPath.Avx2, true, 2): BF16Avx2x2(w, x, stride, n, y); break;
            case (_, false, 1): F16Vector128x1(w, x, stride, n, y); break;
            case (_, false, 2): F16Vector128x2(w, x, stride, n, y); break;
            case (_, false, 3): F16Vector128x3(w, x, stride, n, y); break;
            case (_, false, 4): F16Vector128x4(w, x, stride, n, y); break;
            case (_, true, 1): BF16Vector128x1(w, x, stride, n, y); break;
            case (_, true, 2): BF16Vector128x2(w, x, stride, n, y); break;
            case (_, true, 3): BF16Vector128x3(w, x, stride, n, y); break;
            case (_, true, 4): BF16Vector128x4(w, x, stride, n, y); break;
            default: throw new ArgumentOutOfRangeException(nameof(rows), rows, $"too many rows for {path}");
        }
    }

    // One method per instruction set, type and row count, the shared cores inlined with constant flags (as QuantDot.K.cs).
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx512x1(short* w, float* x, int s, int n, float* y) => F16Avx512Core(w, x, s, n, 1, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx512x2(short* w, float* x, int s, int n, float* y) => F16Avx512Core(w, x, s, n, 2, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx512x3(short* w, float* x, int s, int n, float* y) => F16Avx512Core(w, x, s, n, 3, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx512x4(short* w, float* x, int s, int n, float* y) => F16Avx512Core(w, x, s, n, 4, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx512x5(short* w, float* x, int s, int n, float* y) => F16Avx512Core(w, x, s, n, 5, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx512x6(short* w, float* x, int s, int n, float* y) => F16Avx512Core(w, x, s, n, 6, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx512x7(short* w, float* x, int s, int n, float* y) => F16Avx512Core(w, x, s, n, 7, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx512x8(short* w, float* x, int s, int n, float* y) => F16Avx512Core(w, x, s, n, 8, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Avx512x1(short* w, float* x, int s, int n, float* y) => Avx512Core(w, x, s, n, 1, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Avx512x2(short* w, float* x, int s, int n, float* y) => Avx512Core(w, x, s, n, 2, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Avx512x3(short* w, float* x, int s, int n, float* y) => Avx512Core(w, x, s, n, 3, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Avx512x4(short* w, float* x, int s, int n, float* y) => Avx512Core(w, x, s, n, 4, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx2x1(short* w, float* x, int s, int n, float* y) => F16Avx2Core(w, x, s, n, 1, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx2x2(short* w, float* x, int s, int n, float* y) => F16Avx2Core(w, x, s, n, 2, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx2x3(short* w, float* x, int s, int n, float* y) => F16Avx2Core(w, x, s, n, 3, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Avx2x4(short* w, float* x, int s, int n, float* y) => F16Avx2Core(w, x, s, n, 4, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Avx2x1(short* w, float* x, int s, int n, float* y) => Avx2Core(w, x, s, n, 1, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Avx2x2(short* w, float* x, int s, int n, float* y) => Avx2Core(w, x, s, n, 2, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Vector128x1(short* w, float* x, int s, int n, float* y) => Vector128Core(w, x, s, n, 1, y, bfloat: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Vector128x2(short* w, float* x, int s, int n, float* y) => Vector128Core(w, x, s, n, 2, y, bfloat: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Vector128x3(short* w, float* x, int s, int n, float* y) => Vector128Core(w, x, s, n, 3, y, bfloat: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16Vector128x4(short* w, float* x, int s, int n, float* y) => Vector128Core(w, x, s, n, 4, y, bfloat: false);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Vector128x1(short* w, float* x, int s, int n, float* y) => Vector128Core(w, x, s, n, 1, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Vector128x2(short* w, float* x, int s, int n, float* y) => Vector128Core(w, x, s, n, 2, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Vector128x3(short* w, float* x, int s, int n, float* y) => Vector128Core(w, x, s, n, 3, y, bfloat: true);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void BF16Vector128x4(short* w, float* x, int s, int n, float* y) => Vector128Core(w, x, s, n, 4, y, bfloat: true);

    /// <summary>16 weights from <paramref name="p"/>, sign-extended (vpmovsxwd from memory) and widened to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Load16(short* p, bool bfloat)
    {
        Vector512<int> bits = Avx512F.ConvertToVector512Int32(Vector256.Load(p));
        return bfloat ? (bits << 16).AsSingle() : HalfToSingle(bits);
    }

    /// <summary>8 weights from <paramref name="p"/>, widened to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load8(short* p, bool bfloat)
    {
        Vector256<int> bits = Avx2.ConvertToVector256Int32(Vector128.Load(p));
        return bfloat ? (bits << 16).AsSingle() : HalfToSingle(bits);
    }

    /// <summary>4 sign-extended weights widened to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Widen4(Vector128<int> bits, bool bfloat) =>
        bfloat ? (bits << 16).AsSingle() : HalfToSingle(bits);

    /// <summary>The last weights from <paramref name="i"/> one at a time (the product rounded, then added to <paramref name="sum"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(short* w, float* x, int i, int n, bool bfloat, float sum)
    {
        for (; i < n; i++)
            sum += (bfloat ? BitConverter.Int32BitsToSingle(w[i] << 16) : Half((byte*)(w + i))) * x[i];
        return sum;
    }
}
