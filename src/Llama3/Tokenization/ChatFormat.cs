namespace Llama3.Tokenization;

/// <summary>One message of a dialog. Roles: system, user, assistant, ipython (tool results); others are encoded as given.</summary>
/// <param name="Role">The role, encoded as plain text in the header.</param>
/// <param name="Content">The content; surrounding whitespace is stripped as Python's <c>str.strip()</c> does.</param>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>A system message.</summary>
    public static ChatMessage System(string content) => new("system", content);

    /// <summary>A user message.</summary>
    public static ChatMessage User(string content) => new("user", content);

    /// <summary>An assistant message.</summary>
    public static ChatMessage Assistant(string content) => new("assistant", content);

    /// <summary>A tool result (Llama 3.1's <c>ipython</c> role).</summary>
    public static ChatMessage IPython(string content) => new("ipython", content);
}

/// <summary>
/// Meta's Llama 3 <c>ChatFormat</c> (<c>llama/tokenizer.py</c>): <c>&lt;|begin_of_text|&gt;</c>, then per message
/// <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content.strip()}&lt;|eot_id|&gt;</c>, then the
/// assistant header for the model to complete. Content is encoded with special-token text as ordinary text, so a
/// user cannot inject control tokens.
/// </summary>
public sealed class ChatFormat
{
    private readonly LlamaTokenizer _tokenizer;
    private readonly int _beginOfText, _startHeader, _endHeader, _eot;

    /// <summary>Creates the format over a tokenizer that has Llama 3's special tokens.</summary>
    public ChatFormat(LlamaTokenizer tokenizer)
    {
        _tokenizer = tokenizer;
        _beginOfText = Require("<|begin_of_text|>");
        _startHeader = Require("<|start_header_id|>");
        _endHeader = Require("<|end_header_id|>");
        _eot = Require("<|eot_id|>");
    }

    /// <summary>The format over <paramref name="tokenizer"/>, or null when its vocabulary has no Llama 3 chat tokens.</summary>
    public static ChatFormat? TryCreate(LlamaTokenizer tokenizer) =>
        tokenizer.GetSpecialTokenId("<|start_header_id|>") is null ? null : new ChatFormat(tokenizer);

    private int Require(string name) =>
        _tokenizer.GetSpecialTokenId(name)
        ?? throw new InvalidOperationException($"{_tokenizer.Source}: the vocabulary has no {name} token, so it cannot use the Llama 3 chat format");

    /// <summary>The ids that end an assistant turn (from the model's files).</summary>
    public IReadOnlyList<int> StopTokens => _tokenizer.EndOfGenerationIds;

    /// <summary>Appends <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n</c>.</summary>
    public void EncodeHeader(string role, List<int> output)
    {
        output.Add(_startHeader);
        _tokenizer.EncodeToIds(role, output);
        output.Add(_endHeader);
        _tokenizer.EncodeToIds("\n\n", output);
    }

    /// <summary>Appends one message: header, stripped content, <c>&lt;|eot_id|&gt;</c>.</summary>
    public void EncodeMessage(ChatMessage message, List<int> output)
    {
        EncodeHeader(message.Role, output);
        _tokenizer.EncodeToIds(CharClass.PythonStrip(message.Content), output);
        output.Add(_eot);
    }

    /// <summary>One message's ids.</summary>
    public IReadOnlyList<int> EncodeMessage(ChatMessage message)
    {
        var output = new List<int>();
        EncodeMessage(message, output);
        return output;
    }

    /// <summary>A whole dialog, ready for the assistant's answer (Meta's <c>encode_dialog_prompt</c>).</summary>
    public IReadOnlyList<int> EncodeDialogPrompt(IEnumerable<ChatMessage> dialog)
    {
        var output = new List<int> { _beginOfText };
        foreach (var m in dialog) EncodeMessage(m, output);
        EncodeHeader("assistant", output);
        return output;
    }
}
