using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json.Nodes;

namespace Llama3.Tools;

/// <summary>
/// Reads the Python that Llama writes for tool calls, as Meta's <c>tool_utils.py</c> does with <c>ast.parse</c> and
/// <c>ast.literal_eval</c>: a list of calls with keyword arguments only (<c>[f(a=1), g(b="x")]</c>), and a built-in
/// call (<c>brave_search.call(query="...")</c>). Argument values are Python literals: strings in either quote (also
/// triple-quoted, raw, adjacent ones joined), ints, floats, <c>True</c>/<c>False</c>/<c>None</c>, lists, tuples,
/// dicts, sets; each becomes its JSON value. Anything else makes the text not a call; nothing throws.
/// </summary>
/// <remarks>
/// Beyond <c>literal_eval</c>, and said where it happens: <c>true</c>/<c>false</c>/<c>null</c> are read as JSON
/// (small models mix them in), and a dict written <c>{k=v}</c> (how Meta's <c>encode_tool_call</c> writes a dict
/// argument) is read as <c>{"k": v}</c>, so Meta's own output reads back.
/// </remarks>
internal sealed class PythonCallSyntax
{
    private const int MaxDepth = 64;
    private readonly string _s;
    private int _pos;
    private int _depth;

    private PythonCallSyntax(string s) => _s = s;

    /// <summary>
    /// <c>[name(k=v, ...), ...]</c> and nothing else but whitespace: Meta's <c>is_valid_python_list</c> (a non-empty
    /// list whose elements are all calls of a plain name with keyword arguments only) and
    /// <c>parse_python_list_for_function_calls</c>.
    /// </summary>
    public static bool TryParseCallList(string text, out List<(string Name, JsonObject Arguments)> calls)
    {
        calls = [];
        var p = new PythonCallSyntax(text);
        p.SkipSpace();
        if (!p.Eat('[')) return false;
        while (true)
        {
            p.SkipSpace();
            if (p.Eat(']')) break;
            if (!p.TryName(out string name)) return false;
            p.SkipSpace();
            if (!p.TryKeywordArguments(out var args)) return false;
            calls.Add((name, args));
            p.SkipSpace();
            if (p.Eat(',')) continue;
            if (p.Eat(']')) break;
            return false;
        }
        p.SkipSpace();
        return p.AtEnd && calls.Count > 0;
    }

    /// <summary><c>tool.call(k=v, ...)</c> and nothing else but whitespace (the built-in tools' call form).</summary>
    public static bool TryParseBuiltinCall(string text, out string tool, out JsonObject arguments)
    {
        arguments = [];
        var p = new PythonCallSyntax(text);
        p.SkipSpace();
        if (!p.TryName(out tool)) return false;
        p.SkipSpace();
        if (!p.Eat('.')) return false;
        p.SkipSpace();
        if (!p.TryName(out string method) || method != "call") return false;
        p.SkipSpace();
        if (!p.TryKeywordArguments(out arguments)) return false;
        p.SkipSpace();
        return p.AtEnd;
    }

    private bool AtEnd => _pos >= _s.Length;

    private char Peek(int ahead = 0) => _pos + ahead < _s.Length ? _s[_pos + ahead] : '\0';

    private bool Eat(char c)
    {
        if (Peek() != c || AtEnd) return false;
        _pos++;
        return true;
    }

    /// <summary>Whitespace, newlines (all these forms are inside brackets, where Python allows them) and comments.</summary>
    private void SkipSpace()
    {
        while (!AtEnd)
        {
            char c = _s[_pos];
            if (c is ' ' or '\t' or '\n' or '\r' or '\f') _pos++;
            else if (c == '\\' && Peek(1) == '\n') _pos += 2;
            else if (c == '#') { while (!AtEnd && _s[_pos] != '\n') _pos++; }
            else break;
        }
    }

    private static bool IsNameStart(char c) => c == '_' || char.IsLetter(c);

    private static bool IsNameChar(char c) => c == '_' || char.IsLetterOrDigit(c);

    private bool TryName(out string name)
    {
        int start = _pos;
        if (AtEnd || !IsNameStart(_s[_pos]))
        {
            name = "";
            return false;
        }
        while (!AtEnd && IsNameChar(_s[_pos])) _pos++;
        name = _s[start.._pos];
        return true;
    }

