using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Llama3.Kernels.Quant;
using static Llama3.Kernels.Simd.QuantDotHelpers;

namespace Llama3.Kernels.Simd;

// Tiles of a matrix product (QuantType.DotTile): several weight rows with up to 8 activation rows in one call, so what
// depends only on the activations is done once for all the weight rows. For Q4_0 and Q8_0 on AVX-512 that is the
// activation blocks' scales, read as floats once instead of once per weight row (Q4_0's 4-token inner loop then spends
// a load and a permute on them instead of two table lookups, two multiplies and a blend per block pair and token; Q8_0
// multiplies them in vectors). Every result has the bits of DotMany for its weight row: the same products, FMAs and sums
// in the same lanes and order. Prompts of 8 tokens or more take the prompt kernels instead (QuantType.DotPrompt).
public static unsafe partial class QuantDot
{
    /// <summary>Q4_0 weights, several rows, with several Q8_0 activation rows (see <see cref="DotTileRows"/>).</summary>
    public static void DotTileQ4_0(ReadOnlySpan<byte> weightRows, int weightRowBytes, int rows, ReadOnlySpan<byte> activationRows,
        int activationRowBytes, int count, int n, Span<float> results, int resultStride) =>
        DotTileQ4_0(weightRows, weightRowBytes, rows, activationRows, activationRowBytes, count, n, results, resultStride, KernelPaths.Best);

    internal static void DotTileQ4_0(ReadOnlySpan<byte> w, int wStride, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride, KernelPath path)
    {
        Tile32(w, wStride, rows, a, aStride, count, n, results, resultStride, path, 18, "Q4_0", &DotManyQ4_0,
            &Q4_0Avx512Rows4Scaled, &Q4_0Avx512Rows3, &Q4_0Avx512Rows2, &Q4_0Avx512);
    }

    // The tile of a 32-weight block type with Q8_0 activations: the activation scales read as floats once, then per
    // weight row the type's 4-token kernel on them and its 3-, 2-, 1-token kernels for the rest of the tokens. Other
    // paths, fewer than 4 tokens or an odd block count: the multi-row kernel row by row.
    private static void Tile32(ReadOnlySpan<byte> w, int wStride, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride, KernelPath path, int weightBlockBytes, string typeName,
        delegate*<ReadOnlySpan<byte>, ReadOnlySpan<byte>, int, int, int, Span<float>, KernelPath, void> many,
        delegate*<byte*, byte*, nint, float*, int, float*, int, void> rows4,
        delegate*<byte*, byte*, nint, int, float*, void> rows3,
        delegate*<byte*, byte*, nint, int, float*, void> rows2,
        delegate*<byte*, byte*, int, float> one)
    {
        QuantDotTileChecks.Check(w, wStride, rows, a, aStride, count, results, resultStride);
        if (rows == 0) return;
        Span<float> part = stackalloc float[8];
        int blocks = QuantDotMultiChecks.Rows(w[..wStride], a, aStride, count, n, part, 32, weightBlockBytes, 34, typeName, "Q8_0");
        if (path != KernelPath.Avx512 || count < 4 || blocks % 2 != 0)
        {
            for (int row = 0; row < rows; row++)
            {
                many(w.Slice(row * wStride, wStride), a, aStride, count, n, part, path);
                for (int t = 0; t < count; t++) results[t * resultStride + row] = part[t];
            }
            return;
        }
        float[] scratch = ScaleScratch(count * blocks + 2); // two spare: Q4_0 reads the scales in pairs
        fixed (byte* x0 = w, y = a)
        fixed (float* r = results, ys = scratch, rest = part)
        {
            for (int t = 0; t < count; t++)
                for (int b = 0; b < blocks; b++) ys[t * blocks + b] = Half(y + (nint)t * aStride + b * 34);
            for (int row = 0; row < rows; row++)
            {
                byte* x = x0 + (nint)row * wStride;
                int t = 0;
                for (; t + 4 <= count; t += 4)
                    rows4(x, y + (nint)t * aStride, aStride, ys + t * blocks, blocks, r + (nint)t * resultStride + row, resultStride);
                byte* yi = y + (nint)t * aStride;
                switch (count - t)
                {
                    case 3: rows3(x, yi, aStride, blocks, rest); break;
                    case 2: rows2(x, yi, aStride, blocks, rest); break;
                    case 1: rest[0] = one(x, yi, blocks); break;
                }
                for (int i = 0; i < count - t; i++) r[(nint)(t + i) * resultStride + row] = rest[i];
            }
        }
    }

