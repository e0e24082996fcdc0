using System.Numerics.Tensors;

namespace Llama3.Kernels.Simd;

/// <summary>The SwiGLU gate of Meta's <c>FeedForward</c>: <c>silu(w1·x) * (w3·x)</c>.</summary>
public static class Activations
{
    /// <summary><c>gate[i] = silu(gate[i]) * up[i]</c>, where <c>silu(a) = a * sigmoid(a)</c>.</summary>
    public static void SiluMultiply(Span<float> gate, ReadOnlySpan<float> up)
    {
        Span<float> sigmoid = stackalloc float[1024];
        for (int i = 0; i < gate.Length; i += sigmoid.Length)
        {
            var g = gate.Slice(i, Math.Min(sigmoid.Length, gate.Length - i));
            var s = sigmoid[..g.Length];
            TensorPrimitives.Sigmoid(g, s);
            TensorPrimitives.Multiply(g, s, g);
            TensorPrimitives.Multiply(g, up.Slice(i, g.Length), g);
        }
    }

    /// <summary>The scalar twin of <see cref="SiluMultiply"/>.</summary>
    public static void SiluMultiplyScalar(Span<float> gate, ReadOnlySpan<float> up)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float a = gate[i];
            gate[i] = a / (1f + MathF.Exp(-a)) * up[i];
        }
    }

    /// <summary>In-place softmax in float32: subtract the max, exponentiate, divide by the sum.</summary>
    public static void Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Multiply(x, 1f / sum, x);
    }

    /// <summary>The scalar twin of <see cref="Softmax"/>.</summary>
    public static void SoftmaxScalar(Span<float> x)
    {
        float max = float.NegativeInfinity;
        foreach (float v in x) max = MathF.Max(max, v);
        float sum = 0;
        for (int i = 0; i < x.Length; i++) sum += x[i] = MathF.Exp(x[i] - max);
        for (int i = 0; i < x.Length; i++) x[i] /= sum;
    }
}
