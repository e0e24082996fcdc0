using System.Text.Json.Nodes;
using Llama3.Tools;

namespace Llama3.Tests.Tools;

/// <summary>Python's ways of writing values, which Meta's prompts use; expected strings are CPython 3's output.</summary>
public class PythonTextTests
{
    [Theory]
    [InlineData(1e16, "1e+16")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(1.5e-7, "1.5e-07")]
    [InlineData(123456789.123, "123456789.123")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(0.1 + 0.2, "0.30000000000000004")]
    [InlineData(1.7976931348623157e308, "1.7976931348623157e+308")]
    [InlineData(5e-324, "5e-324")]
    [InlineData(100.0, "100.0")]
    [InlineData(1e22, "1e+22")]
    [InlineData(12345678901234567.0, "1.2345678901234568e+16")]
    [InlineData(0.5, "0.5")]
    [InlineData(0.0, "0.0")]
    public void Float_repr(double value, string expected)
    {
        Assert.Equal(expected, PythonText.FloatRepr(value));
    }

    [Fact]
    public void Json_dumps()
    {
        // json.dumps({'a': 'é\u2028\x00/', 'b': [1.0, -0, 10**30]})
        var node = JsonNode.Parse("{\"a\": \"\u00e9\u2028\\u0000/\", \"b\": [1.0, -0, 1000000000000000000000000000000]}");
        Assert.Equal("{\"a\": \"\\u00e9\\u2028\\u0000/\", \"b\": [1.0, 0, 1000000000000000000000000000000]}", PythonText.JsonDumps(node));
    }

    [Fact]
    public void Str_and_repr()
    {
        Assert.Equal("['a', \"it's\", 1, 2.5, True, None, {'k': 'v'}]", PythonText.Str(JsonNode.Parse("""["a", "it's", 1, 2.5, true, null, {"k": "v"}]""")));
        Assert.Equal("plain", PythonText.Str(JsonValue.Create("plain")));
        Assert.Equal("'a\\\\b\\n'", PythonText.Repr(JsonValue.Create("a\\b\n")));
        Assert.Equal("[\"\\u003ca\\u003e\", \"\\u00e9\\u0027\"]", PythonText.JinjaToJson(["<a>", "é'"]));
        Assert.Equal("[\"\\u003ca\\u003e \\u0026\"]", PythonText.JinjaToJson(["<a> &"]));
    }
}