    /// <summary><c>(k=v, ...)</c>: keyword arguments only (Meta rejects positional ones); a repeated name is an error, as in Python.</summary>
    private bool TryKeywordArguments(out JsonObject args)
    {
        args = [];
        if (!Eat('(')) return false;
        while (true)
        {
            SkipSpace();
            if (Eat(')')) return true;
            if (!TryName(out string key) || IsKeyword(key)) return false;
            SkipSpace();
            if (!Eat('=') || Peek() == '=') return false;
            SkipSpace();
            if (!TryValue(out var value) || args.ContainsKey(key)) return false;
            args[key] = value;
            SkipSpace();
            if (Eat(',')) continue;
            if (Eat(')')) return true;
            return false;
        }
    }

    private static bool IsKeyword(string name) => name is "True" or "False" or "None";

    /// <summary>One literal (<c>ast.literal_eval</c>'s subset that JSON can hold).</summary>
    private bool TryValue(out JsonNode? value)
    {
        value = null;
        if (++_depth > MaxDepth) return false;
        try
        {
            SkipSpace();
            if (AtEnd) return false;
            char c = _s[_pos];
            if (c == '[') return TrySequence(']', out value);
            if (c == '(') return TryParenthesized(out value);
            if (c == '{') return TryBraces(out value);
            if (c is '"' or '\'' || (IsStringPrefix() && !AtEnd)) return TryStrings(out value);
            if (c is '+' or '-' or '.' || char.IsAsciiDigit(c)) return TryNumber(out value);
            if (!TryName(out string name)) return false;
            switch (name)
            {
                case "True" or "true": value = JsonValue.Create(true); return true;
                case "False" or "false": value = JsonValue.Create(false); return true;
                case "None" or "null": value = null; return true;
                default: return false; // a variable or a call: not a literal
            }
        }
        finally
        {
            _depth--;
        }
    }

    /// <summary>Whether a string prefix (<c>r</c>, <c>u</c>, <c>R</c>, <c>U</c>) starts a string literal here.</summary>
    private bool IsStringPrefix() => Peek() is 'r' or 'R' or 'u' or 'U' && Peek(1) is '"' or '\'';

    private bool TrySequence(char close, out JsonNode? value)
    {
        var array = new JsonArray();
        value = array;
        _pos++; // '[' or '('
        while (true)
        {
            SkipSpace();
            if (Eat(close)) return true;
            if (!TryValue(out var item)) return false;
            array.Add(item);
            SkipSpace();
            if (Eat(',')) continue;
            if (Eat(close)) return true;
            return false;
        }
    }

    /// <summary><c>(x)</c> is x; <c>()</c>, <c>(x,)</c>, <c>(x, y)</c> are tuples, read as JSON arrays.</summary>
    private bool TryParenthesized(out JsonNode? value)
    {
        int start = _pos;
        _pos++;
        SkipSpace();
        if (Eat(')'))
        {
            value = new JsonArray();
            return true;
        }
        if (!TryValue(out var first)) { value = null; return false; }
        SkipSpace();
        if (Eat(')'))
        {
            value = first;
            return true;
        }
        _pos = start;
        return TrySequence(')', out value);
    }

    /// <summary><c>{}</c> and <c>{k: v}</c> are dicts, <c>{a, b}</c> a set (a JSON array), <c>{k=v}</c> Meta's dict form.</summary>
    private bool TryBraces(out JsonNode? value)
    {
        _pos++;
        SkipSpace();
        var obj = new JsonObject();
        value = obj;
        if (Eat('}')) return true;
        int save = _pos;
        if (TryName(out string bare) && !IsKeyword(bare) && bare is not ("true" or "false" or "null"))
        {
            SkipSpace();
            if (Peek() == '=' && Peek(1) != '=')
            {
                _pos = save;
                return TryMetaDict(obj);
            }
        }
        _pos = save;
        if (!TryValue(out var firstKey)) return false;
        SkipSpace();
        if (Peek() == ':')
        {
            while (true)
            {
                if (!Eat(':')) return false;
                if (!TryValue(out var item) || !TryKey(firstKey, out string key)) return false;
                obj[key] = item; // a repeated key keeps the last value, as a Python dict display does
                SkipSpace();
                if (Eat('}')) return true;
                if (!Eat(',')) return false;
                SkipSpace();
                if (Eat('}')) return true;
                if (!TryValue(out firstKey)) return false;
                SkipSpace();
            }
        }
        var set = new JsonArray { firstKey };
        value = set;
        while (true)
        {
            SkipSpace();
            if (Eat('}')) return true;
            if (!Eat(',')) return false;
            SkipSpace();
            if (Eat('}')) return true;
            if (!TryValue(out var item)) return false;
            set.Add(item);
        }
    }

