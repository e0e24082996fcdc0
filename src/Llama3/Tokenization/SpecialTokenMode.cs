namespace Llama3.Tokenization;

/// <summary>What encoding does with text that spells a special token, such as <c>&lt;|eot_id|&gt;</c>.</summary>
public enum SpecialTokenMode
{
    /// <summary>Encode it as ordinary text (Meta's default: <c>allowed_special=set(), disallowed_special=()</c>). Safe for user input.</summary>
    AsText,

    /// <summary>Encode it as the special token's id (tiktoken's <c>allowed_special="all"</c>).</summary>
    Allow,

    /// <summary>Throw an <see cref="ArgumentException"/> naming the token (tiktoken's <c>disallowed_special="all"</c>).</summary>
    Reject,
}
