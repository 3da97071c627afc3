using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Checkpoints;

namespace LayerFusion.Tests.Packaging;

/// <summary>
/// Issue 12 item 10: `dotnet pack` gives NuGet packages with real metadata, the CLI as a dotnet tool
/// named layerfusion and the CUDA kernels embedded; a fresh console project restores the library
/// packages from a local folder (offline: third-party packages come from the machine's NuGet cache
/// as a fallback folder, ours only from the packed folder, so no stale copy is ever used) and runs a
/// CPU triplet through them; the tool installs from that folder and generates an image.
/// </summary>
public sealed class PackageTests : IDisposable
{
    readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "LayerFusion.Native.sln"))) return d.FullName;
        throw new InvalidOperationException("the repository root (LayerFusion.Native.sln) is not above the test binaries");
    }

    /// <summary>Release or Debug: the configuration these tests were built in (so pack reuses that build).</summary>
    static string Configuration() => new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;

    static string NuGetCache() => Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    static (int Code, string Out) Exec(string file, string workDir, IDictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var e = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        p.WaitForExit();
        return (p.ExitCode, o.GetAwaiter().GetResult() + e.GetAwaiter().GetResult());
    }

    [Fact]
    public void PackagesCarryMetadataAndWorkFromALocalFolderInAFreshProject()
    {
        string pkgs = _tmp.Sub("pkgs");
        var pack = Exec("dotnet", RepoRoot(), null, "pack", "LayerFusion.Native.sln", "-c", Configuration(), "--no-build", "-o", pkgs);
        Assert.True(pack.Code == 0, pack.Out);

        string[] ids = ["LayerFusion.WeightsLoader", "LayerFusion.Core", "LayerFusion.Cpu", "LayerFusion.Cuda", "LayerFusion.Cli"];
        foreach (var id in ids)
        {
            var nupkg = Path.Combine(pkgs, $"{id}.{Version}.nupkg");
            Assert.True(File.Exists(Path.ChangeExtension(nupkg, ".snupkg")), $"{id}: no symbol package");
            using var zip = ZipFile.OpenRead(nupkg);
            var nuspec = XDocument.Load(zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open());
            string M(string name) => nuspec.Descendants().FirstOrDefault(x => x.Name.LocalName == name)?.Value ?? "";
            Assert.True(M("description").Length > 40, $"{id}: description '{M("description")}'");
            Assert.NotEqual("", M("authors"));
            Assert.Equal("MIT", M("license"));
            Assert.Equal("README.md", M("readme"));
            Assert.StartsWith("https://", M("projectUrl"));
            Assert.Contains(zip.Entries, e => e.FullName == "README.md");
            var repo = nuspec.Descendants().Single(x => x.Name.LocalName == "repository");
            Assert.Matches("^[0-9a-f]{40}$", repo.Attribute("commit")?.Value ?? ""); // SourceLink's commit
            if (id == "LayerFusion.Cli")
            {
                Assert.Contains(zip.Entries, e => e.FullName.EndsWith("DotnetToolSettings.xml", StringComparison.Ordinal));
                var settings = XDocument.Load(zip.Entries.Single(e => e.FullName.EndsWith("DotnetToolSettings.xml", StringComparison.Ordinal)).Open());
                Assert.Equal("layerfusion", settings.Descendants().Single(x => x.Name.LocalName == "Command").Attribute("Name")?.Value);
                // the built-in demo model travels inside the tool
                Assert.Contains(zip.Entries, e => e.FullName.EndsWith("/models/demo/unet/diffusion_pytorch_model.safetensors", StringComparison.Ordinal));
            }
            else
            {
                Assert.Contains(zip.Entries, e => e.FullName == $"lib/net10.0/{id}.xml"); // XML docs
                if (id == "LayerFusion.Cuda")
                {
                    // the kernels travel inside the packaged assembly, as manifest resources
                    var dll = new MemoryStream();
                    using (var s = zip.Entries.Single(e => e.FullName == $"lib/net10.0/{id}.dll").Open()) s.CopyTo(dll);
                    dll.Position = 0;
                    using var pe = new System.Reflection.PortableExecutable.PEReader(dll);
                    var md = System.Reflection.Metadata.PEReaderExtensions.GetMetadataReader(pe);
                    var names = md.ManifestResources.Select(h => md.GetString(md.GetManifestResource(h).Name)).ToList();
                    var sources = Directory.GetFiles(Path.Combine(RepoRoot(), "kernels"), "*.cu", SearchOption.AllDirectories);
                    Assert.NotEmpty(sources);
                    foreach (var cu in sources) Assert.Contains(names, n => n.EndsWith("/" + Path.GetFileName(cu), StringComparison.Ordinal));
                }
            }
        }

        // a tiny checkpoint for the consumers (written by our in-process CLI)
        string model = _tmp.Sub("tiny");
        Assert.Equal(0, LayerFusion.Tests.Cli.SdxlCliTests.Run("make-tiny", model).Code);

        // a fresh console project consuming the library packages, restored offline
        string app = _tmp.Sub("app");
        Directory.CreateDirectory(app);
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources><clear /><add key="local" value="{pkgs}" /></packageSources>
              <fallbackPackageFolders><add key="cache" value="{NuGetCache()}" /></fallbackPackageFolders>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "app.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <RestorePackagesPath>{_tmp.Sub("restored")}</RestorePackagesPath>
                <NuGetAudit>false</NuGetAudit>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="LayerFusion.Core" Version="0.1.0" />
                <PackageReference Include="LayerFusion.Cpu" Version="0.1.0" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), """
            using LayerFusion.Core.Fusion;
            using var pipe = LayerFusionPipeline.Load(new LayerFusion.Cpu.CpuOps(), args[0], LayerDiffuseFiles.InDirectory(args[0]));
            var r = pipe.Generate(new LayerFusionRequest
            {
                Foreground = "a glass bottle", Background = "a beach", Steps = 1, Width = 32, Height = 32, Seed = 3,
                Options = new LayerFusionOptions { TransparentAugment = false },
            });
            var files = LayerFusionOutputs.Write(args[1], r);
            Console.WriteLine($"ok {files.Count} {r.Foreground.Width}x{r.Foreground.Height}x{r.Foreground.Channels}");
            """);
        var run = Exec("dotnet", app, null, "run", "-c", "Release", "--", model, _tmp.Sub("app-out"));
        Assert.True(run.Code == 0, run.Out);
        Assert.Contains("ok 4 32x32x4", run.Out);
        Assert.Equal((32, 32, 4), Dims(PngFile.Read(Path.Combine(_tmp.Sub("app-out"), "fg.png"))));
        Assert.True(Directory.Exists(_tmp.Sub("restored")) && Directory.Exists(Path.Combine(_tmp.Sub("restored"), "layerfusion.core")));

        // the dotnet tool, installed from the folder into a tool path (its own package cache: no stale copy)
        File.WriteAllText(_tmp.Sub("tool.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration><packageSources><clear /><add key="local" value="{pkgs}" /></packageSources></configuration>
            """);
        var env = new Dictionary<string, string> { ["NUGET_PACKAGES"] = _tmp.Sub("tool-cache") };
        var install = Exec("dotnet", _tmp.Path, env, "tool", "install", "LayerFusion.Cli", "--version", "0.1.0", "--tool-path", _tmp.Sub("tools"), "--configfile", _tmp.Sub("tool.config"));
        Assert.True(install.Code == 0, install.Out);
        string tool = Path.Combine(_tmp.Sub("tools"), OperatingSystem.IsWindows() ? "layerfusion.exe" : "layerfusion");
        var gen = Exec(tool, _tmp.Path, null, "sdxl", "-m", model, "-p", "a lighthouse", "--steps", "1", "-W", "32", "-H", "32", "--backend", "cpu", "-o", _tmp.Sub("tool.png"));
        Assert.True(gen.Code == 0, gen.Out);
        Assert.Equal((32, 32, 3), Dims(PngFile.Read(_tmp.Sub("tool.png"))));
        // no --model: the installed tool finds its built-in demo model
        var builtIn = Exec(tool, _tmp.Path, null, "sdxl", "-p", "a green field", "--steps", "1", "--backend", "cpu", "-o", _tmp.Sub("tool-demo.png"));
        Assert.True(builtIn.Code == 0, builtIn.Out);
        Assert.Contains("built-in demo model", builtIn.Out);
        Assert.Equal((64, 64, 3), Dims(PngFile.Read(_tmp.Sub("tool-demo.png"))));
    }

    const string Version = "0.1.0";

    static (int, int, int) Dims(Image8 i) => (i.Width, i.Height, i.Channels);
}
