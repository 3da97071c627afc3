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

    [Fact]
    public void Target_is_exact_cubin_when_nvrtc_knows_the_device_else_ptx_below()
    {
        Assert.Equal("sm_90", CudaOps.ChooseTarget(90, [75, 80, 86, 89, 90]));
        Assert.Equal("compute_90", CudaOps.ChooseTarget(100, [75, 80, 90]));
        Assert.Equal("compute_80", CudaOps.ChooseTarget(86, [75, 80, 90]));
        Assert.Throws<LayerFusion.Cuda.Interop.CudaUnavailableException>(() => CudaOps.ChooseTarget(70, [75, 80]));
    }
}
