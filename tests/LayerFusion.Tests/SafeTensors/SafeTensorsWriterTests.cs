using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.SafeTensors;

public sealed class SafeTensorsWriterTests : IDisposable
{
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A tensor whose bytes cannot be produced: writing fails after earlier tensors went out.</summary>
    sealed class FailingTensor(string name) : WeightTensor(name, DType.F32, [4])
    {
        public override ReadOnlySpan<byte> Bytes => throw new IOException("disk on fire");
    }

    [Fact]
    public void FailureMidwayLeavesNoFileAtTheTarget()
    {
        var path = _dir.File("out.safetensors");
        var big = ArrayWeightTensor.FromFloat32("big", [1 << 20], new float[1 << 20].Select((_, i) => i * 0.5f + 1).ToArray());
        var e = Assert.Throws<IOException>(() => SafeTensorsWriter.Write(path, [big, new FailingTensor("bad")]));
        Assert.Equal("disk on fire", e.Message);
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(_dir.Path)); // the temporary file is gone too
    }

    [Fact]
    public void FailureMidwayKeepsThePreviousFile()
    {
        var path = _dir.File("out.safetensors");
        SafeTensorsWriter.Write(path, [ArrayWeightTensor.FromFloat32("old", [2], [3f, 4f])]);
        var before = File.ReadAllBytes(path);
        Assert.Throws<IOException>(() => SafeTensorsWriter.Write(path, [ArrayWeightTensor.FromFloat32("new", [1], [1f]), new FailingTensor("bad")]));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void RejectsNamesTheFormatCannotHold()
    {
        var path = _dir.File("n.safetensors");
        var t = ArrayWeightTensor.FromFloat32("w", [1], [1f]);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [t, ArrayWeightTensor.Rename(t, "w")]));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [ArrayWeightTensor.Rename(t, "__metadata__")]));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [ArrayWeightTensor.Rename(t, "bad\ud800")]));
        Assert.Empty(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void MissingDirectoryFails()
    {
        var path = Path.Combine(_dir.Path, "no", "such", "dir", "x.safetensors");
        Assert.Throws<DirectoryNotFoundException>(() => SafeTensorsWriter.Write(path, [ArrayWeightTensor.FromFloat32("w", [1], [1f])]));
    }
}
