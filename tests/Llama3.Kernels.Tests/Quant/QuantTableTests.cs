using Llama3.Kernels.Quant;

namespace Llama3.Kernels.Tests.Quant;

/// <summary>Tests that iterate the table, so every row (and every row added later) is covered.</summary>
public class QuantTableTests
{
    /// <summary>The name of every row of the table, one test case each.</summary>
    public static TheoryData<string> AllRows => new(QuantTable.All.Select(q => q.Name));

    private static QuantType Row(string name) => QuantTable.All.Single(q => q.Name == name);

    [Theory]
    [MemberData(nameof(AllRows))]
    public void Every_row_has_a_dequantizer_and_zero_blocks_give_zeros(string name)
    {
        QuantType q = Row(name);
        Assert.True(q.Dequantize != null, $"table row {name} has no Dequantize");
        // Zero bytes are zero weights in every ggml layout (scales, mins and quants all zero).
        var output = new float[3 * q.BlockSize];
        Array.Fill(output, float.NaN);
        QuantTable.Dequantize(q.Type, new byte[3 * q.BytesPerBlock], output);
        Assert.All(output, v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(AllRows))]
    public void Every_row_reads_exactly_BytesPerBlock_per_block(string name)
    {
        // Blocks are independent: dequantizing two blocks together equals dequantizing each alone. A row code with
        // the wrong stride or block size (or one that reads past its block) fails this.
        QuantType q = Row(name);
        var rng = new Random(17 + (int)q.Type);
        var bytes = new byte[2 * q.BytesPerBlock];
        rng.NextBytes(bytes);
        var both = new float[2 * q.BlockSize];
        var first = new float[q.BlockSize];
        var second = new float[q.BlockSize];
        QuantTable.Dequantize(q.Type, bytes, both);
        QuantTable.Dequantize(q.Type, bytes.AsSpan(0, q.BytesPerBlock), first);
        QuantTable.Dequantize(q.Type, bytes.AsSpan(q.BytesPerBlock), second);
        Assert.Equal(Bits([.. first, .. second]), Bits(both));
        Assert.Contains(both, v => v != 0); // random bytes are not all zero weights
    }

    [Theory]
    [MemberData(nameof(AllRows))]
    public void Lengths_that_are_not_whole_blocks_throw(string name)
    {
        QuantType q = Row(name);
        var ex = Assert.Throws<ArgumentException>(() =>
            QuantTable.Dequantize(q.Type, new byte[q.BytesPerBlock + 1], new float[q.BlockSize]));
        Assert.Equal("blocks", ex.ParamName);
        Assert.Contains(name, ex.Message);
        if (q.BytesPerBlock > 1)
            Assert.Throws<ArgumentException>(() =>
                QuantTable.Dequantize(q.Type, new byte[q.BytesPerBlock - 1], new float[q.BlockSize]));
    }

    [Theory]
    [MemberData(nameof(AllRows))]
    public void Output_that_does_not_match_the_blocks_throws(string name)
    {
        QuantType q = Row(name);
        var blocks = new byte[2 * q.BytesPerBlock];
        foreach (int length in new[] { 2 * q.BlockSize - 1, 2 * q.BlockSize + 1, q.BlockSize, 0 })
        {
            var ex = Assert.Throws<ArgumentException>(() => QuantTable.Dequantize(q.Type, blocks, new float[length]));
            Assert.Equal("output", ex.ParamName);
        }
    }

    [Fact]
    public void Empty_input_gives_empty_output()
    {
        foreach (QuantType q in QuantTable.All)
            QuantTable.Dequantize(q.Type, [], []);
    }

    [Fact]
    public void An_unknown_type_is_not_supported()
    {
        Assert.Throws<NotSupportedException>(() => QuantTable.Dequantize((GgmlType)99, new byte[32], new float[32]));
    }

    [Fact]
    public void The_table_has_one_row_per_type()
    {
        Assert.Equal(Enum.GetValues<GgmlType>().Order(), QuantTable.All.Select(q => q.Type).Order());
    }

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}
