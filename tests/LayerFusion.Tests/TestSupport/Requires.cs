using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using LayerFusion.Cuda.Interop;

namespace LayerFusion.Tests.TestSupport;

/// <summary>
/// The one place a test says it needs something a user's machine may lack (NVRTC, g++, python with
/// torch and diffusers' source). Without it the test is reported as skipped with a reason that says
/// how to get it; under CI (CI=true, as GitHub/GitLab and .ci/run set it) the same missing thing is a
/// failure, so CI cannot pass by skipping. What only real hardware gives (a GPU) goes through
/// <see cref="Device"/>, which CI requires only where LAYERFUSION_REQUIRE_CUDA=1 says a device (real
/// or emulated) is provided.
/// </summary>
public static class Requires
{
    /// <summary>True where CI=true (or 1): every prerequisite must be present.</summary>
    public static bool InCi => Flag("CI");

    /// <summary>True where LAYERFUSION_REQUIRE_CUDA=1: a CUDA device must open (CI with a device, real or emulated).</summary>
    public static bool DeviceRequired => Flag("LAYERFUSION_REQUIRE_CUDA");

    static bool Flag(string name) => Environment.GetEnvironmentVariable(name)?.Trim().ToLowerInvariant() is "true" or "1";

    /// <summary>
    /// Continues when <paramref name="available"/>; otherwise skips with <paramref name="howToGet"/>
    /// (what is missing and how to get it), or fails with it under CI=true.
    /// </summary>
    public static void That([DoesNotReturnIf(false)] bool available, string howToGet)
    {
        if (available) return;
        if (InCi) Assert.Fail($"CI=true requires this test's prerequisite: {howToGet}");
        Assert.Skip(howToGet);
    }

    /// <summary>A CUDA device opened (or <paramref name="reason"/> why not): skips, and fails only where <see cref="DeviceRequired"/>.</summary>
    public static void Device([DoesNotReturnIf(false)] bool available, string reason)
    {
        if (available) return;
        var message = $"no CUDA device: {reason}";
        if (DeviceRequired) Assert.Fail($"LAYERFUSION_REQUIRE_CUDA=1 requires a CUDA device: {message}");
        Assert.Skip(message);
    }

    /// <summary>How NVRTC is found here, or what was tried and how to get it.</summary>
    public static string NvrtcHowToGet(IEnumerable<string> tried) =>
        "needs NVRTC, the CUDA run-time compiler (" +
        (NativeLibraries.IsHidden(CudaLibrary.Nvrtc)
            ? $"hidden here by {NativeLibraries.OverrideVariable(CudaLibrary.Nvrtc)}={NativeLibraries.Hidden}"
            : $"tried {string.Join(", ", tried)}") +
        "): on Debian/Ubuntu `apt-get install libnvrtc11.2` (non-free; .ci/run installs it), or NVIDIA's CUDA " +
        $"toolkit or `pip install nvidia-cuda-nvrtc-cu12`, then set {NativeLibraries.OverrideVariable(CudaLibrary.Nvrtc)} " +
        $"to the libnvrtc.so file or {NativeLibraries.LibDirVariable} to its folder";

    /// <summary>NVRTC loads (no GPU needed): the kernel compile checks.</summary>
    public static void Nvrtc()
    {
        bool ok = NativeLibraries.TryLoad(CudaLibrary.Nvrtc, out _, out var tried);
        if (!ok) That(false, NvrtcHowToGet(tried));
    }

