using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Llama3.Tests.Cli;

/// <summary><c>llama3 serve</c> as a user runs it: it starts, answers over loopback, refuses bad flags, and stops on SIGTERM.</summary>
public class ServeCommandTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(60) };

    private sealed class Server : IDisposable
    {
        public required Process Process { get; init; }
        public required Uri Address { get; init; }
        public required StringBuilder Stderr { get; init; }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }
    }

    private static Server Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "llama3.dll"));
        psi.ArgumentList.Add("serve");
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var stderr = new StringBuilder();
        var address = new TaskCompletionSource<Uri>();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) { address.TrySetException(new InvalidOperationException("serve exited: " + stderr)); return; }
            lock (stderr) stderr.AppendLine(e.Data);
            var m = Regex.Match(e.Data, @" on (http://\S+) ");
            if (m.Success) address.TrySetResult(new Uri(m.Groups[1].Value));
        };
        p.OutputDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        if (!address.Task.Wait(TimeSpan.FromSeconds(60))) { p.Kill(true); throw new TimeoutException("serve did not start: " + stderr); }
        return new Server { Process = p, Address = address.Task.Result, Stderr = stderr };
    }

    [Fact]
    public async Task Serves_chat_on_loopback_and_stops_cleanly_on_SIGTERM()
    {
        using var s = Start("-m", SharedData.Path("models", "tiny", "llama3-tiny-BF16.gguf"), "--port", "0", "--parallel", "2", "--ctx", "128");
        Assert.Equal("127.0.0.1", s.Address.Host); // loopback unless told otherwise
        var health = await Http.GetStringAsync(new Uri(s.Address, "/health"));
        Assert.Equal(2, JsonDocument.Parse(health).RootElement.GetProperty("slots_idle").GetInt32());
        var r = await Http.PostAsync(new Uri(s.Address, "/v1/chat/completions"),
            new StringContent("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("llama3-tiny-BF16", body.GetProperty("model").GetString()); // the file name, without --alias
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        using (var kill = Process.Start("kill", ["-TERM", s.Process.Id.ToString()])) kill.WaitForExit();
        Assert.True(s.Process.WaitForExit(30_000), "serve did not stop on SIGTERM");
        Assert.Equal(0, s.Process.ExitCode);
    }

    [Fact]
    public async Task A_model_without_chat_tokens_serves_completions_and_refuses_chat_clearly()
    {
        using var s = Start("-m", SharedData.Path("models", "stories260K.gguf"), "--port", "0", "--parallel", "1", "--api-key", "k", "--alias", "stories");
        lock (s.Stderr) Assert.Contains("no Llama 3 chat tokens", s.Stderr.ToString());
        HttpRequestMessage Post(string path, string json) => new(HttpMethod.Post, new Uri(s.Address, path))
        {
            Content = new StringContent(json, Encoding.UTF8, "application/json"),
            Headers = { Authorization = new("Bearer", "k") },
        };
        var c = await Http.SendAsync(Post("/v1/completions", """{"prompt":"Once upon a time","max_tokens":4,"temperature":0}"""));
        Assert.Equal(HttpStatusCode.OK, c.StatusCode);
        Assert.Equal("stories", JsonDocument.Parse(await c.Content.ReadAsStringAsync()).RootElement.GetProperty("model").GetString());
        var chat = await Http.SendAsync(Post("/v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}]}"""));
        Assert.Equal(HttpStatusCode.BadRequest, chat.StatusCode);
        Assert.Contains("chat", JsonDocument.Parse(await chat.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("--parallel", "0", "--parallel")]
    [InlineData("--port", "70000", "--port")]
    [InlineData("--tool-format", "xml", "--tool-format")]
    [InlineData("--host", "not-an-address", "--host")]
    public void Bad_flags_are_one_clear_line(string flag, string value, string named)
    {
        var r = CliRunner.Run("serve", "-m", SharedData.Path("models", "stories260K.gguf"), flag, value);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("llama3: error: ", r.Stderr.Trim());
        Assert.Contains(named, r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr); // no stack trace
    }

    [Fact]
    public void A_missing_model_names_the_path()
    {
        var r = CliRunner.Run("serve", "-m", "/nonexistent/model.gguf");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("/nonexistent/model.gguf", r.Stderr);
    }
}
