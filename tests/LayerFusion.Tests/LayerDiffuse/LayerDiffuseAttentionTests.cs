using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.LayerDiffuse;

public class LayerDiffuseAttentionTests
{
    [Theory]
    [InlineData(2, 11)]
    [InlineData(1, 12)]
    [InlineData(3, 13)]
    public void LoraAndDenseFilesMergeToTheSameWeights(int layersPerBlock, int seed)
    {
        var unet = LayerDiffuseTestSupport.TinyUNet(layersPerBlock);
        using var tmp = new TempDir();
        var files = LayerDiffuseTiny.WriteAll(tmp.Path, unet, seed);
        var dense = LayerDiffuseAttention.Load(files.DenseAttention, unet);
        var lora = LayerDiffuseAttention.Load(files.LoraAttention, unet);

        var weights = UNetAttentionLayout.Enumerate(unet).Where(p => !p.IsBias).ToList();
        Assert.Equal(weights.Select(p => p.Name).Order(), dense.Keys.Order());
        Assert.Equal(weights.Select(p => p.Name).Order(), lora.Keys.Order());

        // an independent float64 expansion of the LoRA file's stored factors
        var reference = ReferenceOffsets(files.LoraAttention, weights);
        double maxAbs = 0;
        foreach (var p in weights)
        {
            float[] d = dense[p.Name].ToFloat32(), l = lora[p.Name].ToFloat32();
            Assert.Equal(DType.F32, lora[p.Name].DType);
            Assert.Equal(p.Shape, lora[p.Name].Shape);
            // same float64 sum order on both sides: the two encodings agree bit for bit
            Assert.Equal(d, l);
            var r = reference[p.Name];
            for (int i = 0; i < l.Length; i++)
            {
                Assert.True(Math.Abs(l[i] - r[i]) <= 6e-8 * Math.Abs(r[i]) + 1e-30, $"{p.Name}[{i}]: {l[i]} vs float64 {r[i]}");
                maxAbs = Math.Max(maxAbs, Math.Abs(r[i]));
            }
        }
        Assert.True(maxAbs > 1e-3, "offsets are degenerate");

        var baseUnet = RandomBase(unet, seed);
        var fgDense = LayerDiffuseAttention.Merge(baseUnet, dense);
        var fgLora = LayerDiffuseAttention.Merge(baseUnet, lora);
        Assert.Equal(dense.Count, fgLora.Count);
        Assert.DoesNotContain("conv_in.weight", fgLora.Keys);
        foreach (var p in weights)
        {
            float[] a = fgDense[p.Name].ToFloat32(), b = fgLora[p.Name].ToFloat32(), w = baseUnet[p.Name].ToFloat32();
            Assert.Equal(a, b);
            var r = reference[p.Name];
            for (int i = 0; i < a.Length; i++)
                Assert.True(Math.Abs(a[i] - (w[i] + r[i])) <= 1.2e-7 * (Math.Abs(w[i]) + Math.Abs(r[i])) + 1e-30, $"{p.Name}[{i}]");
        }
    }

    [Fact]
    public void TinyFilesAreDeterministicPerSeed()
    {
        var unet = LayerDiffuseTestSupport.TinyUNet();
        using var a = new TempDir();
        using var b = new TempDir();
        var fa = LayerDiffuseTiny.WriteAll(a.Path, unet, seed: 7);
        var fb = LayerDiffuseTiny.WriteAll(b.Path, unet, seed: 7);
        var fc = LayerDiffuseTiny.WriteAll(b.File("other"), unet, seed: 8);
        foreach (var (x, y) in new[] { (fa.DenseAttention, fb.DenseAttention), (fa.LoraAttention, fb.LoraAttention), (fa.TransparentDecoder, fb.TransparentDecoder) })
            Assert.Equal(File.ReadAllBytes(x), File.ReadAllBytes(y));
        Assert.NotEqual(File.ReadAllBytes(fa.LoraAttention), File.ReadAllBytes(fc.LoraAttention));
        // the LoRA file is in the requested dtype, with alphas F32 scalars on two of every three projections
        using var lora = SafeTensorsFile.Open(fa.LoraAttention);
        Assert.All(lora.Tensors.Where(t => !t.Name.EndsWith("::2", StringComparison.Ordinal)), t => Assert.Equal(DType.F16, t.DType));
        int projections = lora.Tensors.Count(t => t.Name.EndsWith("::0", StringComparison.Ordinal));
        int alphas = lora.Tensors.Count(t => t.Name.EndsWith("::2", StringComparison.Ordinal));
        Assert.InRange(alphas, 1, projections - 1);
    }