    private bool TryMetaDict(JsonObject obj)
    {
        while (true)
        {
            SkipSpace();
            if (Eat('}')) return true;
            if (!TryName(out string key)) return false;
            SkipSpace();
            if (!Eat('=')) return false;
            if (!TryValue(out var item)) return false;
            obj[key] = item;
            SkipSpace();
            if (Eat(',')) continue;
            return Eat('}');
        }
    }

    /// <summary>A dict key as a JSON property name: strings as they are, other scalars as Python's <c>str()</c>.</summary>
    private static bool TryKey(JsonNode? key, out string name)
    {
        name = "";
        if (key is JsonObject or JsonArray) return false; // unhashable in Python
        name = PythonText.Str(key);
        return true;
    }

    /// <summary>One or more adjacent string literals, joined (Python's implicit concatenation).</summary>
    private bool TryStrings(out JsonNode? value)
    {
        value = null;
        var sb = new StringBuilder();
        bool any = false;
        while (true)
        {
            int save = _pos;
            SkipSpace();
            if (!(Peek() is '"' or '\'' || IsStringPrefix()))
            {
                _pos = save;
                break;
            }
            if (!TryString(sb)) return false;
            any = true;
        }
        if (!any) return false;
        // An escape can spell half a surrogate pair; JSON text cannot hold one alone, so it becomes U+FFFD.
        for (int i = 0; i < sb.Length; i++)
        {
            if (char.IsHighSurrogate(sb[i]) && i + 1 < sb.Length && char.IsLowSurrogate(sb[i + 1])) i++;
            else if (char.IsSurrogate(sb[i])) sb[i] = '\uFFFD';
        }
        value = JsonValue.Create(sb.ToString());
        return true;
    }

    private bool TryString(StringBuilder sb)
    {
        bool raw = false;
        if (Peek() is 'r' or 'R') { raw = true; _pos++; }
        else if (Peek() is 'u' or 'U') _pos++;
        char quote = Peek();
        if (quote is not ('"' or '\'')) return false;
        bool triple = Peek(1) == quote && Peek(2) == quote;
        _pos += triple ? 3 : 1;
        while (true)
        {
            if (AtEnd) return false;
            char c = _s[_pos];
            if (c == quote && (!triple || (Peek(1) == quote && Peek(2) == quote)))
            {
                _pos += triple ? 3 : 1;
                return true;
            }
            if (!triple && c == '\n') return false;
            if (c == '\\')
            {
                if (_pos + 1 >= _s.Length) return false;
                if (raw)
                {
                    // In a raw string a backslash stays, and it still keeps the next character from ending the string.
                    sb.Append(c).Append(_s[_pos + 1]);
                    _pos += 2;
                    continue;
                }
                if (!TryEscape(sb)) return false;
                continue;
            }
            sb.Append(c);
            _pos++;
        }
    }

    /// <summary>Python's escapes; an unknown one keeps its backslash.</summary>
    private bool TryEscape(StringBuilder sb)
    {
        char e = _s[_pos + 1];
        _pos += 2;
        switch (e)
        {
            case '\n': return true; // line continuation
            case '\\': sb.Append('\\'); return true;
            case '\'': sb.Append('\''); return true;
            case '"': sb.Append('"'); return true;
            case 'a': sb.Append('\a'); return true;
            case 'b': sb.Append('\b'); return true;
            case 'f': sb.Append('\f'); return true;
            case 'n': sb.Append('\n'); return true;
            case 'r': sb.Append('\r'); return true;
            case 't': sb.Append('\t'); return true;
            case 'v': sb.Append('\v'); return true;
            case 'x': return TryHexEscape(2, sb);
            case 'u': return TryHexEscape(4, sb);
            case 'U': return TryHexEscape(8, sb);
            case >= '0' and <= '7':
                int value = e - '0';
                for (int i = 0; i < 2 && Peek() is >= '0' and <= '7'; i++) value = value * 8 + (_s[_pos++] - '0');
                sb.Append((char)value);
                return true;
            default:
                sb.Append('\\').Append(e);
                return true;
        }
    }

