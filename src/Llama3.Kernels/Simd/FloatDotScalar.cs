using System.Buffers.Binary;
using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Simd;

/// <summary>
/// The scalar twins of <see cref="FloatDot"/>: each weight widened as <see cref="FloatRows"/> does
/// (<see cref="Float16.HalfToSingle"/>, <see cref="Float16.BFloat16ToSingle"/>), multiplied by its activation and
/// added in float32, first to last. The vectorized kernels differ from these only in the order of the additions.
/// </summary>
public static class FloatDotScalar
{
    /// <summary><c>Σ w[i] · x[i]</c> for a little-endian F16 row of <c>2 * x.Length</c> bytes.</summary>
    public static float DotF16(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x)
    {
        FloatDotChecks.One(weights, x);
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
            sum += Float16.HalfToSingle(BinaryPrimitives.ReadUInt16LittleEndian(weights.Slice(2 * i, 2))) * x[i];
        return sum;
    }

    /// <summary><c>Σ w[i] · x[i]</c> for a little-endian BF16 row of <c>2 * x.Length</c> bytes.</summary>
    public static float DotBF16(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x)
    {
        FloatDotChecks.One(weights, x);
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
            sum += Float16.BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(weights.Slice(2 * i, 2))) * x[i];
        return sum;
    }

    /// <summary><see cref="DotF16"/> of one F16 row with each of <paramref name="count"/> activation rows.</summary>
    public static void DotManyF16(ReadOnlySpan<byte> weights, ReadOnlySpan<float> xRows, int cols, int count, Span<float> results)
    {
        FloatDotChecks.Many(weights, xRows, cols, count, results);
        for (int r = 0; r < count; r++)
            results[r] = DotF16(weights, xRows.Slice(r * cols, cols));
    }

    /// <summary><see cref="DotBF16"/> of one BF16 row with each of <paramref name="count"/> activation rows.</summary>
    public static void DotManyBF16(ReadOnlySpan<byte> weights, ReadOnlySpan<float> xRows, int cols, int count, Span<float> results)
    {
        FloatDotChecks.Many(weights, xRows, cols, count, results);
        for (int r = 0; r < count; r++)
            results[r] = DotBF16(weights, xRows.Slice(r * cols, cols));
    }
}

/// <summary>The argument checks shared by <see cref="FloatDot"/> and <see cref="FloatDotScalar"/>.</summary>
internal static class FloatDotChecks
{
    public static void One(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x)
    {
        if (weights.Length != 2L * x.Length)
            throw new ArgumentException($"the weight row has {weights.Length} bytes, not 2 per activation ({x.Length})", nameof(weights));
    }

    public static void Many(ReadOnlySpan<byte> weights, ReadOnlySpan<float> xRows, int cols, int count, Span<float> results)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (count is < 1 or > FloatDot.MaxRows)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"1 to {FloatDot.MaxRows} activation rows");
        if (weights.Length != 2L * cols)
            throw new ArgumentException($"the weight row has {weights.Length} bytes, not 2 per column ({cols})", nameof(weights));
        if (xRows.Length < (long)count * cols)
            throw new ArgumentException($"{count} rows of {cols} activations need {(long)count * cols} floats, not {xRows.Length}", nameof(xRows));
        if (results.Length < count)
            throw new ArgumentException($"{count} results do not fit in {results.Length}", nameof(results));
    }
}
