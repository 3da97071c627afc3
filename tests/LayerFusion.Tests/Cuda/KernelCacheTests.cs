using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.Cuda;

public class KernelCacheTests
{
    static readonly KeyValuePair<string, string>[] Headers = [new("lf_common.cuh", "// header v1")];
    static readonly string[] Options = ["--std=c++17", "-arch=sm_90", "-DLF_DTYPE=1"];

    static string Key(string source = "kernel", KeyValuePair<string, string>[]? headers = null, string[]? options = null,
        string arch = "sm_90", string version = "11.8") =>
        KernelCache.ComputeKey(source, headers ?? Headers, options ?? Options, arch, version);

    [Fact]
    public void Key_is_deterministic_hex_sha256()
    {
        Assert.Equal(Key(), Key());
        Assert.Matches("^[0-9a-f]{64}$", Key());
    }

    [Fact]
    public void Key_changes_with_every_input()
    {
        var keys = new[]
        {
            Key(),
            Key(source: "kernel "),
            Key(headers: [new("lf_common.cuh", "// header v2")]),
            Key(headers: [new("other.cuh", "// header v1")]),
            Key(options: ["--std=c++17", "-arch=sm_90", "-DLF_DTYPE=2"]),
            Key(options: ["--std=c++17", "-arch=sm_90", "-DLF_DTYPE=1", "-DLF_HEAD_DIM=64"]),
            Key(arch: "sm_80"),
            Key(version: "12.4"),
        };
        Assert.Equal(keys.Length, keys.Distinct().Count());
    }

    [Fact]
    public void Fields_cannot_collide_by_concatenation()
    {
        Assert.NotEqual(Key(options: ["-DA", "B"]), Key(options: ["-DAB"]));
        Assert.NotEqual(Key(source: "ab", arch: "c"), Key(source: "a", arch: "bc"));
    }

    [Fact]
    public void Every_catalog_specialization_has_its_own_key()
    {
        var keys = KernelCatalog.Representative()
            .Select(s => Key(KernelSources.Get(s.File), [.. KernelSources.Headers], [.. s.Options("sm_90")]))
            .ToArray();
        Assert.Equal(keys.Length, keys.Distinct().Count());
    }