    private bool TryHexEscape(int digits, StringBuilder sb)
    {
        if (_pos + digits > _s.Length) return false;
        if (!int.TryParse(_s.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int cp)) return false;
        if ((uint)cp > 0x10FFFF) return false;
        _pos += digits;
        if (cp is >= 0xD800 and <= 0xDFFF) sb.Append((char)cp);
        else sb.Append(char.ConvertFromUtf32(cp));
        return true;
    }

    /// <summary>
    /// An int (decimal, <c>0x</c>, <c>0o</c>, <c>0b</c>, with <c>_</c>) or a float, after any unary signs; complex
    /// numbers and infinities (which JSON cannot hold) are not read.
    /// </summary>
    private bool TryNumber(out JsonNode? value)
    {
        value = null;
        bool negative = false;
        while (Peek() is '+' or '-')
        {
            if (_s[_pos] == '-') negative = !negative;
            _pos++;
            SkipSpace();
        }
        int start = _pos;
        if (Peek() == '0' && Peek(1) is 'x' or 'X' or 'o' or 'O' or 'b' or 'B')
        {
            char kind = char.ToLowerInvariant(Peek(1));
            _pos += 2;
            int digitsStart = _pos;
            while (!AtEnd && (char.IsAsciiHexDigit(_s[_pos]) || _s[_pos] == '_')) _pos++;
            string text = _s[digitsStart.._pos].Replace("_", "");
            if (text.Length == 0) return false;
            BigInteger n = BigInteger.Zero;
            int radix = kind switch { 'x' => 16, 'o' => 8, _ => 2 };
            foreach (char ch in text)
            {
                int d = char.IsAsciiDigit(ch) ? ch - '0' : char.ToLowerInvariant(ch) - 'a' + 10;
                if (d >= radix) return false;
                n = n * radix + d;
            }
            return EndOfNumber() && TryInteger(negative ? -n : n, out value);
        }
        while (!AtEnd && (char.IsAsciiDigit(_s[_pos]) || _s[_pos] == '_')) _pos++;
        bool isFloat = false;
        if (Peek() == '.')
        {
            isFloat = true;
            _pos++;
            while (!AtEnd && (char.IsAsciiDigit(_s[_pos]) || _s[_pos] == '_')) _pos++;
        }
        if (Peek() is 'e' or 'E')
        {
            int save = _pos;
            _pos++;
            if (Peek() is '+' or '-') _pos++;
            if (!char.IsAsciiDigit(Peek())) _pos = save;
            else
            {
                isFloat = true;
                while (!AtEnd && (char.IsAsciiDigit(_s[_pos]) || _s[_pos] == '_')) _pos++;
            }
        }
        string literal = _s[start.._pos].Replace("_", "");
        if (literal.Length == 0 || literal == "." || !EndOfNumber()) return false;
        if (isFloat)
        {
            if (!double.TryParse(literal, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) || !double.IsFinite(d)) return false;
            value = JsonValue.Create(negative ? -d : d);
            return true;
        }
        if (!BigInteger.TryParse(literal, NumberStyles.None, CultureInfo.InvariantCulture, out var big)) return false;
        return TryInteger(negative ? -big : big, out value);
    }

    /// <summary>A number must not run into a name (<c>1j</c>, <c>3x</c>).</summary>
    private bool EndOfNumber() => AtEnd || !IsNameChar(_s[_pos]);

    private static bool TryInteger(BigInteger n, out JsonNode? value)
    {
        if (n >= long.MinValue && n <= long.MaxValue) value = JsonValue.Create((long)n);
        else if (n >= (BigInteger)decimal.MinValue && n <= (BigInteger)decimal.MaxValue) value = JsonValue.Create((decimal)n);
        else
        {
            // Larger than JSON readers take as a number: keep every digit, as a JSON number parsed from text.
            value = JsonNode.Parse(n.ToString(CultureInfo.InvariantCulture));
        }
        return true;
    }
}
