using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// One rewritten stderr line per phase of a run (loading, text encoding, denoising, decoding) when
/// stderr is a terminal; silent when it is piped or redirected (and for in-process runs that pass
/// their own writer). Step phases draw a bar with the step, the instantaneous rate (the last step's
/// time; s/it when slower than one step a second) and an ETA from a moving average of step times.
/// A finished phase stays on screen with its duration; an interrupted one is closed with a message.
/// Written by hand rather than with Spectre.Console: one line of text needs no live-rendering
/// framework, and the same code runs under a test's writer.
/// </summary>
internal sealed class ProgressLine
{
    readonly TextWriter _w;
    readonly bool _enabled;
    readonly Func<TimeSpan> _clock;
    readonly object _lock = new();
    string? _phase;
    TimeSpan _phaseStart, _lastStep;
    double _avgStep = -1;
    int _lastLength;
    bool _open;

    public ProgressLine(TextWriter stderr, bool enabled, Func<TimeSpan>? clock = null)
    {
        _w = stderr;
        _enabled = enabled;
        if (clock is null)
        {
            var sw = Stopwatch.StartNew();
            clock = () => sw.Elapsed;
        }
        _clock = clock;
    }

    /// <summary>True when <paramref name="stderr"/> is the process's own, un-redirected stderr.</summary>
    public static bool IsTerminal(TextWriter stderr) => ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;

    public static ProgressLine For(TextWriter stderr) => new(stderr, IsTerminal(stderr));

    /// <summary>Prefix of every phase name (e.g. "[2/4] " in a batch).</summary>
    public string Prefix { get; set; } = "";

    /// <summary>Starts a phase without steps ("loading model"); closes the previous one.</summary>
    public void Begin(string phase)
    {
        lock (_lock)
        {
            Switch(phase);
            Draw($"{Prefix}{phase} ...");
        }
    }

    /// <summary>Step <paramref name="step"/> of <paramref name="total"/> of <paramref name="phase"/> is done.</summary>
    public void Step(string phase, int step, int total)
    {
        lock (_lock)
        {
            Switch(phase);
            var now = _clock();
            double dt = (now - _lastStep).TotalSeconds;
            _lastStep = now;
            if (step > 0 && dt > 0) _avgStep = _avgStep < 0 ? dt : 0.7 * _avgStep + 0.3 * dt;
            Draw(Render($"{Prefix}{phase}", step, total, step > 0 ? dt : -1, _avgStep));
        }
    }

    /// <summary>The line for one step (pure: tested directly).</summary>
    internal static string Render(string phase, int step, int total, double lastStepSeconds, double averageStepSeconds)
    {
        const int Bar = 24;
        int filled = total > 0 ? (int)Math.Clamp((long)step * Bar / total, 0, Bar) : 0;
        var sb = new StringBuilder();
        sb.Append(phase).Append(" [").Append('#', filled).Append('-', Bar - filled).Append("] ")
          .Append(step.ToString(CultureInfo.InvariantCulture)).Append('/').Append(total.ToString(CultureInfo.InvariantCulture));
        if (lastStepSeconds > 0)
            sb.Append("  ").Append(lastStepSeconds <= 1
                ? (1 / lastStepSeconds).ToString("0.00", CultureInfo.InvariantCulture) + " it/s"
                : lastStepSeconds.ToString("0.00", CultureInfo.InvariantCulture) + " s/it");
        if (averageStepSeconds > 0 && step < total)
            sb.Append("  ETA ").Append(Duration(averageStepSeconds * (total - step)));
        return sb.ToString();
    }

    internal static string Duration(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Round(Math.Max(0, seconds)));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}" : $"{t.Minutes}:{t.Seconds:00}";
    }

    /// <summary>Closes the current phase with its duration (call when the run is over, also on failure).</summary>
    public void Finish()
    {
        lock (_lock) Close(null);
    }

    /// <summary>Closes the current line with <paramref name="message"/> (Ctrl+C, SIGTERM).</summary>
    public void Interrupt(string message)
    {
        lock (_lock) Close(message);
    }

    void Switch(string phase)
    {
        if (_phase == phase) return;
        Close(null);
        _phase = phase;
        _phaseStart = _lastStep = _clock();
        _avgStep = -1;
    }

    void Close(string? message)
    {
        if (!_enabled || !_open) { _phase = null; return; }
        var took = (_clock() - _phaseStart).TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);
        var text = message is null ? $"{Prefix}{_phase}: done in {took} s" : $"{Prefix}{_phase}: {message}";
        Draw(text);
        _w.WriteLine();
        _w.Flush();
        _open = false;
        _phase = null;
        _lastLength = 0;
    }

    void Draw(string text)
    {
        if (!_enabled) return;
        int width = Width();
        if (text.Length > width) text = text[..width];
        var pad = _lastLength > text.Length ? new string(' ', _lastLength - text.Length) : "";
        _w.Write($"\r{text}{pad}");
        _w.Flush();
        _lastLength = text.Length;
        _open = true;
    }

    static int Width()
    {
        try { return Console.WindowWidth is > 20 and var w ? w - 1 : 79; }
        catch (IOException) { return 79; }
        catch (PlatformNotSupportedException) { return 79; }
    }
}
