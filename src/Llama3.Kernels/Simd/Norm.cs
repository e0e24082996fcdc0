using System.Numerics.Tensors;

namespace Llama3.Kernels.Simd;

/// <summary>RMSNorm as Meta's <c>RMSNorm</c>: <c>x * rsqrt(mean(x²) + eps) * weight</c>, in float32.</summary>
public static class Norm
{
    /// <summary>Normalizes <paramref name="x"/> into <paramref name="output"/> (which may be <paramref name="x"/>).</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> output)
    {
        float meanSquare = TensorPrimitives.SumOfSquares(x) / x.Length;
        float scale = 1f / MathF.Sqrt(meanSquare + eps);
        TensorPrimitives.Multiply(x, scale, output);
        TensorPrimitives.Multiply(output, weight, output);
    }

    /// <summary>The scalar twin of <see cref="RmsNorm"/>.</summary>
    public static void RmsNormScalar(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> output)
    {
        float sum = 0;
        foreach (float v in x) sum += v * v;
        float scale = 1f / MathF.Sqrt(sum / x.Length + eps);
        for (int i = 0; i < x.Length; i++) output[i] = x[i] * scale * weight[i];
    }
}