    static readonly Lazy<string?> GppPath = new(() => (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
        .Select(d => Path.Combine(d, "g++")).FirstOrDefault(File.Exists));

    /// <summary>The path of g++ (the CPU emulation of the kernels is built with it).</summary>
    public static string Gpp()
    {
        That(GppPath.Value is not null, "needs g++ on PATH to build the CPU emulation of the kernels: `apt-get install g++`");
        return GppPath.Value!;
    }

    /// <summary>A python interpreter that imports torch, and the folder holding diffusers v0.25's package and the hub shims.</summary>
    public sealed record DiffusersPython(string Python, string PythonPath);

    /// <summary>
    /// python with torch (LAYERFUSION_PYTHON, else python3 on PATH, else Debian's /usr/bin/python3),
    /// diffusers v0.25's source (LAYERFUSION_DIFFUSERS_SRC: the folder that holds diffusers/) and the
    /// hub stub pyshims (LAYERFUSION_PYSHIMS, else shared/reference/pyshims beside or above the repository).
    /// </summary>
    public static DiffusersPython Diffusers()
    {
        var d = DiffusersProbe.Value;
        // torch is installable (Debian's python3-torch; .ci/run installs it), so CI requires it; the
        // diffusers v0.25 source is not in any registry CI reaches (no PyPI), so a clean CI machine can
        // lack it: that part stays a skip with its reason even under CI=true.
        if (d.Found is null && d.Missing.Contains("python3 with torch", StringComparison.Ordinal)) That(false, d.Missing);
        if (d.Found is null) Assert.Skip(d.Missing + " (not installable by .ci/run: no registry here serves diffusers)");
        return d.Found!;
    }

    static readonly Lazy<(DiffusersPython? Found, string Missing)> DiffusersProbe = new(ProbeDiffusers);

    static (DiffusersPython?, string) ProbeDiffusers()
    {
        var missing = new List<string>();
        var src = Environment.GetEnvironmentVariable("LAYERFUSION_DIFFUSERS_SRC");
        if (string.IsNullOrWhiteSpace(src) || !Directory.Exists(Path.Combine(src, "diffusers")))
            missing.Add("diffusers v0.25.0's source: set LAYERFUSION_DIFFUSERS_SRC to the src/ folder of a diffusers " +
                        "v0.25.0 checkout (`git archive v0.25.0 src/diffusers | tar -x`)" + (string.IsNullOrWhiteSpace(src) ? "" : $" ({src} has no diffusers/)"));
        var shims = Environment.GetEnvironmentVariable("LAYERFUSION_PYSHIMS");
        if (string.IsNullOrWhiteSpace(shims)) shims = SharedFile(Path.Combine("reference", "pyshims"));
        if (shims is null || !Directory.Exists(shims))
            missing.Add("the hub stub: shared/reference/pyshims beside the repository, or LAYERFUSION_PYSHIMS");
        var python = FindTorchPython();
        if (python is null)
            missing.Add("python3 with torch: `apt-get install python3-torch python3-numpy` (Debian), or LAYERFUSION_PYTHON naming an interpreter that imports torch");
        if (missing.Count > 0) return (null, "needs " + string.Join("; ", missing));
        return (new DiffusersPython(python!, $"{src}{Path.PathSeparator}{shims}"), "");
    }

    static string? FindTorchPython()
    {
        var given = Environment.GetEnvironmentVariable("LAYERFUSION_PYTHON");
        string[] candidates = !string.IsNullOrWhiteSpace(given) ? [given] : ["python3", "/usr/bin/python3"];
        foreach (var c in candidates)
        {
            try
            {
                var psi = new ProcessStartInfo(c, ["-c", "import torch"]) { RedirectStandardOutput = true, RedirectStandardError = true };
                using var p = Process.Start(psi);
                if (p is null) continue;
                p.StandardOutput.ReadToEnd();
                p.StandardError.ReadToEnd();
                if (!p.WaitForExit(120_000)) { p.Kill(); continue; }
                if (p.ExitCode == 0) return c;
            }
            catch (System.ComponentModel.Win32Exception) { }
        }
        return null;
    }

    /// <summary>
    /// A path inside the project's shared folder: LAYERFUSION_SHARED, else a "shared" folder beside
    /// the repository or above it; null when there is none.
    /// </summary>
    public static string? SharedFile(string relative)
    {
        var given = Environment.GetEnvironmentVariable("LAYERFUSION_SHARED");
        if (!string.IsNullOrWhiteSpace(given))
        {
            var p = Path.Combine(given, relative);
            return File.Exists(p) || Directory.Exists(p) ? p : null;
        }
        for (var dir = new DirectoryInfo(RepoRoot); dir is not null; dir = dir.Parent)
        {
            var p = Path.Combine(dir.FullName, "shared", relative);
            if (File.Exists(p) || Directory.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>The repository root: LAYERFUSION_REPO_ROOT, else the folder above the test binaries (or the working directory) holding the solution.</summary>
    public static string RepoRoot => Cuda.NvrtcCompileTests.RepoRoot();
}
