using LayerFusion.Core.Tensors;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// Who releases the primary context and the stream: the device opener and every backend built on
/// the device hold one reference each, and the last release frees them; a thread that made an
/// earlier (released) device current switches to the new one. Needs a device (the emulated one in CI).
/// </summary>
[Collection("cuda")]
public class DeviceLifetimeTests
{
    static CudaDevice OpenOrSkip()
    {
        // a backend must be creatable too (a driver without NVRTC or cuBLAS opens a device but no CudaOps)
        using (var probe = CudaOps.TryCreate(StorageType.F32, out var unavailable))
            Requires.Device(probe is not null, unavailable);
        var device = CudaDevice.TryOpen(out var reason);
        Requires.Device(device is not null, reason);
        return device;
    }

    [Fact]
    public void A_backend_from_Create_owns_its_device_and_releases_it()
    {
        using (OpenOrSkip()) { }
        var ops = CudaOps.Create(StorageType.F32);
        var device = ops.Device;
        using (var x = ops.FromHost([1f, 2f, 3f], [3])) Assert.Equal([1f, 2f, 3f], ops.ToHost(x));
        ops.Dispose();
        Assert.Throws<ObjectDisposedException>(() => device.MakeCurrent());
    }

    [Fact]
    public void A_shared_device_outlives_the_first_backend_released()
    {
        var device = OpenOrSkip();
        var a = new CudaOps(device, StorageType.F32);
        var b = new CudaOps(device, StorageType.F16, a.Cache);
        device.Dispose();          // the opener's reference
        a.Dispose();
        using (var x = b.FromHost([4f, 5f], [2])) Assert.Equal([4f, 5f], b.ToHost(x));
        device.Dispose();          // a second Dispose by the opener drops nothing more
        device.MakeCurrent();
        b.Dispose();
        Assert.Throws<ObjectDisposedException>(() => device.MakeCurrent());
    }

    [Fact]
    public async Task A_thread_that_cached_a_released_context_makes_the_new_one_current()
    {
        using var worker = new WorkerThread();
        var first = OpenOrSkip();
        await worker.Run(first.MakeCurrent);
        first.Dispose();             // the primary context is released (and may come back at the same address)
        using var ops = CudaOps.Create(StorageType.F32);
        float[] back = [];
        await worker.Run(() =>
        {
            using var x = ops.FromHost([7f, 8f], [2]);
            back = ops.ToHost(x);
        });
        Assert.Equal([7f, 8f], back);
    }

    /// <summary>One dedicated thread, so the thread-static context cache of a call is the previous call's.</summary>
    sealed class WorkerThread : IDisposable
    {
        readonly System.Collections.Concurrent.BlockingCollection<(Action, TaskCompletionSource)> _work = new();
        readonly Thread _thread;

        public WorkerThread()
        {
            _thread = new Thread(() =>
            {
                foreach (var (action, done) in _work.GetConsumingEnumerable())
                {
                    try { action(); done.SetResult(); }
                    catch (Exception e) { done.SetException(e); }
                }
            }) { IsBackground = true };
            _thread.Start();
        }

        public Task Run(Action action)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _work.Add((action, done));
            return done.Task;
        }

        public void Dispose()
        {
            _work.CompleteAdding();
            _thread.Join();
            _work.Dispose();
        }
    }
}
