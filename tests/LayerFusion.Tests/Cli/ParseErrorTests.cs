using LayerFusion.Cli;

namespace LayerFusion.Tests.Cli;

public class ParseErrorTests
{
    [Theory]
    [InlineData(new[] { "sdxl", "--prompt", "x", "--steps", "abc", "--out", "o.png" }, "abc")]
    [InlineData(new[] { "no-such-command" }, "no-such-command")]
    [InlineData(new[] { "inspect", "a", "--bogus" }, "--bogus")]
    public void CommandLineMistakesGiveOneLineAndExitTwo(string[] args, string named)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        Assert.Equal(2, code);
        var lines = stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(named, lines[0]);
        Assert.Equal("", stdout.ToString());
    }

    [Fact]
    public void HelpStillWorks()
    {
        var stdout = new StringWriter();
        Assert.Equal(0, Program.Run(["--help"], stdout, new StringWriter()));
        Assert.Contains("sdxl", stdout.ToString());
    }
}
