namespace Llama3.Formats;

/// <summary>A model or tokenizer file is malformed; the message names the file and the problem.</summary>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public ModelFormatException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        FilePath = path;
        Problem = problem;
    }

    /// <summary>The file at fault.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong with it.</summary>
    public string Problem { get; }
}
