using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Llama3.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(Llama3.Benchmarks.TokenizerBenchmarks).Assembly).Run(args);
