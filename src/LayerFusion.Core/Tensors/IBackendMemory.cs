namespace LayerFusion.Core.Tensors;

/// <summary>
/// What a backend can tell the pipelines about memory, so a request too large for it is refused up
/// front (with the estimate) instead of running out of memory minutes in. Optional: a backend
/// without it is sized as fp32 against the machine's available memory.
/// </summary>
public interface IBackendMemory
{
    /// <summary>Bytes this backend can still allocate now (CPU: the machine's available memory; CUDA: free device memory).</summary>
    long AvailableBytes { get; }

    /// <summary>Bytes per activation element (4 for fp32, 2 for fp16/bf16).</summary>
    int ActivationElementBytes { get; }
}

/// <summary>The machine's memory as the CPU backend sees it.</summary>
public static class HostMemory
{
    /// <summary>
    /// Linux: MemAvailable from /proc/meminfo, capped by the GC's limit (a container's cgroup limit)
    /// less what this process already holds; elsewhere the GC's view.
    /// </summary>
    public static long AvailableBytes()
    {
        var gc = GC.GetGCMemoryInfo();
        long limit = gc.TotalAvailableMemoryBytes - Environment.WorkingSet;
        long available = limit;
        try
        {
            if (OperatingSystem.IsLinux())
                foreach (var line in File.ReadLines("/proc/meminfo"))
                    if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    {
                        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                        if (parts.Length >= 2 && long.TryParse(parts[1], out long kb)) available = Math.Min(limit, kb * 1024);
                        break;
                    }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return Math.Max(0, available);
    }
}
