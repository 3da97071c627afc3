using System.Text.Json;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Schedulers;

namespace LayerFusion.Tests.Imaging;

public class ImageConvertTests
{
    [Fact]
    public void SignedNchwMatchesDiffusersPostprocessBytes()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SchedulerFixtures.FindRepoFile("tests/reference/imaging/postprocess_v0.25.json")));
        var r = doc.RootElement;
        var shape = r.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var input = r.GetProperty("input").EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
        var images = r.GetProperty("images_hwc").EnumerateArray().Select(a => a.EnumerateArray().Select(e => (byte)e.GetInt32()).ToArray()).ToArray();
        Assert.Equal(shape[0], images.Length);
        for (int n = 0; n < shape[0]; n++)
        {
            var img = ImageConvert.FromSignedNchw(input, n, shape[1], shape[2], shape[3]);
            Assert.Equal((shape[3], shape[2], 3), (img.Width, img.Height, img.Channels));
            Assert.Equal(images[n], img.Pixels);
        }
    }

    [Fact]
    public void QuantizationAgreesWithAFloat64ModelAwayFromTies()
    {
        var rng = new Random(5);
        for (int i = 0; i < 100_000; i++)
        {
            float x = (float)(rng.NextDouble() * 3 - 1.5);
            double v = Math.Clamp(x / 2.0 + 0.5, 0, 1) * 255;
            if (Math.Abs(v - Math.Floor(v) - 0.5) < 1e-4) continue; // float32 rounding may decide ties
            Assert.Equal((byte)Math.Round(v), ImageConvert.QuantizeSigned(x));
        }
        Assert.Equal(0, ImageConvert.QuantizeSigned(float.NaN));
        Assert.Equal(255, ImageConvert.QuantizeSigned(float.PositiveInfinity));
        Assert.Equal(0, ImageConvert.QuantizeSigned(float.NegativeInfinity));
        Assert.Equal(2, ImageConvert.QuantizeUnit(2.5f / 255f)); // half to even, as numpy
    }

    [Fact]
    public void RgbaAssemblyInterleavesPlanes()
    {
        int h = 3, w = 5;
        var rng = new Random(8);
        var rgb = Enumerable.Range(0, 3 * h * w).Select(_ => (float)rng.NextDouble()).ToArray();
        var alpha = Enumerable.Range(0, h * w).Select(_ => (float)rng.NextDouble()).ToArray();
        var img = ImageConvert.RgbaFromUnitPlanes(rgb, alpha, h, w);
        Assert.Equal(4, img.Channels);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int p = y * w + x;
                for (int c = 0; c < 3; c++)
                    Assert.Equal(ImageConvert.QuantizeUnit(rgb[c * h * w + p]), img.Pixels[4 * p + c]);
                Assert.Equal(ImageConvert.QuantizeUnit(alpha[p]), img.Pixels[4 * p + 3]);
            }
        Assert.Throws<ArgumentException>(() => ImageConvert.RgbaFromUnitPlanes(rgb, alpha[1..], h, w));
        Assert.Throws<ArgumentException>(() => ImageConvert.FromSignedNchw(rgb, 1, 3, h, w));
    }
}
