using System.Text.Json;
using System.Text.Json.Nodes;
using Llama3.AI;
using Llama3.Generation;
using Llama3.Tools;

namespace Llama3.Server;

/// <summary>The request fields of OpenAI's chat and text completion endpoints, read and checked.</summary>
internal static class OpenAIRequests
{
    /// <summary>A chat completion request.</summary>
    public sealed record ChatRequest(ChatConversation Conversation, GenerationOptions Options, bool Stream, bool IncludeUsage, bool Logprobs);

    /// <summary>A text completion request.</summary>
    public sealed record CompletionRequest(object Prompt, GenerationOptions Options, bool Stream, bool IncludeUsage, bool Echo, int? Logprobs);

    public static ChatRequest ReadChat(JsonFields f, int context)
    {
        CheckCommon(f);
        var messagesJson = f.Array("messages", required: true)!.Value;
        var messages = new List<ToolMessage>();
        int i = 0;
        foreach (var m in messagesJson.EnumerateArray())
        {
            var mf = f.Item(m, "messages", i);
            string role = mf.String("role", required: true)!;
            string content = ReadContent(mf, role);
            switch (role)
            {
                case "system" or "developer":
                    messages.Add(new ToolMessage("system", content));
                    break;
                case "user":
                    messages.Add(new ToolMessage("user", content));
                    break;
                case "assistant":
                    messages.Add(new ToolMessage("assistant", content) { ToolCalls = ReadToolCalls(mf) });
                    break;
                case "tool" or "ipython" or "function":
                    messages.Add(new ToolMessage("ipython", content)); // Llama 3.1's role for tool output
                    break;
                default:
                    throw new ApiException(400, $"'messages[{i}].role' must be system, developer, user, assistant or tool (got '{role}')", $"messages[{i}].role");
            }
            i++;
        }
        if (messages.Count == 0) throw new ApiException(400, "'messages' must hold at least one message", "messages");

        var tools = new List<ToolDefinition>();
        if (f.Array("tools") is { } toolsJson)
        {
            int k = 0;
            foreach (var t in toolsJson.EnumerateArray())
            {
                var tf = f.Item(t, "tools", k);
                string type = tf.String("type") ?? "function";
                if (type != "function") throw new ApiException(400, $"'tools[{k}].type' must be 'function' (got '{type}')", $"tools[{k}].type");
                var fn = tf.Object("function") ?? throw new ApiException(400, $"'tools[{k}].function' is required", $"tools[{k}].function");
                string name = fn.String("name", required: true)!;
                if (name.Length == 0 || name.Length > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
                    throw new ApiException(400, $"'tools[{k}].function.name' must be 1 to 64 letters, digits, underscores or dashes (got '{name}')", $"tools[{k}].function.name");
                var parameters = fn.Object("parameters");
                tools.Add(new ToolDefinition(name, fn.String("description"),
                    parameters is { } p ? (JsonObject)JsonNode.Parse(p.Element.GetRawText())! : null));
                k++;
            }
        }
        var choice = ReadToolChoice(f, tools);
        var (options, stream, includeUsage) = ReadGeneration(f, context, defaultMaxTokens: null);
        bool logprobs = f.Bool("logprobs") ?? false;
        int top = (int)(f.Integer("top_logprobs", 0, SamplerOptions.MaxTopLogprobs) ?? 0);
        if (top > 0 && !logprobs) throw new ApiException(400, "'top_logprobs' needs 'logprobs' to be true", "top_logprobs");
        options = options with { Sampling = options.Sampling with { Logprobs = logprobs, TopLogprobs = top } };
        return new ChatRequest(new ChatConversation(messages) { Tools = tools, ToolChoice = tools.Count == 0 ? ToolChoice.Auto : choice },
            options, stream, includeUsage, logprobs);
    }

    public static CompletionRequest ReadCompletion(JsonFields f, int context)
    {
        CheckCommon(f);
        if (f.Get("prompt") is not { } p) throw new ApiException(400, "'prompt' is required", "prompt");
        object prompt = p.ValueKind switch
        {
            JsonValueKind.String => p.GetString()!,
            JsonValueKind.Array when p.GetArrayLength() > 0 && p.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number) =>
                p.EnumerateArray().Select(e => e.TryGetInt32(out int id) ? id : throw new ApiException(400, "'prompt' token ids must be integers", "prompt")).ToArray(),
            JsonValueKind.Array when p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String => p[0].GetString()!,
            JsonValueKind.Array when p.GetArrayLength() > 1 => throw new ApiException(400, "'prompt' as several prompts is not supported: send one prompt per request", "prompt"),
            _ => throw new ApiException(400, "'prompt' must be a string, an array of one string, or an array of token ids", "prompt"),
        };
        if (f.Get("suffix") is { ValueKind: JsonValueKind.String } s && s.GetString()!.Length > 0)
            throw new ApiException(400, "'suffix' (fill in the middle) is not supported by Llama 3", "suffix");
        var (options, stream, includeUsage) = ReadGeneration(f, context, defaultMaxTokens: 16); // OpenAI's default for completions
        int? logprobs = (int?)f.Integer("logprobs", 0, 5);
        if (logprobs is int n)
            options = options with { Sampling = options.Sampling with { Logprobs = true, TopLogprobs = n } };
        return new CompletionRequest(prompt, options, stream, includeUsage, f.Bool("echo") ?? false, logprobs);
    }

