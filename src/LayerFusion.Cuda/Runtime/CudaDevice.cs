using System.Text;
using LayerFusion.Cuda.Interop;

namespace LayerFusion.Cuda.Runtime;

/// <summary>
/// One GPU: the driver initialised, its primary context retained, one non-blocking stream.
/// <see cref="Open"/> fails with a single <see cref="CudaUnavailableException"/> that says what is
/// missing (driver library, device) so callers can fall back to the CPU backend.
/// </summary>
public sealed unsafe class CudaDevice : IDisposable
{
    [ThreadStatic] static IntPtr _currentOnThread;

    CudaDevice(int ordinal, int handle, IntPtr context, IntPtr stream)
    {
        Ordinal = ordinal;
        Handle = handle;
        Context = context;
        Stream = stream;
        Name = QueryName(handle);
        Driver.Check(Driver.cuDeviceGetAttribute(out var major, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, handle), "cuDeviceGetAttribute");
        Driver.Check(Driver.cuDeviceGetAttribute(out var minor, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, handle), "cuDeviceGetAttribute");
        Driver.Check(Driver.cuDeviceGetAttribute(out var sms, Driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, handle), "cuDeviceGetAttribute");
        Driver.Check(Driver.cuDeviceGetAttribute(out var smem, Driver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, handle), "cuDeviceGetAttribute");
        Driver.Check(Driver.cuDeviceTotalMem(out var total, handle), "cuDeviceTotalMem");
        Driver.Check(Driver.cuDriverGetVersion(out var driverVersion), "cuDriverGetVersion");
        Arch = major * 10 + minor;
        MultiprocessorCount = sms;
        MaxSharedMemoryPerBlockOptin = smem;
        TotalMemory = (long)total;
        DriverVersion = driverVersion;
    }

    public int Ordinal { get; }
    public int Handle { get; }
    public IntPtr Context { get; }
    public IntPtr Stream { get; }
    public string Name { get; }
    /// <summary>Compute capability as major*10+minor (80 = A100, 90 = H100/H200).</summary>
    public int Arch { get; }
    public int MultiprocessorCount { get; }
    public int MaxSharedMemoryPerBlockOptin { get; }
    public long TotalMemory { get; }
    public int DriverVersion { get; }

    /// <summary>
    /// True while <see cref="CudaGraph.Capture"/> records this device's stream: the driver refuses
    /// allocation, free and synchronization then (and invalidates the capture), so backends defer
    /// their frees and allocate only from memory they already hold.
    /// </summary>
    public bool IsCapturing => _capturing;
    internal volatile bool _capturing;

    public override string ToString() =>
        $"{Name} (sm_{Arch}, {MultiprocessorCount} SMs, {TotalMemory / (1 << 20)} MiB, driver {DriverVersion / 1000}.{DriverVersion % 1000 / 10})";

