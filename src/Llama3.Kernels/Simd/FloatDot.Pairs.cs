using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama3.Kernels.Simd;

// Two F16 weight rows with up to 4 activation rows at once (AVX-512): each activation vector is loaded once for both
// weight rows, so a prompt's activations, 4 tokens at a time, stay in L1 while the weights stream. Per weight row and
// token the same FMAs on the same two accumulators as F16Avx512Core, in the same order: the same bits.
public static unsafe partial class FloatDot
{
    /// <summary>The most activation rows one call of <see cref="DotManyF16Pair"/> takes.</summary>
    public const int PairRows = 4;

    /// <summary>
    /// <see cref="DotManyF16"/> for two weight rows: <c>results[r] = DotF16(weightsA, row r)</c> and
    /// <c>results[PairRows + r] = DotF16(weightsB, row r)</c> for <c>r &lt; count</c> (1 to <see cref="PairRows"/>),
    /// bit for bit.
    /// </summary>
    public static void DotManyF16Pair(ReadOnlySpan<byte> weightsA, ReadOnlySpan<byte> weightsB, ReadOnlySpan<float> xRows, int cols,
        int count, Span<float> results) =>
        DotManyF16PairOn(weightsA, weightsB, xRows, cols, count, results, KernelPaths.Best);

