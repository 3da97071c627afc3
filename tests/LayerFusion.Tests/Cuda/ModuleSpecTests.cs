using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Tests.Cuda;

public class ModuleSpecTests
{
    [Fact]
    public void SpecsWithEqualDefinesAreEqualKeys()
    {
        var a = new ModuleSpec("attention.cu", StorageType.F16, new List<string> { "-DHEAD_DIM=64", "-DCAUSAL=0" });
        var b = new ModuleSpec("attention.cu", StorageType.F16, new[] { "-DHEAD_DIM=64", "-DCAUSAL=0" });
        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        var cache = new Dictionary<ModuleSpec, int> { [a] = 1 };
        Assert.True(cache.ContainsKey(b));
        Assert.NotEqual(a, new ModuleSpec("attention.cu", StorageType.F16, new[] { "-DHEAD_DIM=80", "-DCAUSAL=0" }));
        Assert.NotEqual(a, new ModuleSpec("attention.cu", StorageType.BF16, new[] { "-DHEAD_DIM=64", "-DCAUSAL=0" }));
    }
}
