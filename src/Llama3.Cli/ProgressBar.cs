namespace Llama3.Cli;

/// <summary>
/// A progress bar on standard error when it is a terminal; nothing at all when it is a pipe or a file, so logs and
/// captured output stay clean.
/// </summary>
internal sealed class ProgressBar : IProgress<double>, IDisposable
{
    private readonly string _label;
    private readonly bool _enabled = !Console.IsErrorRedirected;
    private int _lastPercent = -1;
    private bool _drawn;

    public ProgressBar(string label) => _label = label;

    public void Report(double value)
    {
        if (!_enabled) return;
        int percent = (int)Math.Clamp(value * 100, 0, 100);
        if (percent == _lastPercent) return;
        _lastPercent = percent;
        int width = Math.Clamp(SafeWidth() - _label.Length - 10, 10, 50);
        int filled = percent * width / 100;
        Console.Error.Write($"\r{_label} [{new string('#', filled)}{new string('.', width - filled)}] {percent,3}%");
        _drawn = true;
    }

    private static int SafeWidth()
    {
        try { return Console.WindowWidth > 0 ? Console.WindowWidth : 80; }
        catch (IOException) { return 80; }
    }

    public void Dispose()
    {
        if (_drawn) Console.Error.WriteLine();
    }
}
