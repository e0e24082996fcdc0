using System.Text.Json;
using Llama3.AI;
using Llama3.Model;
using Llama3.Tests;
using Llama3.Tools;

namespace Llama3.Server.Tests;

/// <summary>The chat layer's prompts against Meta's <c>ChatFormat</c> (chat-cases.json): without tools, exactly Meta's ids.</summary>
public sealed class ChatPromptParityTests
{
    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Path("reference", "tokenizer", "chat-cases.json")));
        foreach (var c in doc.RootElement.EnumerateArray()) data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void A_chat_without_tools_is_Metas_dialog_prompt(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Path("reference", "tokenizer", "chat-cases.json")));
        var c = doc.RootElement.EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);
        var tokenizer = Tokenization.LlamaTokenizer.FromFile(SharedData.Path("reference", "tokenizer", "tokenizer.model"));
        using var files = ModelFiles.Open(SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"));
        var engine = new ChatEngine(new ScriptedScheduler(tokenizer, files.Config));
        var messages = c.GetProperty("dialog").EnumerateArray()
            .Select(m => new ToolMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
        var prepared = engine.Prepare(new ChatConversation(messages));
        Assert.Equal(c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()), prepared.Prompt);
        Assert.False(prepared.ToolsOffered);
        Assert.Equal("", prepared.ForcedPrefix);
    }
}
