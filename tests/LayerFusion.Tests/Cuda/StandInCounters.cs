using System.Runtime.InteropServices;
using LayerFusion.Cuda.Interop;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// The stand-in driver's counters (tests/cuda-standin/driver.cpp, <c>lfemu_counters</c>): calls that
/// synchronize on the real driver (cuCtxSynchronize, cuStreamSynchronize, cuEventSynchronize,
/// cuMemFree), host-to-device and device-to-host copies, driver allocations, of the calling thread
/// (tests running in parallel on other threads do not disturb them). The export exists only
/// in the stand-in (the real libcuda has no such function), so it is looked up optionally: null on a
/// real driver.
/// </summary>
internal static unsafe class StandInCounters
{
    public readonly record struct Counts(ulong Synchronizations, ulong HostToDevice, ulong DeviceToHost, ulong Allocations)
    {
        public static Counts operator -(Counts a, Counts b) =>
            new(a.Synchronizations - b.Synchronizations, a.HostToDevice - b.HostToDevice, a.DeviceToHost - b.DeviceToHost, a.Allocations - b.Allocations);
    }

    public static Counts? TryRead()
    {
        if (!NativeLibraries.TryLoad(CudaLibrary.Driver, out var handle, out _)) return null;
        if (!NativeLibrary.TryGetExport(handle, "lfemu_counters", out var fn)) return null;
        var read = (delegate* unmanaged<ulong*, int, int>)fn;
        var c = stackalloc ulong[4];
        if (read(c, 4) < 4) return null;
        return new Counts(c[0], c[1], c[2], c[3]);
    }
}