    [Fact]
    public void Disk_cache_serves_a_second_instance_without_compiling()
    {
        Requires.Nvrtc();
        var dir = Directory.CreateTempSubdirectory("lf-kcache-").FullName;
        try
        {
            var spec = KernelCatalog.Plain(KernelCatalog.Softmax, StorageType.F16);
            var first = new KernelCache(dir);
            var a = first.GetOrCompile(spec.File, KernelSources.Get(spec.File), KernelSources.Headers, spec.Options("sm_80"), "sm_80");
            Assert.Equal(1, first.Compilations);
            Assert.Single(Directory.GetFiles(dir, "*.bin"));

            var second = new KernelCache(dir);
            var b = second.GetOrCompile(spec.File, KernelSources.Get(spec.File), KernelSources.Headers, spec.Options("sm_80"), "sm_80");
            Assert.Equal(0, second.Compilations);
            Assert.Equal(1, second.DiskHits);
            Assert.Equal(a.Image, b.Image);

            // another option is another entry
            second.GetOrCompile(spec.File, KernelSources.Get(spec.File), KernelSources.Headers, spec.Options("sm_90"), "sm_90");
            Assert.Equal(1, second.Compilations);
            Assert.Equal(2, Directory.GetFiles(dir, "*.bin").Length);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>A host-side compiler: the image is the source and options' bytes, so damage is visible without NVRTC.</summary>
    static KernelCache FakeCache(string dir, List<string> compiled) => new(dir, (name, source, headers, options) =>
    {
        lock (compiled) compiled.Add(name);
        return new CompiledKernel(System.Text.Encoding.UTF8.GetBytes(source + "|" + string.Join(" ", options) + "\0"), true, "");
    }, () => "fake-1.0");

    static CompiledKernel Get(KernelCache c) => c.GetOrCompile("k.cu", "kernel source", Headers, Options, "sm_90");

    public static TheoryData<string> Damages => new("truncated", "flipped", "old-format", "header-only");

    [Theory, MemberData(nameof(Damages))]
    public void A_damaged_disk_entry_is_evicted_and_recompiled(string damage)
    {
        var dir = Directory.CreateTempSubdirectory("lf-kcache-").FullName;
        try
        {
            var compiled = new List<string>();
            var good = Get(FakeCache(dir, compiled)).Image;
            var file = Assert.Single(Directory.GetFiles(dir, "*.bin"));
            var bytes = File.ReadAllBytes(file);
            Assert.Equal(good, KernelCache.ReadEntry(bytes));
            byte[] damaged = damage switch
            {
                "truncated" => bytes[..(bytes.Length - 5)],
                "flipped" => bytes.Select((b, i) => i == bytes.Length - 3 ? (byte)(b ^ 0x10) : b).ToArray(),
                "old-format" => good,   // a v1 entry: the bare image, no header
                _ => bytes[..KernelCache.EntryHeaderBytes],
            };
            File.WriteAllBytes(file, damaged);
            Assert.Null(KernelCache.ReadEntry(damaged));

            var second = FakeCache(dir, compiled);
            var again = Get(second);
            Assert.Equal(good, again.Image);
            Assert.False(again.FromDisk);
            Assert.Equal((1, 0, 1), (second.Compilations, second.DiskHits, second.Evictions));
            Assert.Equal(good, KernelCache.ReadEntry(File.ReadAllBytes(file)));   // rewritten whole

            var third = FakeCache(dir, compiled);
            Assert.True(Get(third).FromDisk);
            Assert.Equal((0, 1, 0), (third.Compilations, third.DiskHits, third.Evictions));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_disk_image_the_driver_refuses_is_evicted_and_recompiled_once()
    {
        var dir = Directory.CreateTempSubdirectory("lf-kcache-").FullName;
        try
        {
            var compiled = new List<string>();
            Get(FakeCache(dir, compiled));
            var cache = FakeCache(dir, compiled);
            var loads = new List<bool>();
            var loaded = cache.GetOrLoad("k.cu", "kernel source", Headers, Options, "sm_90", k =>
            {
                loads.Add(k.FromDisk);
                // an entry intact on disk but made by a toolchain the driver rejects (e.g. a newer PTX ISA)
                if (k.FromDisk) throw new LayerFusion.Cuda.Interop.CudaException("cuModuleLoadData failed: CUDA_ERROR_UNSUPPORTED_PTX_VERSION");
                return k.Image.Length;
            });
            Assert.True(loaded > 0);
            Assert.Equal([true, false], loads);
            Assert.Equal((1, 1, 1), (cache.Compilations, cache.DiskHits, cache.Evictions));
            // the fresh image is what the cache now holds, in memory and on disk
            Assert.False(Get(cache).FromDisk);
            Assert.Single(Directory.GetFiles(dir, "*.bin"));

            // a freshly compiled image that fails to load is the caller's error, not retried forever
            var fresh = FakeCache(Directory.CreateTempSubdirectory("lf-kcache-").FullName, compiled);
            Assert.Throws<LayerFusion.Cuda.Interop.CudaException>(() => fresh.GetOrLoad("k.cu", "kernel source", Headers, Options, "sm_90",
                new Func<CompiledKernel, int>(_ => throw new LayerFusion.Cuda.Interop.CudaException("cuModuleLoadData failed"))));
            Assert.Equal(1, fresh.Compilations);
            Directory.Delete(fresh.Directory!, true);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Target_is_exact_cubin_when_nvrtc_knows_the_device_else_ptx_below()
    {
        Assert.Equal("sm_90", CudaOps.ChooseTarget(90, [75, 80, 86, 89, 90]));
        Assert.Equal("compute_90", CudaOps.ChooseTarget(100, [75, 80, 90]));
        Assert.Equal("compute_80", CudaOps.ChooseTarget(86, [75, 80, 90]));
        Assert.Throws<LayerFusion.Cuda.Interop.CudaUnavailableException>(() => CudaOps.ChooseTarget(70, [75, 80]));
    }
}
