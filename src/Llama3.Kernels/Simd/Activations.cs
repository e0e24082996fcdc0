using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

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

    /// <summary>
    /// In-place softmax in float32: subtract the max, exponentiate (<see cref="ExpScalar"/>'s cephes expf in vector lanes:
    /// TensorPrimitives.Exp computes in double and costs about ten times as much), divide by the sum.
    /// </summary>
    public static void Softmax(Span<float> x) => TensorPrimitives.Multiply(x, 1f / ExpShifted(x), x);

    /// <summary>
    /// The unnormalized half of a softmax, in one pass after the max: <c>x[i] = exp(x[i] - max(x))</c>, returning
    /// <c>Σ x[i]</c>. Attention divides its weighted sum by that instead of dividing every weight.
    /// </summary>
    public static float ExpShifted(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        int i = 0;
        float sum = 0;
        if (Vector.IsHardwareAccelerated && float.IsFinite(max))
        {
            var v = MemoryMarshal.Cast<float, Vector<float>>(x);
            var vmax = new Vector<float>(max);
            var acc = Vector<float>.Zero;
            for (int k = 0; k < v.Length; k++) acc += v[k] = ExpVector(v[k] - vmax);
            sum = Vector.Sum(acc);
            i = v.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++) sum += x[i] = ExpScalar(x[i] - max);
        return sum;
    }

    /// <summary>The scalar twin of <see cref="ExpShifted"/>.</summary>
    public static float ExpShiftedScalar(Span<float> x)
    {
        float max = float.NegativeInfinity;
        foreach (float v in x) max = MathF.Max(max, v);
        float sum = 0;
        for (int i = 0; i < x.Length; i++) sum += x[i] = ExpScalar(x[i] - max);
        return sum;
    }

    /// <summary>The scalar twin of <see cref="Softmax"/>.</summary>
    public static void SoftmaxScalar(Span<float> x)
    {
        float scale = 1f / ExpShiftedScalar(x);
        for (int i = 0; i < x.Length; i++) x[i] *= scale;
    }

    // cephes expf (Moshier, cephes/single/expf.c): x = k ln2 + r with ln 2 split in C1 + C2 (Cody and Waite; k C1 is exact),
    // e^r = 1 + r + r^2 P(r) on |r| <= ln2/2 (peak relative error 4.2e-9 in exact arithmetic, about 1 ulp in float), then 2^k.
    private const float Log2E = 1.44269504088896341f, C1 = 0.693359375f, C2 = -2.12194440e-4f;
    private const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f,
        P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;

    /// <summary>
    /// Weights below e^-86 relative to the maximum are 0: 2^k then stays a normal float (no subnormal arithmetic), and
    /// such a token's probability (below 1e-37) is far under what a 53-bit draw can pick.
    /// </summary>
    public const float ExpCut = -86f;

    /// <summary>
    /// e^x for x &lt;= 0 in plain IEEE float arithmetic (no fused multiply-add, no C library call): the same bits on every
    /// machine and .NET version. 0 at or below <see cref="ExpCut"/> (and for -infinity).
    /// </summary>
    public static float ExpScalar(float x)
    {
        if (!(x > ExpCut)) return 0f;
        float k = MathF.Round(x * Log2E);
        float r = x - k * C1 - k * C2;
        float z = r * r;
        float y = (((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5) * z + r + 1f;
        return y * BitConverter.Int32BitsToSingle(((int)k + 127) << 23);
    }

    /// <summary><see cref="ExpScalar"/> in every lane.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static Vector<float> ExpVector(Vector<float> x)
    {
        var cut = new Vector<float>(ExpCut);
        var valid = Vector.GreaterThan(x, cut);
        x = Vector.Max(x, cut);
        var k = Vector.Round(x * new Vector<float>(Log2E));
        var r = x - k * new Vector<float>(C1) - k * new Vector<float>(C2);
        var z = r * r;
        var y = (((((new Vector<float>(P0) * r + new Vector<float>(P1)) * r + new Vector<float>(P2)) * r
            + new Vector<float>(P3)) * r + new Vector<float>(P4)) * r + new Vector<float>(P5)) * z + r + Vector<float>.One;
        var scale = Vector.AsVectorSingle(Vector.ShiftLeft(Vector.ConvertToInt32(k) + new Vector<int>(127), 23));
        return Vector.ConditionalSelect(valid, y * scale, Vector<float>.Zero);
    }
}
