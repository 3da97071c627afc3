using System.Runtime.InteropServices;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// Ctrl+C (SIGINT) and SIGTERM: the first one cancels the run's token, closes the progress line with
/// a message and lets the command clean up (temporaries removed, nothing published) and exit 130 or
/// 143. A command stuck in work that does not observe the token gets <see cref="Grace"/>; then this
/// process's own temporaries in the folders it writes to are removed and the process exits with that
/// code. A second signal skips the wait. Installed by Main only: in-process runs (tests) keep their
/// host's signal handling and get <see cref="None"/>.
/// </summary>
internal sealed class Interrupts : IDisposable
{
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(5);
    static readonly AsyncLocal<Interrupts?> CurrentSlot = new();

    readonly CancellationTokenSource _cts = new();
    readonly List<PosixSignalRegistration> _registrations = [];
    readonly List<string> _dirs = [];
    readonly ManualResetEventSlim _done = new();
    readonly object _lock = new();
    TextWriter? _stderr;
    bool _mayExit;
    int _signals;

    /// <summary>The run's interrupts (a never-cancelled instance outside Main).</summary>
    public static Interrupts Current => CurrentSlot.Value ?? None;

    /// <summary>Never signalled.</summary>
    public static Interrupts None { get; } = new();

    /// <summary>Makes <paramref name="interrupts"/> the current instance for this async flow (Program.Run).</summary>
    internal static void Use(Interrupts? interrupts) => CurrentSlot.Value = interrupts;

    public CancellationToken Token => _cts.Token;

    /// <summary>130 after SIGINT, 143 after SIGTERM; null when not interrupted.</summary>
    public int? ExitCode { get; private set; }

    /// <summary>The progress line to close on a signal.</summary>
    public ProgressLine? Progress { get; set; }

    public static Interrupts Install(TextWriter stderr)
    {
        var i = new Interrupts { _stderr = stderr, _mayExit = true };
        i._registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; i.Signal(130); }));
        i._registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; i.Signal(143); }));
        return i;
    }

    /// <summary>A folder this run writes temporaries into (cleaned of ours when the grace period runs out).</summary>
    public void Watch(string? dir)
    {
        if (string.IsNullOrEmpty(dir)) return;
        lock (_lock) _dirs.Add(dir);
    }

    /// <summary>Cancels as a signal would (also used by tests).</summary>
    internal void Signal(int code)
    {
        int n = Interlocked.Increment(ref _signals);
        if (n == 1)
        {
            ExitCode = code;
            Progress?.Interrupt(code == 130 ? "interrupted (Ctrl+C), cleaning up" : "terminated, cleaning up");
            _cts.Cancel();
            if (!_mayExit) return;
            var watchdog = new Thread(() =>
            {
                if (!_done.Wait(Grace)) ForceExit(code);
            }) { IsBackground = true, Name = "interrupt watchdog" };
            watchdog.Start();
        }
        else if (_mayExit) ForceExit(code);
    }

    void ForceExit(int code)
    {
        string[] dirs;
        lock (_lock) dirs = [.. _dirs];
        foreach (var d in dirs) TempNames.DeleteOwn(d);
        _stderr?.WriteLine($"error: {(code == 130 ? "interrupted" : "terminated")}; removed this run's temporary files");
        _stderr?.Flush();
        Environment.Exit(code);
    }

    /// <summary>The command returned: no forced exit any more.</summary>
    public void Completed() => _done.Set();

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _done.Set();
    }
}
