namespace LayerFusion.Tests.Packaging;

/// <summary>Issue 12 item 8: the README stands on its own (no folders outside the repository), links the
/// paper, names where real weights come from, and the project has a license.</summary>
public class ReadmeTests
{
    static string Root()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "LayerFusion.Native.sln"))) return d.FullName;
        throw new InvalidOperationException("repository root not found above the test binaries");
    }

    [Fact]
    public void ReadmeLinksThePaperNamesTheWeightsAndStaysInsideTheRepository()
    {
        var readme = File.ReadAllText(Path.Combine(Root(), "README.md"));
        Assert.DoesNotContain("../", readme);
        Assert.DoesNotContain("/work/", readme);
        Assert.Contains("https://arxiv.org/abs/2412.04460", readme);
        foreach (var name in new[] { "RealVisXL_V4.0", "stable-diffusion-xl-base-1.0", "ld_diffusers_sdxl_attn.safetensors",
                     "ld_diffusers_sdxl_vae_transparent_decoder.safetensors", "layer_xl_transparent_attn.safetensors", "vae_transparent_decoder.safetensors" })
            Assert.Contains(name, readme);
        Assert.Contains("FLOP model", readme);
        // every repository path the README names in backticks exists
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(readme, @"`((?:docs|perf|kernels|src|tests|weights-loader)/[^`\s]*)`"))
            Assert.True(File.Exists(Path.Combine(Root(), m.Groups[1].Value)) || Directory.Exists(Path.Combine(Root(), m.Groups[1].Value)), m.Groups[1].Value);
        var license = File.ReadAllText(Path.Combine(Root(), "LICENSE"));
        Assert.StartsWith("MIT License", license);
    }
}
