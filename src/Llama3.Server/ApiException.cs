using System.Text.Json;

namespace Llama3.Server;

/// <summary>A request the server refuses, answered in OpenAI's error shape with <see cref="Status"/>.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    /// <summary>The HTTP status (400, 401, 404, 429, ...).</summary>
    public int Status { get; } = status;

    /// <summary>The request field at fault, if one is.</summary>
    public string? Param { get; } = param;

    /// <summary>OpenAI's error code (<c>invalid_api_key</c>, <c>context_length_exceeded</c>, ...), if any.</summary>
    public string? Code { get; } = code;

    /// <summary>OpenAI's error type (<c>invalid_request_error</c>, <c>server_error</c>, ...).</summary>
    public string Type { get; } = type;

    /// <summary>Writes <c>{"error":{"message","type","param","code"}}</c>.</summary>
    public static void WriteError(Utf8JsonWriter w, string message, string type, string? param, string? code)
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", message);
        w.WriteString("type", type);
        if (param is null) w.WriteNull("param"); else w.WriteString("param", param);
        if (code is null) w.WriteNull("code"); else w.WriteString("code", code);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}

/// <summary>Typed, checked reads of a JSON request body: a field of the wrong type or out of range is a 400 naming it.</summary>
internal readonly struct JsonFields(JsonElement obj, string prefix = "")
{
    public JsonElement Element => obj;

    public static JsonFields Root(JsonDocument doc)
    {
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new ApiException(400, "the request body must be a JSON object");
        return new JsonFields(doc.RootElement);
    }

    /// <summary>The field's full name in the request, for messages.</summary>
    public string Name(string field) => prefix + field;

    public bool Has(string field) => obj.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement? Get(string field) => obj.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string field, bool required = false)
    {
        if (Get(field) is not { } v)
            return required ? throw new ApiException(400, $"'{Name(field)}' is required", Name(field)) : null;
        if (v.ValueKind != JsonValueKind.String) throw new ApiException(400, $"'{Name(field)}' must be a string", Name(field));
        return v.GetString();
    }

    public bool? Bool(string field)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw new ApiException(400, $"'{Name(field)}' must be true or false", Name(field));
        return v.GetBoolean();
    }

    public double? Number(string field, double min, double max)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
            throw new ApiException(400, $"'{Name(field)}' must be a number", Name(field));
        if (d < min || d > max) throw new ApiException(400, $"'{Name(field)}' must be between {min} and {max} (got {d})", Name(field));
        return d;
    }

    public long? Integer(string field, long min, long max)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long n))
        {
            // 5.0 is an integer in JSON's number model; 5.5 is not.
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < 9e15) n = (long)d;
            else throw new ApiException(400, $"'{Name(field)}' must be an integer", Name(field));
        }
        if (n < min || n > max)
            throw new ApiException(400, n < min && min == 0 ? $"'{Name(field)}' must not be negative (got {n})" : $"'{Name(field)}' must be between {min} and {max} (got {n})", Name(field));
        return n;
    }

    public JsonElement? Array(string field, bool required = false)
    {
        if (Get(field) is not { } v)
            return required ? throw new ApiException(400, $"'{Name(field)}' is required", Name(field)) : null;
        if (v.ValueKind != JsonValueKind.Array) throw new ApiException(400, $"'{Name(field)}' must be an array", Name(field));
        return v;
    }

    public JsonFields? Object(string field)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Object) throw new ApiException(400, $"'{Name(field)}' must be an object", Name(field));
        return new JsonFields(v, Name(field) + ".");
    }

    public JsonFields Item(JsonElement item, string field, int index)
    {
        if (item.ValueKind != JsonValueKind.Object) throw new ApiException(400, $"'{Name(field)}[{index}]' must be an object", $"{Name(field)}[{index}]");
        return new JsonFields(item, $"{Name(field)}[{index}].");
    }

    /// <summary>OpenAI's <c>stop</c>: a string or an array of up to 4 strings.</summary>
    public IReadOnlyList<string> StopStrings(string field)
    {
        if (Get(field) is not { } v) return [];
        if (v.ValueKind == JsonValueKind.String) return v.GetString() is { Length: > 0 } s ? [s] : [];
        if (v.ValueKind != JsonValueKind.Array) throw new ApiException(400, $"'{Name(field)}' must be a string or an array of strings", Name(field));
        var list = new List<string>();
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String) throw new ApiException(400, $"'{Name(field)}' must be a string or an array of strings", Name(field));
            if (e.GetString() is { Length: > 0 } s) list.Add(s);
        }
        if (list.Count > 4) throw new ApiException(400, $"'{Name(field)}' may hold at most 4 sequences (got {list.Count})", Name(field));
        return list;
    }
}
