using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>The float kernels (RMSNorm, SwiGLU, softmax, the float32 matrix product) against their scalar twins.</summary>
public class FloatKernelTwinTests
{
    public static TheoryData<int> Lengths => new() { 1, 7, 31, 32, 33, 255, 256, 257, 4097 };

    private static float[] Random(int n, int seed, float scale = 2)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (rng.NextSingle() - 0.5f) * scale).ToArray();
    }

    // Float sums in another order: a relative tolerance of a few hundred ulps over the whole sum, far below any real bug.
    private static void Close(float expected, float actual, float magnitude) =>
        Assert.True(Math.Abs(expected - actual) <= 1e-5f * Math.Max(1, magnitude), $"{actual} vs {expected}");

    [Theory]
    [MemberData(nameof(Lengths))]
    public void RmsNorm(int n)
    {
        var x = Random(n + 1, n)[1..]; // odd offset
        var w = Random(n, n + 1);
        var a = new float[n];
        var b = new float[n];
        Norm.RmsNorm(x, w, 1e-5f, a);
        Norm.RmsNormScalar(x, w, 1e-5f, b);
        for (int i = 0; i < n; i++) Close(b[i], a[i], Math.Abs(b[i]));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SiluMultiply(int n)
    {
        var gate = Random(n, n, 16);
        var up = Random(n, n + 2);
        var a = (float[])gate.Clone();
        var b = (float[])gate.Clone();
        Activations.SiluMultiply(a, up);
        Activations.SiluMultiplyScalar(b, up);
        for (int i = 0; i < n; i++) Close(b[i], a[i], Math.Abs(b[i]));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Softmax(int n)
    {
        var x = Random(n, n, 40);
        var a = (float[])x.Clone();
        var b = (float[])x.Clone();
        Activations.Softmax(a);
        Activations.SoftmaxScalar(b);
        for (int i = 0; i < n; i++) Close(b[i], a[i], 1);
        Assert.Equal(1.0, a.Sum(v => (double)v), 4);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void ExpShifted(int n)
    {
        var x = Random(n, n + 1, 40);
        var a = (float[])x.Clone();
        var b = (float[])x.Clone();
        float sa = Activations.ExpShifted(a);
        float sb = Activations.ExpShiftedScalar(b);
        Assert.Equal(b, a); // the same exp lane by lane
        Close(sb, sa, sb);
        Assert.Equal(1f, a[Array.IndexOf(x, x.Max())]);
        Assert.InRange(sb, 1f, n); // the max contributes 1, every other weight at most 1
    }

    [Theory]
    [InlineData(GgmlType.F32, 7, 5)]
    [InlineData(GgmlType.F16, 33, 3)]
    [InlineData(GgmlType.F16, 65, 6)]  // 5 rows: two pairs and one row alone; 6 tokens: a group of 4 and one of 2
    [InlineData(GgmlType.F16, 65, 11)] // 11 tokens: the lanes kernel (AVX-512), 8 and 3
    [InlineData(GgmlType.BF16, 257, 2)]
    [InlineData(GgmlType.Q8_0, 32 * 9, 4)]
    [InlineData(GgmlType.Q4_K, 256 * 2, 3)]
    public unsafe void MatMulRows(GgmlType type, int cols, int n)
    {
        var q = QuantTable.Get(type);
        int rows = type == GgmlType.F16 && n >= MatMul.LanesFrom ? 37 : 5; // the lanes kernel: two blocks of 16 rows, then 5
        long rowBytes = q.RowBytes(cols);
        var rng = new Random(cols);
        var w = new byte[rows * rowBytes];
        rng.NextBytes(w);
        // Keep every f16/bf16 (scales and values) finite: clear the top exponent bit of each 16-bit word's high byte.
        if (type != GgmlType.F32) for (int i = 1; i < w.Length; i += 2) w[i] &= 0xBB;
        else for (int i = 3; i < w.Length; i += 4) w[i] &= 0xBF;
        var x = Random(n * cols, cols);
        var a = new float[n * rows];
        var b = new float[n * rows];
        fixed (byte* p = w)
        {
            MatMul.Rows(q, p, rowBytes, 0, rows, x, n, a, rows, new float[MatMul.ScratchFloats(cols)]);
            MatMul.RowsScalar(q, p, rowBytes, 0, rows, x, n, b, rows, new float[cols]);
        }
        // The tolerance scales with the sum of |terms| of each dot product (its rounding depends on that, not on the result).
        var deq = new float[cols];
        for (int t = 0; t < n; t++)
            for (int r = 0; r < rows; r++)
            {
                q.Dequantize(w.AsSpan((int)(r * rowBytes), (int)rowBytes), deq);
                float magnitude = 0;
                for (int i = 0; i < cols; i++) magnitude += Math.Abs(deq[i] * x[t * cols + i]);
                Assert.True(float.IsFinite(b[t * rows + r]));
                Close(b[t * rows + r], a[t * rows + r], magnitude);
            }
    }
}
