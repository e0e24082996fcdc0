namespace Llama3.Generation;

/// <summary>
/// Holds back streamed text that could still become a stop string, and cuts the text where one appears, so a
/// stream never shows a stop string or part of one.
/// </summary>
internal sealed class StopStrings(IReadOnlyList<string> stops)
{
    private string _pending = "";

    /// <summary>Whether a stop string was found (the stream is over).</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds new text; returns what can be shown now.</summary>
    public string Push(string delta)
    {
        if (stops.Count == 0) return delta;
        if (Stopped || delta.Length == 0) return "";
        string text = _pending + delta;
        int cut = -1;
        foreach (var s in stops)
        {
            int at = text.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _pending = "";
            return text[..cut];
        }
        // Keep the longest suffix that is a prefix of some stop string.
        int keep = 0;
        foreach (var s in stops)
            for (int len = Math.Min(s.Length - 1, text.Length); len > keep; len--)
                if (string.CompareOrdinal(text, text.Length - len, s, 0, len) == 0) { keep = len; break; }
        _pending = text[^keep..];
        return text[..^keep];
    }

    /// <summary>The held-back text, when the stream ends for another reason.</summary>
    public string Flush()
    {
        string s = Stopped ? "" : _pending;
        _pending = "";
        return s;
    }
}
