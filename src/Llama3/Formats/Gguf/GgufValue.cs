namespace Llama3.Formats.Gguf;

/// <summary>GGUF metadata value types (GGUF spec, <c>gguf_metadata_value_type</c>).</summary>
public enum GgufValueType : uint
{
#pragma warning disable CS1591 // names are the spec's
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
#pragma warning restore CS1591
}

/// <summary>
/// One metadata value. Scalars are boxed .NET values (byte, sbyte, ushort, short, uint, int, float, bool,
/// string, ulong, long, double); an array is a <see cref="GgufArray"/>.
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value)
{
    /// <summary>The value as a 64-bit integer when it is any integer type (or bool).</summary>
    public bool TryGetInt64(out long value)
    {
        switch (Value)
        {
            case byte v: value = v; return true;
            case sbyte v: value = v; return true;
            case ushort v: value = v; return true;
            case short v: value = v; return true;
            case uint v: value = v; return true;
            case int v: value = v; return true;
            case ulong v when v <= long.MaxValue: value = (long)v; return true;
            case long v: value = v; return true;
            case bool v: value = v ? 1 : 0; return true;
            default: value = 0; return false;
        }
    }

    /// <summary>The value as a double when it is numeric.</summary>
    public bool TryGetDouble(out double value)
    {
        switch (Value)
        {
            // A float32 as the shortest decimal that round-trips (1e-05, not 9.999999747378752E-06).
            case float f: value = double.Parse(f.ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture); return true;
            case double d: value = d; return true;
            default:
                bool ok = TryGetInt64(out long l);
                value = l;
                return ok;
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Value switch
    {
        string s => s,
        GgufArray a => a.ToString(),
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => Value.ToString() ?? "",
    };
}

/// <summary>A GGUF array: its element type and the elements as a typed .NET array (string[], int[], float[], GgufArray[] ...).</summary>
public sealed record GgufArray(GgufValueType ElementType, Array Items)
{
    /// <summary>Number of elements.</summary>
    public int Count => Items.Length;

    /// <inheritdoc/>
    public override string ToString() => $"[{ElementType} x {Count}]";
}