    /// <summary>Opens device <paramref name="ordinal"/> or throws <see cref="CudaUnavailableException"/>.</summary>
    public static CudaDevice Open(int ordinal = 0)
    {
        NativeLibraries.Require(CudaLibrary.Driver);
        int rc = Driver.cuInit(0);
        if (rc == Driver.CUDA_ERROR_NO_DEVICE)
            throw new CudaUnavailableException("CUDA backend unavailable: the driver reports no CUDA device; use --backend cpu.");
        if (rc != 0)
        {
            try { Driver.Check(rc, "cuInit"); }
            catch (CudaException e) { throw new CudaUnavailableException($"CUDA backend unavailable: {e.Message}; use --backend cpu.", e); }
        }
        Driver.Check(Driver.cuDeviceGetCount(out var count), "cuDeviceGetCount");
        if (count == 0)
            throw new CudaUnavailableException("CUDA backend unavailable: no CUDA device found; use --backend cpu.");
        if (ordinal < 0 || ordinal >= count)
            throw new CudaUnavailableException($"CUDA backend unavailable: device {ordinal} requested, {count} present.");
        Driver.Check(Driver.cuDeviceGet(out var handle, ordinal), "cuDeviceGet");
        Driver.Check(Driver.cuDevicePrimaryCtxRetain(out var ctx, handle), "cuDevicePrimaryCtxRetain");
        Driver.Check(Driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
        Driver.Check(Driver.cuStreamCreate(out var stream, Driver.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        _currentOnThread = ctx;
        return new CudaDevice(ordinal, handle, ctx, stream);
    }

    /// <summary>Opens device 0, or returns null with the reason (for tests that must skip, and the CLI's fallback).</summary>
    public static CudaDevice? TryOpen(out string reason)
    {
        try
        {
            reason = "";
            return Open();
        }
        catch (CudaUnavailableException e)
        {
            reason = e.Message;
            return null;
        }
    }

    /// <summary>Makes the primary context current on the calling thread (thread-pool threads start with none).</summary>
    public void MakeCurrent()
    {
        if (_currentOnThread == Context) return;
        Driver.Check(Driver.cuCtxSetCurrent(Context), "cuCtxSetCurrent");
        _currentOnThread = Context;
    }

    public void Synchronize()
    {
        MakeCurrent();
        Driver.Check(Driver.cuStreamSynchronize(Stream), "cuStreamSynchronize");
    }

    static string QueryName(int handle)
    {
        var buf = stackalloc byte[256];
        Driver.Check(Driver.cuDeviceGetName(buf, 256, handle), "cuDeviceGetName");
        int n = 0;
        while (n < 256 && buf[n] != 0) n++;
        return Encoding.UTF8.GetString(buf, n);
    }

    bool _disposed;
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        MakeCurrent();
        Driver.cuStreamSynchronize(Stream);
        Driver.cuStreamDestroy(Stream);
        Driver.cuDevicePrimaryCtxRelease(Handle);
        _currentOnThread = IntPtr.Zero;
    }
}

/// <summary>GPU timing with CUDA events on the device's stream.</summary>
public sealed class CudaTimer : IDisposable
{
    readonly CudaDevice _device;
    readonly IntPtr _start, _end;

    public CudaTimer(CudaDevice device)
    {
        _device = device;
        device.MakeCurrent();
        Driver.Check(Driver.cuEventCreate(out _start, Driver.CU_EVENT_DEFAULT), "cuEventCreate");
        Driver.Check(Driver.cuEventCreate(out _end, Driver.CU_EVENT_DEFAULT), "cuEventCreate");
    }

    public void Start() => Driver.Check(Driver.cuEventRecord(_start, _device.Stream), "cuEventRecord");

    /// <summary>Records the end event, waits for it, and returns the elapsed milliseconds.</summary>
    public float Stop()
    {
        Driver.Check(Driver.cuEventRecord(_end, _device.Stream), "cuEventRecord");
        Driver.Check(Driver.cuEventSynchronize(_end), "cuEventSynchronize");
        Driver.Check(Driver.cuEventElapsedTime(out var ms, _start, _end), "cuEventElapsedTime");
        return ms;
    }

    public void Dispose()
    {
        Driver.cuEventDestroy(_start);
        Driver.cuEventDestroy(_end);
    }
}

/// <summary>A captured and instantiated CUDA graph of work issued on the device's stream.</summary>
public sealed class CudaGraph : IDisposable
{
    readonly CudaDevice _device;
    readonly IntPtr _graph, _exec;

    CudaGraph(CudaDevice device, IntPtr graph, IntPtr exec)
    {
        _device = device;
        _graph = graph;
        _exec = exec;
    }

    /// <summary>Captures everything <paramref name="issue"/> enqueues on the stream (nothing runs during capture).</summary>
    public static CudaGraph Capture(CudaDevice device, Action issue)
    {
        device.MakeCurrent();
        if (device._capturing) throw new InvalidOperationException("a CUDA graph capture is already running on this device");
        Driver.Check(Driver.cuStreamBeginCapture(device.Stream, Driver.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture");
        device._capturing = true;
        IntPtr graph;
        try { issue(); }
        catch
        {
            // end the capture, but let the caller see why it failed, not the invalidated capture
            device._capturing = false;
            if (Driver.cuStreamEndCapture(device.Stream, out var partial) == 0 && partial != IntPtr.Zero) Driver.cuGraphDestroy(partial);
            throw;
        }
        device._capturing = false;
        Driver.Check(Driver.cuStreamEndCapture(device.Stream, out graph), "cuStreamEndCapture");
        int rc = Driver.cuGraphInstantiateWithFlags(out var exec, graph, 0);
        if (rc != 0)
        {
            Driver.cuGraphDestroy(graph);
            Driver.Check(rc, "cuGraphInstantiateWithFlags");
        }
        return new CudaGraph(device, graph, exec);
    }

    public void Launch()
    {
        _device.MakeCurrent();
        Driver.Check(Driver.cuGraphLaunch(_exec, _device.Stream), "cuGraphLaunch");
    }

    public void Dispose()
    {
        Driver.cuGraphExecDestroy(_exec);
        Driver.cuGraphDestroy(_graph);
    }
}