    /// <summary><see cref="DotManyF16Pair"/> on a given path (the tests drive each one).</summary>
    internal static void DotManyF16PairOn(ReadOnlySpan<byte> weightsA, ReadOnlySpan<byte> weightsB, ReadOnlySpan<float> xRows, int cols,
        int count, Span<float> results, KernelPath path)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, PairRows);
        if (results.Length < 2 * PairRows) throw new ArgumentException($"the results span holds {results.Length} floats, {2 * PairRows} needed", nameof(results));
        if (path != KernelPath.Avx512)
        {
            DotMany(weightsA, xRows, cols, count, results, bfloat: false, path);
            DotMany(weightsB, xRows, cols, count, results[PairRows..], bfloat: false, path);
            return;
        }
        FloatDotChecks.Many(weightsA, xRows, cols, count, results);
        FloatDotChecks.Many(weightsB, xRows, cols, count, results);
        fixed (byte* wa = weightsA, wb = weightsB)
        fixed (float* x = xRows, y = results)
        {
            switch (count)
            {
                case 4: F16PairAvx512x4((short*)wa, (short*)wb, x, cols, cols, y); break;
                case 3: F16PairAvx512x3((short*)wa, (short*)wb, x, cols, cols, y); break;
                case 2: F16PairAvx512x2((short*)wa, (short*)wb, x, cols, cols, y); break;
                default: F16PairAvx512x1((short*)wa, (short*)wb, x, cols, cols, y); break;
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16PairAvx512x1(short* wa, short* wb, float* x, int s, int n, float* y) => F16PairAvx512Core(wa, wb, x, s, n, 1, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16PairAvx512x2(short* wa, short* wb, float* x, int s, int n, float* y) => F16PairAvx512Core(wa, wb, x, s, n, 2, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16PairAvx512x3(short* wa, short* wb, float* x, int s, int n, float* y) => F16PairAvx512Core(wa, wb, x, s, n, 3, y);
    [MethodImpl(MethodImplOptions.NoInlining)] private static void F16PairAvx512x4(short* wa, short* wb, float* x, int s, int n, float* y) => F16PairAvx512Core(wa, wb, x, s, n, 4, y);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void F16PairAvx512Core(short* wa, short* wb, float* x, int stride, int n, int rows, float* y)
    {
        float* x0 = x;
        float* x1 = x0 + stride;
        float* x2 = x1 + stride;
        float* x3 = x2 + stride;
        Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        Vector512<float> b00 = default, b01 = default, b10 = default, b11 = default, b20 = default, b21 = default, b30 = default, b31 = default;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Vector512<float> wa0 = Load16(wa + i, bfloat: false), wa1 = Load16(wa + i + 16, bfloat: false);
            Vector512<float> wb0 = Load16(wb + i, bfloat: false), wb1 = Load16(wb + i + 16, bfloat: false);
            Vector512<float> v0 = Vector512.Load(x0 + i), v1 = Vector512.Load(x0 + i + 16);
            a00 = Avx512F.FusedMultiplyAdd(wa0, v0, a00); a01 = Avx512F.FusedMultiplyAdd(wa1, v1, a01);
            b00 = Avx512F.FusedMultiplyAdd(wb0, v0, b00); b01 = Avx512F.FusedMultiplyAdd(wb1, v1, b01);
            if (rows > 1)
            {
                v0 = Vector512.Load(x1 + i); v1 = Vector512.Load(x1 + i + 16);
                a10 = Avx512F.FusedMultiplyAdd(wa0, v0, a10); a11 = Avx512F.FusedMultiplyAdd(wa1, v1, a11);
                b10 = Avx512F.FusedMultiplyAdd(wb0, v0, b10); b11 = Avx512F.FusedMultiplyAdd(wb1, v1, b11);
            }
            if (rows > 2)
            {
                v0 = Vector512.Load(x2 + i); v1 = Vector512.Load(x2 + i + 16);
                a20 = Avx512F.FusedMultiplyAdd(wa0, v0, a20); a21 = Avx512F.FusedMultiplyAdd(wa1, v1, a21);
                b20 = Avx512F.FusedMultiplyAdd(wb0, v0, b20); b21 = Avx512F.FusedMultiplyAdd(wb1, v1, b21);
            }
            if (rows > 3)
            {
                v0 = Vector512.Load(x3 + i); v1 = Vector512.Load(x3 + i + 16);
                a30 = Avx512F.FusedMultiplyAdd(wa0, v0, a30); a31 = Avx512F.FusedMultiplyAdd(wa1, v1, a31);
                b30 = Avx512F.FusedMultiplyAdd(wb0, v0, b30); b31 = Avx512F.FusedMultiplyAdd(wb1, v1, b31);
            }
        }
        for (; i + 16 <= n; i += 16)
        {
            Vector512<float> wa0 = Load16(wa + i, bfloat: false), wb0 = Load16(wb + i, bfloat: false);
            Vector512<float> v = Vector512.Load(x0 + i);
            a00 = Avx512F.FusedMultiplyAdd(wa0, v, a00); b00 = Avx512F.FusedMultiplyAdd(wb0, v, b00);
            if (rows > 1) { v = Vector512.Load(x1 + i); a10 = Avx512F.FusedMultiplyAdd(wa0, v, a10); b10 = Avx512F.FusedMultiplyAdd(wb0, v, b10); }
            if (rows > 2) { v = Vector512.Load(x2 + i); a20 = Avx512F.FusedMultiplyAdd(wa0, v, a20); b20 = Avx512F.FusedMultiplyAdd(wb0, v, b20); }
            if (rows > 3) { v = Vector512.Load(x3 + i); a30 = Avx512F.FusedMultiplyAdd(wa0, v, a30); b30 = Avx512F.FusedMultiplyAdd(wb0, v, b30); }
        }
        y[0] = Tail(wa, x0, i, n, bfloat: false, Vector512.Sum(a00 + a01));
        y[PairRows] = Tail(wb, x0, i, n, bfloat: false, Vector512.Sum(b00 + b01));
        if (rows > 1) { y[1] = Tail(wa, x1, i, n, bfloat: false, Vector512.Sum(a10 + a11)); y[PairRows + 1] = Tail(wb, x1, i, n, bfloat: false, Vector512.Sum(b10 + b11)); }
        if (rows > 2) { y[2] = Tail(wa, x2, i, n, bfloat: false, Vector512.Sum(a20 + a21)); y[PairRows + 2] = Tail(wb, x2, i, n, bfloat: false, Vector512.Sum(b20 + b21)); }
        if (rows > 3) { y[3] = Tail(wa, x3, i, n, bfloat: false, Vector512.Sum(a30 + a31)); y[PairRows + 3] = Tail(wb, x3, i, n, bfloat: false, Vector512.Sum(b30 + b31)); }
    }
}
