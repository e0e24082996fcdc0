using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Llama3.Tools;

/// <summary>
/// How Python writes a JSON value, since Meta's prompts are Python: <c>json.dumps</c> (default separators, ASCII
/// escapes), Jinja's <c>tojson</c>, and <c>str()</c> (what <c>{{ value }}</c> and f-strings write).
/// </summary>
internal static class PythonText
{
    /// <summary>Python's <c>json.dumps(value)</c>: <c>", "</c> and <c>": "</c>, non-ASCII as <c>\uXXXX</c>, keys in order.</summary>
    public static string JsonDumps(JsonNode? node)
    {
        var sb = new StringBuilder();
        WriteJson(node, sb);
        return sb.ToString();
    }

    /// <summary>
    /// Jinja's <c>tojson</c> filter: <c>json.dumps(value, sort_keys=True)</c> with <c>&lt; &gt; &amp; '</c> written
    /// as <c>\u003c \u003e \u0026 \u0027</c> (<c>htmlsafe_json_dumps</c>).
    /// </summary>
    public static string JinjaToJson(IEnumerable<string> strings)
    {
        var sb = new StringBuilder("[");
        bool first = true;
        foreach (string s in strings)
        {
            if (!first) sb.Append(", ");
            first = false;
            WriteJsonString(s, sb);
        }
        sb.Append(']');
        return sb.ToString().Replace("<", "\\u003c").Replace(">", "\\u003e").Replace("&", "\\u0026").Replace("'", "\\u0027");
    }

    private static void WriteJson(JsonNode? node, StringBuilder sb) => Write(node, sb, repr: false);

    // json.dumps (repr: false) or Python's repr of what json.loads gives (repr: true): the same walk, Python's or
    // JSON's names for null and the booleans, and each one's string quoting.
    private static void Write(JsonNode? node, StringBuilder sb, bool repr)
    {
        switch (node)
        {
            case null:
                sb.Append(repr ? "None" : "null");
                break;
            case JsonObject o:
                sb.Append('{');
                bool first = true;
                foreach (var (key, item) in o)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    WriteString(key, sb, repr);
                    sb.Append(": ");
                    Write(item, sb, repr);
                }
                sb.Append('}');
                break;
            case JsonArray a:
                sb.Append('[');
                for (int i = 0; i < a.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    Write(a[i], sb, repr);
                }
                sb.Append(']');
                break;
            default:
                var value = node.AsValue();
                switch (value.GetValueKind())
                {
                    case JsonValueKind.String: WriteString(value.GetValue<string>(), sb, repr); break;
                    case JsonValueKind.True: sb.Append(repr ? "True" : "true"); break;
                    case JsonValueKind.False: sb.Append(repr ? "False" : "false"); break;
                    case JsonValueKind.Number: sb.Append(PythonNumber(value.ToJsonString())); break;
                    default: sb.Append(repr ? "None" : "null"); break;
                }
                break;
        }
    }

    private static void WriteString(string s, StringBuilder sb, bool repr)
    {
        if (repr) WriteStringRepr(s, sb);
        else WriteJsonString(s, sb);
    }

    /// <summary>A string as <c>json.dumps</c> (<c>ensure_ascii=True</c>) writes it: lowercase <c>\u</c> escapes, surrogate pairs.</summary>
    private static void WriteJsonString(string s, StringBuilder sb)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < ' ' || c > '~') sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>
    /// A JSON number as Python writes the value <c>json.loads</c> gives: integers as they are, others as a float's
    /// <c>repr</c> (<c>1E5</c> is <c>100000.0</c>).
    /// </summary>
    public static string PythonNumber(string jsonNumber)
    {
        if (jsonNumber.AsSpan().IndexOfAny(".eE") < 0)
        {
            // json.loads("-0") is the int 0.
            return jsonNumber.TrimStart('-').TrimStart('0').Length == 0 ? "0" : jsonNumber;
        }
        return double.TryParse(jsonNumber, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
            ? FloatRepr(d)
            : jsonNumber;
    }

    /// <summary>
    /// Python's <c>repr(float)</c>: the shortest digits that read back, positional when the decimal exponent is in
    /// [-4, 16), else <c>d.ddde+XX</c>; a whole number keeps <c>.0</c>.
    /// </summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // .NET's "R" gives the shortest digits that read back (as Python's repr), positional or with an exponent.
        string shortest = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int e = shortest.IndexOfAny(['E', 'e']);
        string mantissa = e >= 0 ? shortest[..e] : shortest;
        int exp10 = e >= 0 ? int.Parse(shortest[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) : 0;
        int dot = mantissa.IndexOf('.');
        string intPart = dot >= 0 ? mantissa[..dot] : mantissa;
        string all = intPart + (dot >= 0 ? mantissa[(dot + 1)..] : "");
        string significant = all.TrimStart('0');
        int leadingZeros = all.Length - significant.Length;
        string digits = significant.TrimEnd('0');
        int exponent = intPart.Length - 1 - leadingZeros + exp10; // value = d1.d2d3... x 10^exponent
        var sb = new StringBuilder();
        if (d < 0) sb.Append('-');
        int decpt = exponent + 1; // Python's decpt: value = 0.d1d2... x 10^decpt
        if (decpt <= -4 || decpt > 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1) sb.Append('.').Append(digits, 1, digits.Length - 1);
            sb.Append('e').Append(exponent < 0 ? '-' : '+').Append(Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (decpt <= 0)
        {
            sb.Append("0.").Append('0', -decpt).Append(digits);
        }
        else if (decpt >= digits.Length)
        {
            sb.Append(digits).Append('0', decpt - digits.Length).Append(".0");
        }
        else
        {
            sb.Append(digits, 0, decpt).Append('.').Append(digits, decpt, digits.Length - decpt);
        }
        return sb.ToString();
    }

    /// <summary>Python's <c>str(value)</c> of what <c>json.loads</c> gives: strings as they are, <c>True</c>, <c>None</c>, <c>['a', 1]</c>.</summary>
    public static string Str(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : Repr(node);

    /// <summary>Python's <c>repr(value)</c> of what <c>json.loads</c> gives.</summary>
    public static string Repr(JsonNode? node)
    {
        var sb = new StringBuilder();
        WriteRepr(node, sb);
        return sb.ToString();
    }

    private static void WriteRepr(JsonNode? node, StringBuilder sb) => Write(node, sb, repr: true);

    /// <summary>Python's <c>repr(str)</c>: single quotes unless the text has <c>'</c> and no <c>"</c>.</summary>
    private static void WriteStringRepr(string s, StringBuilder sb)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        sb.Append(quote);
        foreach (char c in s)
        {
            if (c == quote || c == '\\') sb.Append('\\').Append(c);
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else if (c < ' ' || c == '\x7f') sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        sb.Append(quote);
    }

    /// <summary>Python truthiness of a JSON value (Jinja's <c>{% if value %}</c>): null, false, 0, "", [] and {} are false.</summary>
    public static bool IsTruthy(JsonNode? node) => node switch
    {
        null => false,
        JsonObject o => o.Count > 0,
        JsonArray a => a.Count > 0,
        _ => node.AsValue().GetValueKind() switch
        {
            JsonValueKind.String => node.GetValue<string>().Length > 0,
            JsonValueKind.True => true,
            JsonValueKind.Number => double.TryParse(node.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d != 0,
            _ => false,
        },
    };
}
