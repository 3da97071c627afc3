using LayerFusion.Cli;
using LayerFusion.Tests.Checkpoints;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Tests.Cli;

/// <summary>make-tiny's atomic writes and determinism; inspect's one-line errors on hostile folders.</summary>
public class MakeTinyInspectCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static void AssertOneLineError((int Code, string Out, string Err) r, string expected)
    {
        Assert.Equal(2, r.Code);
        Assert.Equal("", r.Out);
        var lines = r.Err.TrimEnd('\n').Split('\n');
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain("   at ", r.Err);
    }

    static string[] Tree(string dir) => Directory.GetFileSystemEntries(dir, "*", SearchOption.AllDirectories)
        .Select(p => Path.GetRelativePath(dir, p)).Order(StringComparer.Ordinal).ToArray();

    [Theory]
    [InlineData("diffusers")]
    [InlineData("single-file")]
    public void MakeTinyIsDeterministicFileForFile(string layout)
    {
        using var tmp = new TempDir();
        Assert.Equal(0, Run("make-tiny", tmp.Sub("a"), "--layout", layout, "--seed", "8").Code);
        Assert.Equal(0, Run("make-tiny", tmp.Sub("b"), "--layout", layout, "--seed", "8").Code);
        Assert.Equal(0, Run("make-tiny", tmp.Sub("c"), "--layout", layout, "--seed", "9").Code);
        var files = Tree(tmp.Sub("a"));
        Assert.Equal(files, Tree(tmp.Sub("b")));
        Assert.Contains("tokenizer_2" + Path.DirectorySeparatorChar + "vocab.json", files);
        bool anyDiffers = false;
        foreach (var f in files.Where(f => File.Exists(Path.Combine(tmp.Sub("a"), f))))
        {
            var a = File.ReadAllBytes(Path.Combine(tmp.Sub("a"), f));
            Assert.True(a.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(tmp.Sub("b"), f))), f);
            anyDiffers |= !a.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(tmp.Sub("c"), f)));
        }
        Assert.True(anyDiffers, "another seed must give other weights");
    }

    [Fact]
    public void MakeTinyLeavesNoTemporaryFoldersAndKeepsUnrelatedFiles()
    {
        using var tmp = new TempDir();
        string dir = tmp.Sub("ckpt");
        Directory.CreateDirectory(Path.Combine(dir, "unet"));
        File.WriteAllText(Path.Combine(dir, "unet", "stale.bin"), "old");
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "mine");
        Assert.Equal(0, Run("make-tiny", dir, "--seed", "1").Code);
        // unet/ was replaced whole (no stale file inside), the user's own file stayed.
        Assert.False(File.Exists(Path.Combine(dir, "unet", "stale.bin")));
        Assert.Equal("mine", File.ReadAllText(Path.Combine(dir, "notes.txt")));
        Assert.Equal(["ckpt"], Directory.GetFileSystemEntries(tmp.Path).Select(Path.GetFileName));
        using var ckpt = Checkpoint.Open(dir);
        Assert.Equal(CheckpointLayout.DiffusersFolder, ckpt.Layout);
    }

    [Fact]
    public void MakeTinyIntoAnExistingEmptyFolderKeepsTheFolder()
    {
        if (OperatingSystem.IsWindows())
        {
            Assert.Skip("identifies the folder by its Unix mode bits");
            return;
        }
        using var tmp = new TempDir();
        string dir = tmp.Sub("empty");
        // An unusual mode marks this very folder: a removed and recreated one would get the default.
        const UnixFileMode marker = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute;
        Directory.CreateDirectory(dir, marker);
        // Trailing separator, as a shell completion gives it.
        Assert.Equal(0, Run("make-tiny", dir + Path.DirectorySeparatorChar, "--layout", "single-file").Code);
        Assert.Equal(marker, File.GetUnixFileMode(dir));
        Assert.True(File.Exists(Path.Combine(dir, TinyCheckpoint.SingleFileName)));
        Assert.Equal(["empty"], Directory.GetFileSystemEntries(tmp.Path).Select(Path.GetFileName));
        using var ckpt = Checkpoint.Open(dir);
        Assert.Equal(CheckpointLayout.SingleFile, ckpt.Layout);
    }

    [Fact]
    public void FailedFillLeavesNothingBehind()
    {
        using var tmp = new TempDir();
        string dir = tmp.Sub("never");
        var e = Assert.Throws<UserInputException>(() => AtomicFolder.Write(dir, t =>
        {
            TinyCheckpoint.Write(t, CheckpointLayout.DiffusersFolder, 1);
            throw new UserInputException("interrupted");
        }));
        Assert.Equal("interrupted", e.Message);
        Assert.False(Directory.Exists(dir));
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));

        // Into an existing checkpoint: the old one stays as it was, byte for byte.
        Assert.Equal(0, Run("make-tiny", tmp.Sub("old"), "--seed", "3").Code);
        var before = Tree(tmp.Sub("old")).Where(f => File.Exists(Path.Combine(tmp.Sub("old"), f)))
            .ToDictionary(f => f, f => File.ReadAllBytes(Path.Combine(tmp.Sub("old"), f)));
        Assert.Throws<UserInputException>(() => AtomicFolder.Write(tmp.Sub("old"), t =>
        {
            TinyCheckpoint.Write(t, CheckpointLayout.DiffusersFolder, 4);
            throw new UserInputException("interrupted");
        }));
        Assert.Equal(before.Keys.Order(StringComparer.Ordinal), Tree(tmp.Sub("old")).Where(f => File.Exists(Path.Combine(tmp.Sub("old"), f))));
        foreach (var (f, bytes) in before) Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(tmp.Sub("old"), f))), f);
        Assert.Equal(["old"], Directory.GetFileSystemEntries(tmp.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void MakeTinyIntoAnUnwritablePlaceIsOneLine()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.Sub("file"), "x");
        AssertOneLineError(Run("make-tiny", tmp.Sub("file")), "is a file, not a folder");
        // A parent that is a file: the folder cannot be created.
        AssertOneLineError(Run("make-tiny", Path.Combine(tmp.Sub("file"), "sub")), "make-tiny: cannot write");
    }

    [Fact]
    public void InspectHostileFoldersIsOneLineExitTwo()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, Run("make-tiny", tmp.Sub("d"), "--seed", "2").Code);
        string d = tmp.Sub("d");

        File.WriteAllText(Path.Combine(d, "tokenizer", "vocab.json"), "{\"a\": 1, \"a\": 2}");
        AssertOneLineError(Run("inspect", d), "vocab.json: not valid JSON");

        Assert.Equal(0, Run("make-tiny", d, "--seed", "2").Code);
        File.WriteAllText(Path.Combine(d, "vae", "config.json"), "{\"block_out_channels\": [32, 64], \"block_out_channels\": [32]}");
        AssertOneLineError(Run("inspect", d), "vae" + Path.DirectorySeparatorChar + "config.json: not valid JSON");

        Assert.Equal(0, Run("make-tiny", d, "--seed", "2").Code);
        File.WriteAllText(Path.Combine(d, "unet", "config.json"), "{\"layers_per_block\": \"two\"}");
        AssertOneLineError(Run("inspect", d), "field 'layers_per_block' must be an integer");

        Assert.Equal(0, Run("make-tiny", d, "--seed", "2").Code);
        File.WriteAllText(Path.Combine(d, "model_index.json"), new string('[', 10_000));
        AssertOneLineError(Run("inspect", d), "model_index.json: not valid JSON");

        Assert.Equal(0, Run("make-tiny", d, "--seed", "2").Code);
        Directory.Delete(Path.Combine(d, "text_encoder_2"), recursive: true);
        AssertOneLineError(Run("inspect", d), "text_encoder_2: component folder");

        string unetFile = Path.Combine(tmp.Sub("d"), "unet", "diffusion_pytorch_model.safetensors");
        Assert.Equal(0, Run("make-tiny", d, "--seed", "2").Code);
        var bytes = File.ReadAllBytes(unetFile);
        File.WriteAllBytes(unetFile, bytes[..(bytes.Length / 2)]);
        AssertOneLineError(Run("inspect", d), "invalid safetensors file");
    }
}

public class InspectSpecialFileTests
{
    [Fact]
    public async Task FifoInATokenizerFolderIsOneLineNotAHang()
    {
        using var tmp = new TempDir();
        var o = new StringWriter();
        Assert.Equal(0, Program.Run(["make-tiny", tmp.Sub("d")], o, new StringWriter()));
        string merges = Path.Combine(tmp.Sub("d"), "tokenizer", "merges.txt");
        File.Delete(merges);
        LayerFusion.Tests.SafeTensors.SafeTensorsSpecialFileTests.MakeFifo(merges);
        var err = new StringWriter();
        int code = await LayerFusion.Tests.SafeTensors.SafeTensorsSpecialFileTests.NoHang(() => Program.Run(["inspect", tmp.Sub("d")], new StringWriter(), err));
        Assert.Equal(2, code);
        Assert.Single(err.ToString().TrimEnd('\n').Split('\n'));
        Assert.Contains("merges.txt: is a FIFO (named pipe), not a regular file", err.ToString());
    }
}
