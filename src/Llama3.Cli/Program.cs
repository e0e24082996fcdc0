using System.CommandLine;
using Llama3.Cli;

var root = new RootCommand("llama3: run Meta's Llama 3 models in .NET")
{
    TokenizeCommand.Create(),
    InfoCommand.Create(),
    LogitsCommand.Create(),
    PerplexityCommand.Create(),
    GenerateCommand.Create(),
    ChatCommand.Create(),
    BenchCommand.Create(),
    ServeCommand.Create(),
};
return Cli.Run(root, args);
