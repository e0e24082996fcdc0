namespace Llama3.Tests;

/// <summary>
/// Finds the shared test data: the folder <c>shared</c> beside the repository folder (the repository root is the
/// first folder above the test binaries that holds <c>Llama3.slnx</c>). The project itself holds no model files.
/// </summary>
public static class SharedData
{
    private static readonly Lazy<string> LazyRoot = new(FindRoot);

    /// <summary>The full path of the shared data folder.</summary>
    public static string Root => LazyRoot.Value;

    /// <summary>A path inside the shared data folder, e.g. <c>Path("models", "stories260K.gguf")</c>.</summary>
    public static string Path(params string[] parts) =>
        System.IO.Path.GetFullPath(System.IO.Path.Combine([Root, .. parts]));

    private static string FindRoot()
    {
        string start = AppContext.BaseDirectory;
        for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
        {
            if (!File.Exists(System.IO.Path.Combine(dir.FullName, "Llama3.slnx")))
                continue;
            string shared = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir.FullName, "..", "shared"));
            if (!Directory.Exists(shared))
                throw new DirectoryNotFoundException(
                    $"the shared test data folder {shared} (beside the repository {dir.FullName}) does not exist");
            return shared;
        }
        throw new DirectoryNotFoundException(
            $"no folder above {start} holds Llama3.slnx, so the repository root and the shared data beside it cannot be found");
    }
}
