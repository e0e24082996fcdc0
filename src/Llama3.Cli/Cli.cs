using System.CommandLine;
using System.Text;
using System.Text.Json;
using Llama3.Formats;

namespace Llama3.Cli;

/// <summary>What every command shares: running with clear errors instead of stack traces.</summary>
internal static class Cli
{
    /// <summary>A user error: printed as one line, exit code 1.</summary>
    public sealed class UsageException(string message) : Exception(message);

    public static int Run(RootCommand root, string[] args)
    {
        Console.OutputEncoding = new UTF8Encoding(false);
        var parse = root.Parse(args);
        try
        {
            // Our own handler below prints one line; System.CommandLine's default would print a stack trace.
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is UsageException or ModelFormatException or FileNotFoundException or DirectoryNotFoundException
                                       or ArgumentException or JsonException or InvalidOperationException or IOException
                                       or UnauthorizedAccessException or NotSupportedException)
        {
            Console.Out.Flush();
            Console.Error.WriteLine($"llama3: error: {e.Message}");
            return 1;
        }
    }

    /// <summary>Exactly one of the options must be given.</summary>
    public static void RequireOne(ParseResult p, params Option[] options)
    {
        int given = options.Count(o => p.GetResult(o) is { Implicit: false });
        if (given != 1)
            throw new UsageException($"give exactly one of {string.Join(", ", options.Select(o => o.Name))}");
    }

    /// <summary>Standard output as UTF-8 with a large buffer (flushed by the caller).</summary>
    public static StreamWriter OpenStdout() =>
        new(Console.OpenStandardOutput(), new UTF8Encoding(false), 1 << 16) { AutoFlush = false, NewLine = "\n" };
}
