using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.SafeTensors;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Tests.Checkpoints;

/// <summary>Single files written by diffusers' own convert_diffusers_to_original_sdxl.py, which stores
/// OpenCLIP's projection as a Linear weight (text_projection.weight, [proj, hidden]).</summary>
public class ConverterLayoutTests
{
    const string Released = LdmKeyMap.ClipGPrefix + "text_projection";
    const string Converted = LdmKeyMap.ClipGPrefix + "text_projection.weight";

    /// <summary>The tiny single file rewritten with the converter's name and layout for the projection.</summary>
    static string WriteConverted(TempDir tmp, bool keepBoth = false)
    {
        string dir = Fixtures.WriteTiny(tmp, "released", CheckpointLayout.SingleFile, 3);
        string src = Path.Combine(dir, TinyCheckpoint.SingleFileName);
        string dst = tmp.Sub("converted.safetensors");
        using var file = SafeTensorsFile.Open(src);
        var tensors = new List<WeightTensor>();
        foreach (var t in file.Tensors)
        {
            var copy = new ArrayWeightTensor(t.Name, t.DType, t.Shape, t.Bytes.ToArray());
            if (t.Name != Released || keepBoth) tensors.Add(copy);
            if (t.Name != Released) continue;
            // [hidden, proj] -> [proj, hidden], element by element
            int h = (int)t.Shape[0], p = (int)t.Shape[1], es = DTypes.SizeOf(t.DType);
            var src2 = copy.Bytes;
            var bytes = new byte[src2.Length];
            for (int i = 0; i < h; i++)
                for (int j = 0; j < p; j++)
                    src2.Slice((i * p + j) * es, es).CopyTo(bytes.AsSpan((j * h + i) * es, es));
            tensors.Add(new ArrayWeightTensor(Converted, t.DType, [p, h], bytes));
        }
        SafeTensorsWriter.Write(dst, tensors, file.Metadata);
        return dst;
    }

    [Fact]
    public void TextProjectionAsALinearWeightLoadsTheSameProjection()
    {
        using var tmp = new TempDir();
        string converted = WriteConverted(tmp);
        using var a = Checkpoint.Open(Path.Combine(tmp.Sub("released"), TinyCheckpoint.SingleFileName));
        using var b = Checkpoint.Open(converted);
        Assert.Equal(a.TextEncoder2.Config.ProjectionDim, b.TextEncoder2.Config.ProjectionDim);
        var pa = a.TextEncoder2["text_projection.weight"];
        var pb = b.TextEncoder2["text_projection.weight"];
        Assert.Equal(pa.Shape, pb.Shape);
        Assert.Equal(pa.ToFloat32(), pb.ToFloat32());
        // a missed (or doubled) transpose would show: the random projection is not symmetric
        var v = pa.ToFloat32();
        int rows = (int)pa.Shape[0], cols = (int)pa.Shape[1];
        Assert.True(rows != cols || Enumerable.Range(0, rows * cols).Any(k => v[k] != v[(k % cols) * cols + k / cols]));
        // every other tensor too
        foreach (var (name, t) in a.TextEncoder2.Weights)
            Assert.True(t.Bytes.SequenceEqual(b.TextEncoder2[name].Bytes), name);
    }

    [Fact]
    public void BothLayoutsInOneFileAreAmbiguous()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(WriteConverted(tmp, keepBoth: true)));
        Assert.Contains("two layouts of one tensor", e.Message);
        Assert.Contains(Converted, e.Message);
    }
}
