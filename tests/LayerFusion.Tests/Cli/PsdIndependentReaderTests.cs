using System.Diagnostics;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Checkpoints;

namespace LayerFusion.Tests.Cli;

/// <summary>
/// Issue 12 item 4: layers.psd read back by readers that are not ours — ImageMagick (apt
/// imagemagick) and the npm package ag-psd (installed by .ci/run into tests/.npm, git-ignored).
/// Each skips with how to get it, and fails instead under CI=true.
/// </summary>
public sealed class PsdIndependentReaderTests : IDisposable
{
    readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    static bool Ci => Environment.GetEnvironmentVariable("CI") == "true";

    static void Missing(string what)
    {
        if (Ci) Assert.Fail($"{what} (CI=true: .ci/run installs it)");
        Assert.Skip(what);
    }

    /// <summary>A canvas with distinct, random-ish layers: background RGB, foreground RGBA with varied alpha, blend RGB.</summary>
    static (Image8 Bg, Image8 Fg, Image8 Blend, Image8 Composite) Layers(int w, int h)
    {
        var rng = new Random(12);
        Image8 Make(int ch, Func<int, int, int, byte> f)
        {
            var px = new byte[w * h * ch];
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int c = 0; c < ch; c++) px[(y * w + x) * ch + c] = f(x, y, c);
            return new Image8(w, h, ch, px);
        }
        var noise = Enumerable.Range(0, w * h * 4).Select(_ => (byte)rng.Next(256)).ToArray();
        var bg = Make(3, (x, y, c) => (byte)(x * 7 + y * 3 + c * 60));
        // runs (flat areas) and noise, so PackBits takes both of its paths
        var fg = Make(4, (x, y, c) => c == 3 ? (byte)(x < w / 3 ? 0 : x < 2 * w / 3 ? 128 : 255) : y % 2 == 0 ? (byte)200 : noise[(y * w + x) * 4 + c]);
        var blend = Make(3, (x, y, c) => noise[(y * w + x) * 4 + c]);
        var comp = LayerCompose.Compose(fg, bg, 0, 0, 1);
        return (bg, fg, blend, comp);
    }

    string WritePsd(int w, int h, out (Image8 Bg, Image8 Fg, Image8 Blend, Image8 Composite) layers)
    {
        layers = Layers(w, h);
        var path = _tmp.Sub("t.psd");
        PsdFile.Write(path, w, h, [new PsdLayer("background", layers.Bg), new PsdLayer("foreground", layers.Fg), new PsdLayer("blend", layers.Blend, Visible: false)], layers.Composite);
        return path;
    }

    static (int Code, string Out, string Err) Exec(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, o.Result, e.Result);
    }

    static string? Which(params string[] candidates) => candidates.FirstOrDefault(File.Exists);

    [Fact]
    public void ImageMagickReadsTheCompositeAndEveryLayerWithItsPixels()
    {
        // the real ImageMagick 6 binaries (not a wrapper on PATH)
        var convert = Which("/usr/bin/convert-im6.q16", "/usr/bin/convert");
        var identify = Which("/usr/bin/identify-im6.q16", "/usr/bin/identify");
        if (convert is null || identify is null) Missing("ImageMagick is not installed (apt-get install imagemagick)");
        const int w = 40, h = 24;
        var path = WritePsd(w, h, out var layers);
        var id = Exec(identify!, "-format", "%p %wx%h %[channels]\n", path);
        Assert.True(id.Code == 0, id.Err);
        var lines = id.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length); // the composite, then the three layers
        Assert.All(lines, l => Assert.Contains($"{w}x{h}", l));
        // each frame's pixels, as 8-bit RGBA, equal what was written
        Image8[] expect = [layers.Composite, layers.Bg, layers.Fg, layers.Blend];
        for (int i = 0; i < 4; i++)
        {
            var png = _tmp.Sub($"frame{i}.png");
            var c = Exec(convert!, $"{path}[{i}]", "-depth", "8", $"PNG32:{png}");
            Assert.True(c.Code == 0, c.Err);
            var got = PngFile.Read(png, channels: 4);
            var want = expect[i];
            for (int p = 0; p < w * h; p++)
            {
                int a = want.Channels == 4 ? want.Pixels[p * 4 + 3] : 255;
                Assert.Equal(a, got.Pixels[p * 4 + 3]);
                if (a == 0) continue; // colour under full transparency is not kept by every reader
                for (int ch = 0; ch < 3; ch++) Assert.Equal(want.Pixels[p * want.Channels + ch], got.Pixels[p * 4 + ch]);
            }
        }
    }

    static string? AgPsd()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", ".npm", "node_modules", "ag-psd");
            if (Directory.Exists(candidate)) return candidate;
        }
        return null;
    }

    [Fact]
    public void AgPsdReadsTheLayerNamesVisibilityAndPixels()
    {
        var node = Which("/usr/bin/node", "/usr/local/bin/node");
        if (node is null) Missing("node is not installed (apt-get install nodejs)");
        var agPsd = AgPsd();
        if (agPsd is null) Missing("the npm package ag-psd is not installed: (cd tests/.npm && npm install ag-psd)");
        const int w = 33, h = 17;
        var path = WritePsd(w, h, out var layers);
        var script = _tmp.Sub("read.js");
        File.WriteAllText(script, """
            const fs = require('fs');
            const { readPsd, initializeCanvas } = require(process.argv[2]);
            // no canvas in node: plain pixel arrays are enough with useImageData
            initializeCanvas(() => { throw new Error('no canvas'); }, (w, h) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4) }));
            const psd = readPsd(fs.readFileSync(process.argv[3]), { useImageData: true, skipCompositeImageData: true, skipThumbnail: true });
            const out = { width: psd.width, height: psd.height, layers: psd.children.map(l => ({
              name: l.name, hidden: !!l.hidden, left: l.left, top: l.top, right: l.right, bottom: l.bottom,
              sum: Array.from(l.imageData.data).reduce((a, b) => a + b, 0), alpha0: l.imageData.data[3] })) };
            console.log(JSON.stringify(out));
            """);
        var r = Exec(node!, script, agPsd!, path);
        Assert.True(r.Code == 0, r.Err);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Out);
        var root = doc.RootElement;
        Assert.Equal(w, root.GetProperty("width").GetInt32());
        Assert.Equal(h, root.GetProperty("height").GetInt32());
        var ls = root.GetProperty("layers").EnumerateArray().ToArray();
        Assert.Equal(["background", "foreground", "blend"], ls.Select(l => l.GetProperty("name").GetString()).ToArray());
        Assert.Equal([false, false, true], ls.Select(l => l.GetProperty("hidden").GetBoolean()).ToArray());
        Image8[] images = [layers.Bg, layers.Fg, layers.Blend];
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal((0, 0, w, h), (ls[i].GetProperty("left").GetInt32(), ls[i].GetProperty("top").GetInt32(),
                ls[i].GetProperty("right").GetInt32(), ls[i].GetProperty("bottom").GetInt32()));
            long sum = 0;
            var img = images[i];
            for (int p = 0; p < w * h; p++)
            {
                for (int c = 0; c < 3; c++) sum += img.Pixels[p * img.Channels + c];
                sum += img.Channels == 4 ? img.Pixels[p * 4 + 3] : 255;
            }
            Assert.Equal(sum, ls[i].GetProperty("sum").GetInt64());
        }
        Assert.Equal(0, ls[1].GetProperty("alpha0").GetInt32()); // the foreground's left third is transparent
    }

    [Fact]
    public void PackBitsRoundTripsThroughAPlainDecoder()
    {
        var rng = new Random(3);
        foreach (var n in new[] { 1, 2, 3, 127, 128, 129, 300, 1000 })
            foreach (var flat in new[] { 0.0, 0.5, 0.95 })
            {
                var src = new byte[n];
                for (int i = 0; i < n; i++) src[i] = i > 0 && rng.NextDouble() < flat ? src[i - 1] : (byte)rng.Next(256);
                var packed = PsdFile.PackBits(src);
                var back = new List<byte>();
                for (int i = 0; i < packed.Length;)
                {
                    sbyte head = (sbyte)packed[i++];
                    if (head >= 0) { back.AddRange(packed.AsSpan(i, head + 1).ToArray()); i += head + 1; }
                    else if (head != -128) { back.AddRange(Enumerable.Repeat(packed[i], 1 - head)); i++; }
                }
                Assert.Equal(src, back.ToArray());
            }
    }
}
