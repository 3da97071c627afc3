using System.Text.RegularExpressions;

namespace LayerFusion.Tests.Cuda;

/// <summary>One function's entry in ptxas' resource report (--ptxas-options=-v).</summary>
internal sealed record PtxasFunction(string Name, bool IsEntry, int StackFrame, int SpillStores, int SpillLoads, int? Registers)
{
    public bool UsesLocalMemory => StackFrame != 0 || SpillStores != 0 || SpillLoads != 0;
}

/// <summary>
/// Reads NVRTC's program log the same way for every toolkit we support (11.8 in CI, 12.x, 13.x on
/// a device): what counts is the diagnostics it carries and ptxas' per-function resource report, not
/// its exact text. Newer ptxas adds "used N barriers", smem/cmem sizes, "Compile time" lines and
/// reports of non-inlined callees; none of that is a warning, and none of it hides a spill.
/// </summary>
internal static partial class CompileLog
{
    [GeneratedRegex(@"\b(warning|error|remark)\b|deprecat", RegexOptions.IgnoreCase)]
    private static partial Regex DiagnosticPattern();

    [GeneratedRegex(@"Compiling entry function '([^']+)'")]
    private static partial Regex EntryPattern();

    [GeneratedRegex(@"Function properties for (\S+)")]
    private static partial Regex PropertiesPattern();

    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex FramePattern();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex RegistersPattern();

    /// <summary>The log's lines that are compiler diagnostics (warnings, errors, remarks, deprecations); a clean compile has none.</summary>
    public static IReadOnlyList<string> Diagnostics(string log) =>
        log.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && DiagnosticPattern().IsMatch(l)).ToArray();

    /// <summary>Every function ptxas reported, entry functions marked, registers attached to the entry they follow.</summary>
    public static IReadOnlyList<PtxasFunction> Resources(string log)
    {
        var functions = new List<PtxasFunction>();
        var entries = new HashSet<string>();
        string? currentEntry = null, pendingProperties = null;
        foreach (var raw in log.Split('\n'))
        {
            var line = raw.Trim();
            if (EntryPattern().Match(line) is { Success: true } e) { currentEntry = e.Groups[1].Value; entries.Add(currentEntry); continue; }
            if (PropertiesPattern().Match(line) is { Success: true } p) { pendingProperties = p.Groups[1].Value; continue; }
            if (FramePattern().Match(line) is { Success: true } f && pendingProperties is not null)
            {
                functions.Add(new PtxasFunction(pendingProperties, false, int.Parse(f.Groups[1].Value), int.Parse(f.Groups[2].Value),
                    int.Parse(f.Groups[3].Value), null));
                pendingProperties = null;
                continue;
            }
            if (RegistersPattern().Match(line) is { Success: true } r && currentEntry is not null)
            {
                int i = functions.FindLastIndex(x => x.Name == currentEntry);
                if (i >= 0) functions[i] = functions[i] with { Registers = int.Parse(r.Groups[1].Value) };
            }
        }
        return functions.Select(x => x with { IsEntry = entries.Contains(x.Name) }).ToArray();
    }
}