    private static void CheckCommon(JsonFields f)
    {
        f.String("model");
        f.String("user");
        if (f.Integer("n", 1, int.MaxValue) is > 1) throw new ApiException(400, "'n' must be 1: one choice per request is supported", "n");
        if (f.Object("response_format") is { } rf && rf.String("type") is { } type && type != "text")
            throw new ApiException(400, $"'response_format.type' '{type}' is not supported (only 'text')", "response_format");
    }

    private static (GenerationOptions, bool Stream, bool IncludeUsage) ReadGeneration(JsonFields f, int context, int? defaultMaxTokens)
    {
        var s = new SamplerOptions();
        double? temperature = f.Number("temperature", 0, 2);
        double? topP = f.Number("top_p", 0, 1);
        if (topP == 0) throw new ApiException(400, "'top_p' must be greater than 0", "top_p");
        s = s with
        {
            Temperature = (float)(temperature ?? s.Temperature),
            TopP = (float)(topP ?? s.TopP),
            TopK = (int)(f.Integer("top_k", 0, int.MaxValue) ?? 0),
            MinP = (float)(f.Number("min_p", 0, 1) ?? 0),
            RepeatPenalty = (float)(f.Number("repeat_penalty", 1e-3, 100) ?? 1),
            FrequencyPenalty = (float)(f.Number("frequency_penalty", -2, 2) ?? 0),
            PresencePenalty = (float)(f.Number("presence_penalty", -2, 2) ?? 0),
            Seed = f.Integer("seed", long.MinValue, long.MaxValue) is long seed ? unchecked((ulong)seed) : null,
        };
        long? newer = f.Integer("max_completion_tokens", 0, int.MaxValue), older = f.Integer("max_tokens", 0, int.MaxValue);
        long? max = newer ?? older;
        // No limit means the rest of the context (OpenAI's default for chat); never more than the context.
        int maxTokens = (int)Math.Min(max ?? defaultMaxTokens ?? context, context);
        bool stream = f.Bool("stream") ?? false;
        bool includeUsage = f.Object("stream_options") is { } so && (so.Bool("include_usage") ?? false);
        return (new GenerationOptions { Sampling = s, MaxTokens = maxTokens, StopStrings = f.StopStrings("stop") }, stream, includeUsage);
    }

    private static string ReadContent(JsonFields mf, string role)
    {
        if (mf.Get("content") is not { } c) return "";
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array)
            throw new ApiException(400, $"'{mf.Name("content")}' must be a string or an array of content parts", mf.Name("content"));
        var text = new System.Text.StringBuilder();
        int i = 0;
        foreach (var part in c.EnumerateArray())
        {
            var pf = mf.Item(part, "content", i++);
            string type = pf.String("type", required: true)!;
            if (type is not ("text" or "input_text"))
                throw new ApiException(400, $"content parts of type '{type}' are not supported (only text)", mf.Name("content"));
            text.Append(pf.String("text", required: true));
        }
        return text.ToString();
    }

    private static List<ToolCall> ReadToolCalls(JsonFields mf)
    {
        var calls = new List<ToolCall>();
        if (mf.Array("tool_calls") is not { } arr) return calls;
        int i = 0;
        foreach (var c in arr.EnumerateArray())
        {
            var cf = mf.Item(c, "tool_calls", i);
            var fn = cf.Object("function") ?? throw new ApiException(400, $"'{cf.Name("function")}' is required", cf.Name("function"));
            string name = fn.String("name", required: true)!;
            string args = fn.String("arguments") ?? "{}";
            JsonObject obj;
            try { obj = JsonNode.Parse(args.Length == 0 ? "{}" : args) as JsonObject ?? throw new JsonException("not an object"); }
            catch (JsonException e)
            {
                throw new ApiException(400, $"'{fn.Name("arguments")}' must be a JSON object in a string: {e.Message}", fn.Name("arguments"));
            }
            calls.Add(new ToolCall(name, obj, cf.String("id")));
            i++;
        }
        return calls;
    }

    private static ToolChoice ReadToolChoice(JsonFields f, List<ToolDefinition> tools)
    {
        if (f.Get("tool_choice") is not { } v) return ToolChoice.Auto;
        if (v.ValueKind == JsonValueKind.String)
        {
            return v.GetString() switch
            {
                "auto" => ToolChoice.Auto,
                "none" => new ToolChoice(ToolChoiceMode.None),
                "required" when tools.Count > 0 => new ToolChoice(ToolChoiceMode.Required),
                "required" => throw new ApiException(400, "'tool_choice' is 'required' but no 'tools' are given", "tool_choice"),
                var s => throw new ApiException(400, $"'tool_choice' must be 'none', 'auto', 'required' or a function (got '{s}')", "tool_choice"),
            };
        }
        var cf = f.Object("tool_choice")!.Value;
        var fn = cf.Object("function") ?? throw new ApiException(400, "'tool_choice.function' is required", "tool_choice");
        string name = fn.String("name", required: true)!;
        if (!tools.Any(t => t.Name == name)) throw new ApiException(400, $"'tool_choice' names the function '{name}', which is not in 'tools'", "tool_choice");
        return new ToolChoice(ToolChoiceMode.Named, name);
    }
}
