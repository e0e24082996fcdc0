using Llama3.Tools;

namespace Llama3.Tests.Tools;

/// <summary>Streaming: which prefixes of an answer may still become a call, so a server holds them back.</summary>
public class MayBeToolCallTests
{
    public static TheoryData<string, ToolCallFormat> Calls => new()
    {
        { MetaExamples.Llama31BuiltinToolsResponse, ToolCallFormat.Json },
        { MetaExamples.Llama31CodeInterpreterResponse, ToolCallFormat.Json },
        { MetaExamples.Llama31JsonToolsResponse, ToolCallFormat.Json },
        { MetaExamples.Llama31FunctionTagResponse, ToolCallFormat.Json },
        { MetaExamples.Llama32ZeroShotResponse, ToolCallFormat.PythonList },
        { MetaExamples.Llama32UserMessageResponse, ToolCallFormat.PythonList },
        { MetaExamples.Llama32CodeInterpreterResponse, ToolCallFormat.PythonList },
        { """{"name": "f", "parameters": {"s": "}]) \" {"}}""", ToolCallFormat.Json },
        { """[f(s=')]}', t="\")"), g()]""", ToolCallFormat.PythonList },
        { """brave_search.call(query="a)b")""", ToolCallFormat.Json },
        { "  \n[f(a=1)]", ToolCallFormat.PythonList },
    };

    // Every prefix of a call must be held back, or a server would stream part of a call as text.
    [Theory]
    [MemberData(nameof(Calls))]
    public void Every_prefix_of_a_call_may_be_a_call(string answer, ToolCallFormat format)
    {
        Assert.NotEmpty(ToolCallParser.Parse(answer, format).Calls);
        string body = answer.EndsWith("<|eom_id|>", StringComparison.Ordinal) || answer.EndsWith("<|eot_id|>", StringComparison.Ordinal)
            ? answer[..^10] : answer;
        for (int i = 0; i <= body.Length; i++)
            Assert.True(ToolCallParser.MayBeToolCall(body[..i], format), $"prefix {i}: {body[..i]}");
    }

    [Theory]
    [InlineData("The 100th decimal of pi is 7.", 1)]
    [InlineData("Hello", 1)]
    [InlineData("  Sure", 3)]
    [InlineData("<b>bold</b>", 2)]
    [InlineData("[1, 2, 3]", 2)]
    [InlineData("[f, g]", 3)]
    [InlineData("[f(a=1)] and more", 10)]
    [InlineData("[]", 2)]
    [InlineData("{'a': 1}", 2)]
    [InlineData("{ 42 }", 3)]
    [InlineData("""{"name": "f", "parameters": {}} and more""", 33)]
    [InlineData("bravo", 5)]
    [InlineData("""brave_search.call(query="x") done""", 30)]
    public void Text_stops_being_held_once_it_cannot_be_a_call(string answer, int firstFalse)
    {
        for (int i = 0; i < firstFalse; i++)
            Assert.True(ToolCallParser.MayBeToolCall(answer[..i], ToolCallFormat.Json), $"prefix {i}");
        for (int i = firstFalse; i <= answer.Length; i++)
        {
            Assert.False(ToolCallParser.MayBeToolCall(answer[..i], ToolCallFormat.Json), $"prefix {i}: {answer[..i]}");
            Assert.False(ToolCallParser.MayBeToolCall(answer[..i], ToolCallFormat.PythonList), $"prefix {i}: {answer[..i]}");
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData(" \n ")]
    [InlineData("<")]
    [InlineData("<|python")]
    [InlineData("<|python_tag|>anything at all")]
    [InlineData("<func")]
    [InlineData("{")]
    [InlineData("[")]
    [InlineData("[get_weather")]
    [InlineData("[get_weather (")]
    [InlineData("wolfram")]
    public void Starts_of_calls_are_held(string prefix)
    {
        Assert.True(ToolCallParser.MayBeToolCall(prefix, ToolCallFormat.Json));
        Assert.True(ToolCallParser.MayBeToolCall(prefix, ToolCallFormat.PythonList));
    }
}
