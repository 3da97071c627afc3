using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;

namespace LayerFusion.Tests.Fusion;

public class LayerComposeTests
{
    static Image8 RandomImage(Random rng, int w, int h, int c)
    {
        var px = new byte[w * h * c];
        rng.NextBytes(px);
        return new Image8(w, h, c, px);
    }

    static byte Over(byte f, byte a, byte b)
    {
        double al = a / 255.0;
        return ImageConvert.QuantizeUnit((float)(f / 255.0 * al + b / 255.0 * (1 - al)));
    }

    [Fact]
    public void UnmovedLayerIsTheAlphaCompositeAndShiftsMoveIt()
    {
        var rng = new Random(4);
        var fg = RandomImage(rng, 9, 7, 4);
        var bg = RandomImage(rng, 9, 7, 3);
        var same = LayerCompose.Compose(fg, bg, 0, 0);
        for (int i = 0; i < 9 * 7; i++)
            for (int c = 0; c < 3; c++)
                Assert.Equal(Over(fg.Pixels[4 * i + c], fg.Pixels[4 * i + 3], bg.Pixels[3 * i + c]), same.Pixels[3 * i + c]);

        // an integer shift moves the layer exactly; uncovered pixels keep the background
        var moved = LayerCompose.Compose(fg, bg, 2, -1);
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 9; x++)
                for (int c = 0; c < 3; c++)
                {
                    int sx = x - 2, sy = y + 1, o = (y * 9 + x) * 3 + c;
                    byte expected = sx >= 0 && sy < 7
                        ? Over(fg.Pixels[(sy * 9 + sx) * 4 + c], fg.Pixels[(sy * 9 + sx) * 4 + 3], bg.Pixels[o])
                        : bg.Pixels[o];
                    Assert.Equal(expected, moved.Pixels[o]);
                }

        // scale 2 about the top-left corner: pixel (2x+1, 2y+1)'s centre maps to the source pixel (x, y) + 0.25
        var big = LayerCompose.Compose(fg, bg, 0, 0, 2);
        Assert.Equal((9, 7, 3), (big.Width, big.Height, big.Channels));
        Assert.Throws<ArgumentException>(() => LayerCompose.Compose(fg, bg, 0, 0, 0));
        Assert.Throws<ArgumentException>(() => LayerCompose.Compose(bg, bg, 0, 0));
    }

    [Fact]
    public void TransparentForegroundLeavesTheBackground()
    {
        var rng = new Random(8);
        var fg = RandomImage(rng, 5, 5, 4);
        for (int i = 0; i < 25; i++) fg.Pixels[4 * i + 3] = 0;
        var bg = RandomImage(rng, 6, 4, 3);
        Assert.Equal(bg.Pixels, LayerCompose.Compose(fg, bg, 1.5, 0.25, 1.3).Pixels);
    }
}
