namespace Llama3.Benchmarks;

/// <summary>Finds the shared data folder beside the repository (the folder above that holds Llama3.slnx).</summary>
public static class SharedFiles
{
    public static string Path(params string[] parts)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Llama3.slnx")))
                return System.IO.Path.GetFullPath(System.IO.Path.Combine([dir.FullName, "..", "shared", .. parts]));
        // BenchmarkDotNet runs benchmarks from a generated project under bin/; walk up from the working directory too.
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Llama3.slnx")))
                return System.IO.Path.GetFullPath(System.IO.Path.Combine([dir.FullName, "..", "shared", .. parts]));
        throw new DirectoryNotFoundException("the repository root (Llama3.slnx) and the shared folder beside it were not found");
    }
}