    [ThreadStatic] private static float[]? _scaleScratch;

    // One buffer per thread for activation scales, grown when a tile needs more (no allocation per call).
    private static float[] ScaleScratch(int floats)
    {
        var s = _scaleScratch;
        if (s is null || s.Length < floats) _scaleScratch = s = new float[Math.Max(floats, 4096)];
        return s;
    }

    // Q4_0Avx512Rows with rows = 4, the activation scales read from ys (blocks floats per token) and the weight scales of
    // a block pair multiplied in one vector: the same products dx·dy as Q4_0Pair's scalar multiplies, lane by lane.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q4_0Avx512Rows4Scaled(byte* x, byte* y, nint s, float* ys, int blocks, float* r, int rStride)
    {
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero, acc2 = Vector512<float>.Zero, acc3 = Vector512<float>.Zero;
        byte* y0 = y, y1 = y + s, y2 = y + 2 * s, y3 = y + 3 * s;
        float* s0 = ys, s1 = ys + blocks, s2 = ys + 2 * blocks, s3 = ys + 3 * blocks;
        var pairs = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        for (int b = 0; b < blocks; b += 2, x += 36, y0 += 68, y1 += 68, y2 += 68, y3 += 68)
        {
            Vector512<byte> nibbles = Q4_0Nibbles(x);
            Vector512<float> dx = Avx512F.PermuteVar16x32(Vector128.Create(Half(x), Half(x + 18), 0f, 0f).ToVector256Unsafe().ToVector512Unsafe(), pairs);
            acc0 = Q4_0PairScaled(acc0, nibbles, y0, dx, s0 + b, pairs);
            acc1 = Q4_0PairScaled(acc1, nibbles, y1, dx, s1 + b, pairs);
            acc2 = Q4_0PairScaled(acc2, nibbles, y2, dx, s2 + b, pairs);
            acc3 = Q4_0PairScaled(acc3, nibbles, y3, dx, s3 + b, pairs);
        }
        // + 0f as Q4_0Avx512Rows adds its (empty) odd-block tail: the same bits, -0 included.
        r[0] = Vector512.Sum(acc0) + 0f;
        r[rStride] = Vector512.Sum(acc1) + 0f;
        r[2 * rStride] = Vector512.Sum(acc2) + 0f;
        r[3 * rStride] = Vector512.Sum(acc3) + 0f;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q4_0PairScaled(Vector512<float> acc, Vector512<byte> nibbles, byte* y, Vector512<float> dx, float* dy,
        Vector512<int> pairs)
    {
        Vector512<sbyte> yv = Join(Vector256.Load(y + 2), Vector256.Load(y + 36)).AsSByte();
        Vector512<int> p = OffsetDotAvx512(nibbles, yv, 8);
        Vector512<float> d = dx * Avx512F.PermuteVar16x32(Vector128.CreateScalarUnsafe(*(double*)dy).AsSingle().ToVector256Unsafe().ToVector512Unsafe(), pairs);
        return Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(p), acc);
    }
    /// <summary>Q8_0 weights, several rows, with several Q8_0 activation rows (see <see cref="DotTileRows"/>).</summary>
    public static void DotTileQ8_0(ReadOnlySpan<byte> weightRows, int weightRowBytes, int rows, ReadOnlySpan<byte> activationRows,
        int activationRowBytes, int count, int n, Span<float> results, int resultStride) =>
        DotTileQ8_0(weightRows, weightRowBytes, rows, activationRows, activationRowBytes, count, n, results, resultStride, KernelPaths.Best);

    internal static void DotTileQ8_0(ReadOnlySpan<byte> w, int wStride, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride, KernelPath path)
    {
        Tile32(w, wStride, rows, a, aStride, count, n, results, resultStride, path, 34, "Q8_0", &DotManyQ8_0,
            &Q8_0Avx512Rows4Scaled, &Q8_0Avx512Rows3, &Q8_0Avx512Rows2, &Q8_0Avx512);
    }