    [Fact]
    public void F16DenseFileAgreesWithLoraToF16Rounding()
    {
        var unet = LayerDiffuseTestSupport.TinyUNet();
        using var tmp = new TempDir();
        var files = LayerDiffuseTiny.WriteAll(tmp.Path, unet, seed: 21, dtype: DType.BF16, denseDtype: DType.F16);
        var dense = LayerDiffuseAttention.Load(files.DenseAttention, unet);
        var lora = LayerDiffuseAttention.Load(files.LoraAttention, unet);
        foreach (var (name, t) in lora)
        {
            float[] l = t.ToFloat32(), d = dense[name].ToFloat32();
            for (int i = 0; i < l.Length; i++)
                Assert.True(Math.Abs(l[i] - d[i]) <= Math.Abs(l[i]) * Math.Pow(2, -11) + 6e-8, $"{name}[{i}]: {l[i]} vs {d[i]}");
        }
    }

    [Fact]
    public void MergeKeepsBaseDTypeAndNeedsMatchingBase()
    {
        var unet = LayerDiffuseTestSupport.TinyUNet();
        using var tmp = new TempDir();
        var files = LayerDiffuseTiny.WriteAll(tmp.Path, unet, seed: 5);
        var offsets = LayerDiffuseAttention.Load(files.DenseAttention, unet);
        var base32 = RandomBase(unet, 5);
        var base16 = base32.ToDictionary(kv => kv.Key, kv => (WeightTensor)ArrayWeightTensor.FromFloat32(kv.Key, kv.Value.Shape, kv.Value.ToFloat32(), DType.F16));
        var fg = LayerDiffuseAttention.Merge(base16, offsets);
        Assert.All(fg.Values, t => Assert.Equal(DType.F16, t.DType));
        var name = offsets.Keys.First();
        float[] w = base16[name].ToFloat32(), d = offsets[name].ToFloat32(), m = fg[name].ToFloat32();
        for (int i = 0; i < m.Length; i++) Assert.Equal((float)(Half)(w[i] + d[i]), m[i]);

        var partial = base32.Where(kv => kv.Key != name).ToDictionary();
        var e = Assert.Throws<UserInputException>(() => LayerDiffuseAttention.Merge(partial, offsets));
        Assert.Contains(name, e.Message);
    }

    [Fact]
    public void SdxlAttentionNamesMapToLdmBlocks()
    {
        var layout = UNetAttentionLayout.Enumerate(new UNetConfig()).ToDictionary(p => p.Name, p => p);
        // SDXL: 70 transformer blocks (2*1 + 2*10 down, 10 mid, 3*10 + 3*2 up), 2 attentions, 4 weights + 1 bias
        Assert.Equal(70 * 2 * 5, layout.Count);
        Assert.Equal("input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight", layout["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"].LdmName);
        Assert.Equal("input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight", layout["down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight"].LdmName);
        Assert.Equal("middle_block.1.transformer_blocks.3.attn1.to_out.0.weight", layout["mid_block.attentions.0.transformer_blocks.3.attn1.to_out.0.weight"].LdmName);
        Assert.Equal("output_blocks.2.1.transformer_blocks.9.attn2.to_v.weight", layout["up_blocks.0.attentions.2.transformer_blocks.9.attn2.to_v.weight"].LdmName);
        Assert.Equal("output_blocks.5.1.transformer_blocks.1.attn1.to_out.0.bias", layout["up_blocks.1.attentions.2.transformer_blocks.1.attn1.to_out.0.bias"].LdmName);
        Assert.Equal([1280L, 2048], layout["up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"].Shape);
        Assert.Equal([640L, 640], layout["down_blocks.1.attentions.1.transformer_blocks.1.attn2.to_q.weight"].Shape);
        Assert.DoesNotContain(layout.Keys, k => k.StartsWith("down_blocks.0.", StringComparison.Ordinal) || k.StartsWith("up_blocks.2.", StringComparison.Ordinal));
    }

