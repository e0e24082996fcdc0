using Llama3.Formats;

namespace Llama3.Model;

/// <summary>Reads Meta's original checkpoint directory: params.json, consolidated.NN.pth, tokenizer.model.</summary>
internal static class MetaModel
{
    public static ModelFiles Open(string dir, ModelLoadOptions options) =>
        throw new ModelFormatException(dir, "Meta checkpoints are not readable yet");
}