    // Q8_0Avx512Rows with rows = 4, the activation scales read as floats: the same dx·dy products and FMAs.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q8_0Avx512Rows4Scaled(byte* x, byte* y, nint s, float* ys, int blocks, float* r, int rStride)
    {
        Vector512<float> a00 = Vector512<float>.Zero, a01 = Vector512<float>.Zero, a10 = Vector512<float>.Zero, a11 = Vector512<float>.Zero;
        Vector512<float> a20 = Vector512<float>.Zero, a21 = Vector512<float>.Zero, a30 = Vector512<float>.Zero, a31 = Vector512<float>.Zero;
        byte* y0 = y, y1 = y + s, y2 = y + 2 * s, y3 = y + 3 * s;
        float* s0 = ys, s1 = ys + blocks, s2 = ys + 2 * blocks, s3 = ys + 3 * blocks;
        for (int b = 0; b < blocks; b += 2, x += 68, y0 += 68, y1 += 68, y2 += 68, y3 += 68)
        {
            Vector512<short> w0 = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)x + 2));
            Vector512<short> w1 = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)x + 36));
            Vector512<float> dx0 = Vector512.Create(Half(x)), dx1 = Vector512.Create(Half(x + 34));
            a00 = Q8_0BlockScaled(a00, w0, y0, dx0 * Vector512.Create(s0[b])); a01 = Q8_0BlockScaled(a01, w1, y0 + 34, dx1 * Vector512.Create(s0[b + 1]));
            a10 = Q8_0BlockScaled(a10, w0, y1, dx0 * Vector512.Create(s1[b])); a11 = Q8_0BlockScaled(a11, w1, y1 + 34, dx1 * Vector512.Create(s1[b + 1]));
            a20 = Q8_0BlockScaled(a20, w0, y2, dx0 * Vector512.Create(s2[b])); a21 = Q8_0BlockScaled(a21, w1, y2 + 34, dx1 * Vector512.Create(s2[b + 1]));
            a30 = Q8_0BlockScaled(a30, w0, y3, dx0 * Vector512.Create(s3[b])); a31 = Q8_0BlockScaled(a31, w1, y3 + 34, dx1 * Vector512.Create(s3[b + 1]));
        }
        r[0] = Vector512.Sum(a00 + a01);
        r[rStride] = Vector512.Sum(a10 + a11);
        r[2 * rStride] = Vector512.Sum(a20 + a21);
        r[3 * rStride] = Vector512.Sum(a30 + a31);
    }

    // The scale dx·dy multiplied in a vector (dy broadcast from memory within the multiply): the same product as the
    // scalar one, in every lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q8_0BlockScaled(Vector512<float> acc, Vector512<short> w, byte* y, Vector512<float> d) =>
        Avx512F.FusedMultiplyAdd(d,
            Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w, Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)y + 2)))), acc);

}

/// <summary>Argument checks and the default loop of <see cref="DotTileRows"/>.</summary>
internal static class QuantDotTileChecks
{
    public static void Check(ReadOnlySpan<byte> w, int wStride, int rows, ReadOnlySpan<byte> a, int aStride, int count,
        Span<float> results, int resultStride)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, 8);
        ArgumentOutOfRangeException.ThrowIfLessThan(resultStride, rows);
        if ((long)wStride * rows > w.Length) throw new ArgumentException($"{rows} weight rows of {wStride} bytes need {(long)wStride * rows} bytes, the span has {w.Length}");
        if ((long)aStride * count > a.Length) throw new ArgumentException($"{count} activation rows of {aStride} bytes need {(long)aStride * count} bytes, the span has {a.Length}");
        if (rows > 0 && (long)(count - 1) * resultStride + rows > results.Length)
            throw new ArgumentException($"the results span holds {results.Length} floats, {(long)(count - 1) * resultStride + rows} needed");
    }

    /// <summary>The default: <c>DotMany</c> once per weight row.</summary>
    public static void Loop(DotRows dotMany, ReadOnlySpan<byte> w, int wStride, int rows, ReadOnlySpan<byte> a, int aStride, int count, int n,
        Span<float> results, int resultStride)
    {
        Check(w, wStride, rows, a, aStride, count, results, resultStride);
        Span<float> part = stackalloc float[8];
        for (int r = 0; r < rows; r++)
        {
            dotMany(w.Slice(r * wStride, wStride), a, aStride, count, n, part);
            for (int t = 0; t < count; t++) results[t * resultStride + r] = part[t];
        }
    }
}