    /// <summary>
    /// Fixtures: diffusers v0.25's convert_ldm_unet_checkpoint applied to ldm keys built by sgm's
    /// UNetModel construction loop (tests/reference/unet_attention_ldm_names.py).
    /// </summary>
    [Theory]
    [InlineData("unet_attention_ldm_sdxl.json")]
    [InlineData("unet_attention_ldm_tiny_lpb1.json")]
    [InlineData("unet_attention_ldm_tiny_lpb2.json")]
    [InlineData("unet_attention_ldm_tiny_lpb3.json")]
    [InlineData("unet_attention_ldm_allattn.json")]
    public void LdmNamesMatchDiffusersConverter(string fixture)
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(LayerDiffuseTestSupport.FixtureDir(), fixture)))!.AsObject();
        var config = root["config"]!.AsObject().DeepClone().AsObject();
        config["attention_head_dim"] = 1;
        config["norm_num_groups"] = 8;
        var unet = UNetConfig.Read(ConfigReader.FromText(config.ToJsonString(), fixture));
        var expected = root["modules"]!.AsArray().Select(m => ((string)m![0]!, (string)m[1]!)).Order().ToList();

        var layout = UNetAttentionLayout.Enumerate(unet);
        static string Module(string key) => key[..key.IndexOf(".transformer_blocks.", StringComparison.Ordinal)];
        var actual = layout.Select(p => (Module(p.LdmName), Module(p.Name))).Distinct().Order().ToList();
        Assert.Equal(expected, actual);
        Assert.Equal((int)root["attention_keys"]!, layout.Count);
        Assert.All(layout, p => Assert.Equal(p.Name[Module(p.Name).Length..], p.LdmName[Module(p.LdmName).Length..]));
    }

    [Fact]
    public void DenseBiasOffsetsAreAccepted()
    {
        var unet = LayerDiffuseTestSupport.TinyUNet();
        var bias = UNetAttentionLayout.Enumerate(unet).First(p => p.IsBias);
        using var tmp = new TempDir();
        var values = Enumerable.Range(0, (int)bias.Shape[0]).Select(i => 0.01f * (i + 1)).ToArray();
        SafeTensorsWriter.Write(tmp.File("b.safetensors"), [ArrayWeightTensor.FromFloat32(bias.Name, bias.Shape, values, DType.F16)]);
        var offsets = LayerDiffuseAttention.Load(tmp.File("b.safetensors"), unet);
        Assert.Equal(values.Select(v => (float)(Half)v), offsets[bias.Name].ToFloat32());
    }

    public static TheoryData<string, string> BadFiles => new()
    {
        { "dense-unknown-key", "'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_x.weight'" },
        { "dense-wrong-shape", "has shape [32, 33], the UNet config expects [32, 32]" },
        { "dense-int-dtype", "dtype I32" },
        { "lora-unknown-key", "'diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight::lora::0'" },
        { "lora-missing-prefix", "'input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight::lora::0'" },
        { "lora-rank-mismatch", "LoRA rank mismatch at 'input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight': down [4, 32] has rank 4, up [32, 3] has 3" },
        { "lora-missing-down", "'diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight::lora::1' (down) is missing" },
        { "lora-missing-up", "'diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight::lora::0' (up) is missing" },
        { "lora-wrong-shape", "has shape [32, 24], the UNet config expects [32, 32]" },
        { "lora-alpha-not-scalar", "must be a scalar, found shape [2]" },
        { "lora-alpha-nan", "is not finite" },
        { "lora-unsupported-part", "LoRA part '3' is not supported" },
        { "lora-not-matrix", "must be matrices" },
        { "empty", "has no tensors" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadFilesGiveSpecificErrors(string kind, string expected)
    {
        var unet = LayerDiffuseTestSupport.TinyUNet();
        const string q = "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight";
        const string dq = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight";
        string lq = $"diffusion_model.{q}::lora::";
        var rng = new Random(kind.Length);
        WeightTensor R(string name, long[] shape, DType dtype = DType.F16) =>
            ArrayWeightTensor.FromFloat32(name, shape, Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), dtype);
        WeightTensor[] tensors = kind switch
        {
            "dense-unknown-key" => [R(dq, [32, 32]), R(dq.Replace("to_q", "to_x"), [32, 32])],
            "dense-wrong-shape" => [R(dq, [32, 33])],
            "dense-int-dtype" => [new ArrayWeightTensor(dq, DType.I32, [32, 32], new byte[32 * 32 * 4])],
            "lora-unknown-key" => [R("diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight::lora::0", [16, 4])],
            "lora-missing-prefix" => [R($"{q}::lora::0", [32, 4])],
            "lora-rank-mismatch" => [R(lq + "0", [32, 3]), R(lq + "1", [4, 32])],
            "lora-missing-down" => [R(lq + "0", [32, 4])],
            "lora-missing-up" => [R(lq + "1", [4, 32])],
            "lora-wrong-shape" => [R(lq + "0", [32, 4]), R(lq + "1", [4, 24])],
            "lora-alpha-not-scalar" => [R(lq + "0", [32, 4]), R(lq + "1", [4, 32]), R(lq + "2", [2], DType.F32)],
            "lora-alpha-nan" => [R(lq + "0", [32, 4]), R(lq + "1", [4, 32]), ArrayWeightTensor.FromFloat32(lq + "2", [], [float.NaN])],
            "lora-unsupported-part" => [R(lq + "0", [32, 4]), R(lq + "1", [4, 32]), R(lq + "3", [4])],
            "lora-not-matrix" => [R(lq + "0", [32, 4, 1, 1]), R(lq + "1", [4, 32])],
            "empty" => [],
            _ => throw new ArgumentException(kind),
        };
        using var tmp = new TempDir();
        string path = tmp.File($"{kind}.safetensors");
        SafeTensorsWriter.Write(path, tensors);
        var e = Assert.Throws<UserInputException>(() => LayerDiffuseAttention.Load(path, unet));
        Assert.Contains(expected, e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void LoraWithoutAlphaUsesTheProductAsIs()
    {
        var unet = LayerDiffuseTestSupport.TinyUNet();
        const string q = "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight";
        var up = Enumerable.Range(0, 32 * 2).Select(i => MathF.Sin(i + 1)).ToArray();
        var down = Enumerable.Range(0, 2 * 32).Select(i => MathF.Cos(3 * i + 1)).ToArray();
        using var tmp = new TempDir();
        foreach (var alpha in new float?[] { null, 5f })
        {
            var tensors = new List<WeightTensor>
            {
                ArrayWeightTensor.FromFloat32($"diffusion_model.{q}::lora::0", [32, 2], up),
                ArrayWeightTensor.FromFloat32($"diffusion_model.{q}::lora::1", [2, 32], down),
            };
            if (alpha is { } a) tensors.Add(ArrayWeightTensor.FromFloat32($"diffusion_model.{q}::lora::2", [], [a]));
            SafeTensorsWriter.Write(tmp.File("l.safetensors"), tensors);
            var dw = LayerDiffuseAttention.Load(tmp.File("l.safetensors"), unet)["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"].ToFloat32();
            double scale = alpha is { } s ? s / 2.0 : 1.0;
            for (int o = 0; o < 32; o++)
                for (int i = 0; i < 32; i++)
                {
                    double r = scale * ((double)up[o * 2] * down[i] + (double)up[o * 2 + 1] * down[32 + i]);
                    Assert.True(Math.Abs(dw[o * 32 + i] - r) <= 6e-8 * Math.Abs(r) + 1e-30);
                }
        }
    }

    static Dictionary<string, double[]> ReferenceOffsets(string loraPath, IEnumerable<AttentionProjection> weights)
    {
        using var f = SafeTensorsFile.Open(loraPath);
        var result = new Dictionary<string, double[]>();
        foreach (var p in weights)
        {
            string k = $"diffusion_model.{p.LdmName}::lora::";
            float[] up = f[k + "0"].ToFloat32(), down = f[k + "1"].ToFloat32();
            int rank = (int)f[k + "1"].Shape[0], rows = (int)p.Shape[0], cols = (int)p.Shape[1];
            double scale = f.Contains(k + "2") ? f[k + "2"].ToFloat32()[0] / (double)rank : 1.0;
            var r = new double[rows * cols];
            for (int o = 0; o < rows; o++)
                for (int i = 0; i < cols; i++)
                {
                    double acc = 0;
                    for (int j = 0; j < rank; j++) acc += (double)up[o * rank + j] * down[j * cols + i];
                    r[o * cols + i] = scale * acc;
                }
            result[p.Name] = r;
        }
        return result;
    }

    static Dictionary<string, WeightTensor> RandomBase(UNetConfig unet, int seed)
    {
        var rng = new Random(seed + 1000);
        var d = new Dictionary<string, WeightTensor>();
        foreach (var p in UNetAttentionLayout.Enumerate(unet))
        {
            int n = (int)p.Shape.Aggregate(1L, (a, b) => a * b);
            d[p.Name] = ArrayWeightTensor.FromFloat32(p.Name, p.Shape, Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.4f).ToArray());
        }
        d["conv_in.weight"] = ArrayWeightTensor.FromFloat32("conv_in.weight", [2], [1f, 2f]);
        return d;
    }
}
