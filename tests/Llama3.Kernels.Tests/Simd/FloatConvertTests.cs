using System.Runtime.InteropServices;
using Llama3.Kernels.Quant;
using Llama3.Kernels.Simd;

namespace Llama3.Kernels.Tests.Simd;

/// <summary>The vectorized widening of float weight rows is bit-exact with the table's scalar dequantizers.</summary>
public class FloatConvertTests
{
    public static TheoryData<GgmlType, int, int> Cases()
    {
        var data = new TheoryData<GgmlType, int, int>();
        foreach (var t in new[] { GgmlType.F32, GgmlType.F16, GgmlType.BF16 })
            foreach (int n in new[] { 1, 7, 31, 32, 33, 255, 256, 257, 4097 })
                foreach (int offset in new[] { 0, 1, 3 })
                    data.Add(t, n, offset);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesTheScalarTwin(GgmlType type, int n, int offset)
    {
        int size = type == GgmlType.F32 ? 4 : 2;
        var rng = new Random(n * 31 + offset);
        var bytes = new byte[(n + offset) * size];
        rng.NextBytes(bytes);
        // Avoid NaN payloads, whose bits a conversion may canonicalize: keep exponents below all-ones.
        for (int i = 0; i < n + offset; i++)
        {
            int hi = i * size + size - 1;
            if (type == GgmlType.F16) bytes[hi] &= 0xBB; else bytes[hi] &= 0xBF;
        }
        var row = bytes.AsSpan(offset * size, n * size);
        var expected = new float[n];
        var actual = new float[n + 5];
        QuantTable.Get(type).Dequantize(row, expected);
        FloatConvert.ToSingle(type, row, actual);
        Assert.Equal(MemoryMarshal.Cast<float, int>(expected).ToArray(), MemoryMarshal.Cast<float, int>(actual.AsSpan(0, n)).ToArray());
        Assert.All(actual.AsSpan(n).ToArray(), v => Assert.Equal(0f, v)); // nothing written past the row
    }

    [Fact]
    public void RejectsShortOutputAndOtherTypes()
    {
        Assert.Throws<ArgumentException>(() => FloatConvert.BFloat16ToSingle(new ushort[8], new float[7]));
        Assert.Throws<ArgumentException>(() => FloatConvert.ToSingle(GgmlType.Q8_0, new byte[34], new float[32]));
    }
}
