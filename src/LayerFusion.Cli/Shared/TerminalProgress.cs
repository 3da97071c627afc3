using System.Globalization;
using LayerFusion.Core.Pipelines;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// Step progress on one rewritten stderr line ("step 3/30  2.41 it/s") when stderr is a terminal;
/// silent when it is piped or redirected (and in-process runs that pass their own writer).
/// Reports arrive synchronously on the generating thread.
/// </summary>
internal sealed class TerminalProgress(TextWriter stderr, bool enabled, string label = "step") : IProgress<StepProgress>
{
    bool _open;

    /// <summary>True when <paramref name="stderr"/> is the process's own, un-redirected stderr.</summary>
    public static bool IsTerminal(TextWriter stderr) => ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;

    public static TerminalProgress For(TextWriter stderr, string label = "step") => new(stderr, IsTerminal(stderr), label);

    public void Report(StepProgress value)
    {
        if (!enabled) return;
        double seconds = value.Elapsed.TotalSeconds;
        string rate = seconds > 0 ? (value.Step / seconds).ToString("0.00", CultureInfo.InvariantCulture) + " it/s" : "";
        stderr.Write($"\r{label} {value.Step}/{value.TotalSteps}  {rate}   ");
        stderr.Flush();
        _open = true;
    }

    /// <summary>Ends the progress line (call when the run is over, also on failure).</summary>
    public void Finish()
    {
        if (!_open) return;
        stderr.WriteLine();
        _open = false;
    }
}
