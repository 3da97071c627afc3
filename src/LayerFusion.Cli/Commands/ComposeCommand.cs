using System.CommandLine;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Commands;

/// <summary>`layerfusion compose`: move (and scale) the RGBA foreground layer over a background (the paper's spatial editing).</summary>
internal static class ComposeCommand
{
    public static Command Create()
    {
        var fg = new Option<string>("--fg") { Description = "Foreground RGBA PNG (e.g. generate's fg.png).", Required = true };
        var bg = new Option<string>("--bg") { Description = "Background PNG (its size is the output's).", Required = true };
        var dx = new Option<double>("--dx") { Description = "Horizontal shift of the foreground in pixels (right positive).", DefaultValueFactory = _ => 0, CustomParser = r => Shared.CliOptions.Double(r, 0) };
        var dy = new Option<double>("--dy") { Description = "Vertical shift of the foreground in pixels (down positive).", DefaultValueFactory = _ => 0, CustomParser = r => Shared.CliOptions.Double(r, 0) };
        var scale = new Option<double>("--scale") { Description = "Scale of the foreground about its top-left corner.", DefaultValueFactory = _ => 1.0, CustomParser = r => Shared.CliOptions.Double(r, 1) };
        var output = new Option<string>("--out", "-o") { Description = "Output PNG file.", Required = true };
        var command = new Command("compose", "Alpha-composite a (moved, scaled) foreground layer over a background.") { fg, bg, dx, dy, scale, output };
        command.SetAction(parse =>
        {
            double s = parse.GetValue(scale), x = parse.GetValue(dx), y = parse.GetValue(dy);
            if (!(s > 0) || !double.IsFinite(s)) throw new UserInputException($"--scale must be a positive number, got {s}");
            if (!double.IsFinite(x) || !double.IsFinite(y)) throw new UserInputException("--dx and --dy must be finite numbers");
            var outPath = parse.GetRequiredValue(output);
            SdxlCommand.CheckOutput(outPath, ".png");
            var fgImage = PngFile.Read(parse.GetRequiredValue(fg), channels: 4);
            var bgImage = PngFile.Read(parse.GetRequiredValue(bg), channels: 3);
            var composed = LayerCompose.Compose(fgImage, bgImage, x, y, s);
            PngFile.Write(outPath, composed, [new("software", "LayerFusion.Native layerfusion compose"),
                new("layerfusion:compose", $"dx={x} dy={y} scale={s}")], srgb: true);
            parse.InvocationConfiguration.Output.WriteLine($"wrote {outPath} ({composed.Width}x{composed.Height})");
            return 0;
        });
        return command;
    }
}
