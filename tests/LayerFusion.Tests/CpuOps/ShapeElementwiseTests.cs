using LayerFusion.WeightsLoader;
using static LayerFusion.Tests.CpuOps.OpTestKit;

namespace LayerFusion.Tests.CpuOps;

public class ShapeElementwiseTests
{
    static int[] Strides(int[] s)
    {
        var st = new int[s.Length]; int p = 1;
        for (int i = s.Length - 1; i >= 0; i--) { st[i] = p; p *= s[i]; }
        return st;
    }

    static int[] Unravel(int flat, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int i = shape.Length - 1; i >= 0; i--) { idx[i] = flat % shape[i]; flat /= shape[i]; }
        return idx;
    }

    public static TheoryData<int[], int[], int> BroadcastCases => new()
    {
        { new[] { 2, 3, 4, 5 }, new[] { 2, 3, 4, 5 }, 1 },   // same shape
        { new[] { 2, 3, 4, 5 }, new[] { 2, 3, 1, 1 }, 2 },   // per-channel (time embedding into resnet)
        { new[] { 2, 3, 4, 5 }, new[] { 3, 1, 1 }, 1 },      // bias [C,1,1]
        { new[] { 2, 7, 9 }, new[] { 9 }, 2 },               // bias over last dim
        { new[] { 2, 7, 9 }, new[] { 2, 1, 9 }, -1 },        // [B,1,C] over tokens
        { new[] { 2, 7, 9 }, new[] { 1 }, 1 },               // scalar
        { new[] { 3, 5, 6 }, new[] { 3, 1, 6 }, 2 },         // middle broadcast
        { new[] { 4, 5, 6 }, new[] { 1, 5, 1 }, 1 },         // broadcast on both sides
        { new[] { 64, 40, 33 }, new[] { 64, 40, 1 }, -1 },   // large, trailing broadcast
        { new[] { 5, 1, 3 }, new[] { 1, 3 }, 1 },
    };

    [Theory, MemberData(nameof(BroadcastCases))]
    public void Add_Sub_Mul_broadcast_like_numpy(int[] aShape, int[] bShape, int dop)
    {
        var ops = Ops(dop);
        var r = new Random(10000 + aShape.Sum() * 3 + bShape.Sum());
        var a = Rand(r, Prod(aShape)); var b = Rand(r, Prod(bShape));
        var ta = T(ops, a, aShape); var tb = T(ops, b, bShape);
        var guard = new InputGuard(ops, ta, tb);
        var sum = ops.Add(ta, tb); var diff = ops.Sub(ta, tb); var prod = ops.Mul(ta, tb);
        guard.Unchanged();
        int ra = aShape.Length, rb = bShape.Length;
        var bs = Strides(bShape);
        var rs = new double[a.Length]; var rd = new double[a.Length]; var rp = new double[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            var idx = Unravel(i, aShape);
            int bo = 0;
            for (int d = 0; d < rb; d++) { int ad = ra - rb + d; bo += (bShape[d] == 1 ? 0 : idx[ad]) * bs[d]; }
            rs[i] = (double)a[i] + b[bo]; rd[i] = (double)a[i] - b[bo]; rp[i] = (double)a[i] * b[bo];
        }
        Assert.Equal(aShape, sum.Shape);
        AssertClose(ops.ToHost(sum), rs); AssertClose(ops.ToHost(diff), rd); AssertClose(ops.ToHost(prod), rp);
    }

    [Fact]
    public void Broadcast_rejects_incompatible_shapes()
    {
        var ops = Ops(1);
        var r = new Random(1);
        Assert.Throws<ArgumentException>(() => ops.Add(T(ops, Rand(r, 6), 2, 3), T(ops, Rand(r, 2), 2)));
        Assert.Throws<ArgumentException>(() => ops.Mul(T(ops, Rand(r, 3), 3), T(ops, Rand(r, 6), 2, 3)));
    }

    [Theory]
    [InlineData(1, 2.5f, -0.75f)]
    [InlineData(70001, -0.18215f, 0f)]
    public void Affine_matches_float64(int n, float alpha, float beta)
    {
        var ops = Ops(-1);
        var r = new Random(11000 + n);
        var x = Rand(r, n);
        var tx = T(ops, x, n);
        var guard = new InputGuard(ops, tx);
        var y = ops.Affine(tx, alpha, beta);
        guard.Unchanged();
        AssertClose(ops.ToHost(y), x.Select(v => (double)alpha * v + beta).ToArray());
    }

    [Theory]
    [InlineData(5, -1f, 1f)]
    [InlineData(70001, -0.25f, 0.5f)]
    public void Clamp_matches_float64_and_keeps_NaN(int n, float min, float max)
    {
        var ops = Ops(-1);
        var r = new Random(12000 + n);
        var x = Rand(r, n);
        x[0] = float.NaN;
        x[1] = min;        // the bounds themselves pass unchanged
        x[2] = float.PositiveInfinity;
        var tx = T(ops, x, n);
        var guard = new InputGuard(ops, tx);
        var y = ops.ToHost(ops.Clamp(tx, min, max));
        guard.Unchanged();
        Assert.True(float.IsNaN(y[0]));
        Assert.Equal(min, y[1]);
        Assert.Equal(max, y[2]);
        AssertClose(y[3..], x[3..].Select(v => Math.Min(Math.Max((double)v, min), max)).ToArray());
        Assert.Throws<ArgumentException>(() => ops.Clamp(tx, 1f, -1f));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(-1)]
    public void Concat_then_Slice_round_trips(int axis)
    {
        var ops = Ops(2);
        var r = new Random(12000 + axis);
        int[][] shapes = axis switch
        {
            0 => new[] { new[] { 2, 3, 5 }, new[] { 1, 3, 5 }, new[] { 4, 3, 5 } },
            1 => new[] { new[] { 2, 3, 5 }, new[] { 2, 7, 5 } },
            _ => new[] { new[] { 2, 3, 5 }, new[] { 2, 3, 1 }, new[] { 2, 3, 4 } },
        };
        var datas = shapes.Select(s => Rand(r, Prod(s))).ToArray();
        var parts = shapes.Select((s, i) => T(ops, datas[i], s)).ToArray();
        var guard = new InputGuard(ops, parts);
        var y = ops.Concat(parts, axis);
        guard.Unchanged();
        int ax = axis < 0 ? axis + 3 : axis;
        var outShape = (int[])shapes[0].Clone(); outShape[ax] = shapes.Sum(s => s[ax]);
        Assert.Equal(outShape, y.Shape);
        // reference: element at index idx comes from the part whose axis range holds idx[ax]
        var yv = ops.ToHost(y);
        for (int i = 0; i < yv.Length; i++)
        {
            var idx = Unravel(i, outShape);
            int p = 0, at = idx[ax];
            while (at >= shapes[p][ax]) { at -= shapes[p][ax]; p++; }
            idx[ax] = at;
            var st = Strides(shapes[p]);
            int src = 0; for (int d = 0; d < 3; d++) src += idx[d] * st[d];
            Assert.Equal(datas[p][src], yv[i]);
        }
        // and slicing gives each part back
        var yGuard = new InputGuard(ops, y);
        int start = 0;
        for (int p = 0; p < parts.Length; p++)
        {
            var s = ops.Slice(y, axis, start, shapes[p][ax]);
            Assert.Equal(shapes[p], s.Shape);
            Assert.Equal(datas[p], ops.ToHost(s));
            start += shapes[p][ax];
        }
        yGuard.Unchanged();
        Assert.Throws<ArgumentException>(() => ops.Slice(y, axis, start, 1));
    }

    [Theory]
    [InlineData(new[] { 2, 3, 4, 5 }, new[] { 0, 2, 1, 3 })]
    [InlineData(new[] { 2, 3, 4, 5 }, new[] { 3, 1, 0, 2 })]
    [InlineData(new[] { 7, 9 }, new[] { 1, 0 })]
    [InlineData(new[] { 2, 64, 33 }, new[] { 0, 2, 1 })]
    [InlineData(new[] { 3, 1, 5 }, new[] { 0, 1, 2 })]
    [InlineData(new[] { 2, 40, 33, 17 }, new[] { 0, 2, 3, 1 })]   // NCHW -> NHWC, tiles with remainders
    [InlineData(new[] { 2, 33, 17, 40 }, new[] { 0, 3, 1, 2 })]   // NHWC -> NCHW
    [InlineData(new[] { 3, 19, 4, 21 }, new[] { 2, 3, 0, 1 })]
    [InlineData(new[] { 5, 1, 7 }, new[] { 2, 0, 1 })]
    public void Permute_matches_index_mapping(int[] shape, int[] axes)
    {
        var ops = Ops(-1);
        var r = new Random(13000 + shape.Sum() + axes[0]);
        var x = Rand(r, Prod(shape));
        var tx = T(ops, x, shape);
        var guard = new InputGuard(ops, tx);
        var y = ops.Permute(tx, axes);
        guard.Unchanged();
        var outShape = axes.Select(a => shape[a]).ToArray();
        Assert.Equal(outShape, y.Shape);
        var st = Strides(shape);
        var yv = ops.ToHost(y);
        for (int i = 0; i < yv.Length; i++)
        {
            var idx = Unravel(i, outShape);
            int src = 0; for (int d = 0; d < axes.Length; d++) src += idx[d] * st[axes[d]];
            Assert.Equal(x[src], yv[i]);
        }
    }

    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(2, 3, 5, 7)]
    [InlineData(1, 64, 16, 17)]
    public void Upsample2xNearest_repeats_each_pixel(int n, int c, int h, int w)
    {
        var ops = Ops(-1);
        var r = new Random(14000 + n + c + h + w);
        var x = Rand(r, n * c * h * w);
        var tx = T(ops, x, n, c, h, w);
        var guard = new InputGuard(ops, tx);
        var y = ops.Upsample2xNearest(tx);
        guard.Unchanged();
        Assert.Equal(new[] { n, c, 2 * h, 2 * w }, y.Shape);
        var yv = ops.ToHost(y);
        for (int p = 0; p < n * c; p++)
            for (int oy = 0; oy < 2 * h; oy++)
                for (int ox = 0; ox < 2 * w; ox++)
                    Assert.Equal(x[(p * h + oy / 2) * w + ox / 2], yv[(p * 2 * h + oy) * 2 * w + ox]);
    }

    [Fact]
    public void Gather_picks_rows_and_rejects_bad_ids()
    {
        var ops = Ops(1);
        var r = new Random(15000);
        int v = 11, d = 6;
        var table = Rand(r, v * d);
        var tt = T(ops, table, v, d);
        var guard = new InputGuard(ops, tt);
        int[] ids = { 3, 0, 10, 3, 7 };
        var y = ops.Gather(tt, ids);
        guard.Unchanged();
        Assert.Equal(new[] { ids.Length, d }, y.Shape);
        var yv = ops.ToHost(y);
        for (int i = 0; i < ids.Length; i++)
            for (int j = 0; j < d; j++) Assert.Equal(table[ids[i] * d + j], yv[i * d + j]);
        Assert.Throws<ArgumentOutOfRangeException>(() => ops.Gather(tt, new[] { 11 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ops.Gather(tt, new[] { -1 }));
    }

    [Fact]
    public void Reshape_is_a_view_and_ops_accept_views()
    {
        var ops = Ops(1);
        var r = new Random(16000);
        var x = Rand(r, 24);
        var tx = T(ops, x, 2, 3, 4);
        var v = tx.Reshape(6, -1);
        Assert.Equal(new[] { 6, 4 }, v.Shape);
        Assert.Same(((LayerFusion.Cpu.CpuTensor)tx).Data, ((LayerFusion.Cpu.CpuTensor)v).Data);
        Assert.Equal(x, ops.ToHost(v));
        var y = ops.Affine(v, 2f);
        Assert.Equal(x.Select(e => 2 * e).ToArray(), ops.ToHost(y));
        Assert.Throws<ArgumentException>(() => tx.Reshape(5, -1));
    }

    [Fact]
    public void Upload_converts_checkpoint_dtypes_to_fp32()
    {
        var ops = Ops(1);
        var r = new Random(17000);
        var vals = Rand(r, 12);
        foreach (var dt in new[] { DType.F32, DType.F16, DType.BF16 })
        {
            var w = ArrayWeightTensor.FromFloat32("w", new long[] { 3, 4 }, vals, dt);
            var t = ops.Upload(w);
            Assert.Equal(new[] { 3, 4 }, t.Shape);
            Assert.Equal(w.ToFloat32(), ops.ToHost(t));
        }
    }

    [Fact]
    public void Pooled_outputs_return_when_disposed_views_neither_pin_nor_outlive_them_and_come_back_zeroed()
    {
        var ops = Ops(1);
        int n = 1 << 17; // pooled size
        var x = ops.FromHost(Enumerable.Range(0, n).Select(i => (float)(i % 97) + 1).ToArray(), n);
        var y = (LayerFusion.Cpu.CpuTensor)ops.Affine(x, 2f);
        var view = (LayerFusion.Cpu.CpuTensor)y.Reshape(2, n / 2);
        var expected = Enumerable.Range(0, n).Select(i => 2f * ((i % 97) + 1)).ToArray();
        Assert.Equal(expected, ops.ToHost(view));
        // disposing a view releases nothing: the output and its other views stay readable
        var other = y.Reshape(n / 2, 2);
        other.Dispose();
        Assert.Equal(expected, ops.ToHost(y));
        Assert.Equal(expected, ops.ToHost(view));
        // the output's dispose returns the array; its views then refuse to read (it may hold another tensor's values)
        y.Dispose();
        Assert.Throws<ObjectDisposedException>(() => y.Data);
        Assert.Throws<ObjectDisposedException>(() => view.Data);
        Assert.Throws<ObjectDisposedException>(() => ops.ToHost(view));
        // the next output of that length may reuse it, and Zeros is still all zeros
        using var zeros = ops.Zeros(n);
        Assert.All(ops.ToHost(zeros), v => Assert.Equal(0f, v));
        Assert.Equal(x.Shape, zeros.Shape);
    }

    [Fact]
    public void Upload_of_a_mapped_fp16_tensor_matches_the_scalar_conversion_and_the_file_stays_readable()
    {
        // long enough for the vectorized path and several whole pages; special values included
        var r = new Random(17001);
        var vals = Rand(r, 700000); // several conversion chunks, the last one partial
        vals[0] = float.PositiveInfinity; vals[1] = float.NegativeInfinity; vals[2] = float.NaN; vals[3] = 3e-8f; vals[4] = -0f; vals[5] = 65504f;
        var src = ArrayWeightTensor.FromFloat32("w", [7, 100000], vals, DType.F16);
        var dir = Path.Combine(Path.GetTempPath(), "lf-upload-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var path = Path.Combine(dir, "w.safetensors");
            LayerFusion.WeightsLoader.SafeTensors.SafeTensorsWriter.Write(path, [ArrayWeightTensor.FromFloat32("pad", [3], [1f, 2f, 3f], DType.F16), src]);
            using var file = LayerFusion.WeightsLoader.SafeTensors.SafeTensorsFile.Open(path);
            var ops = Ops(2);
            var t = ops.Upload(file["w"]);
            Assert.Equal(new[] { 7, 100000 }, t.Shape);
            Assert.Equal(src.ToFloat32(), ops.ToHost(t));
            // Upload released the mapped pages; the bytes read back from the file unchanged
            Assert.True(src.Bytes.SequenceEqual(file["w"].Bytes));
            Assert.Equal(src.ToFloat32(), ops.ToHost(ops.Upload(file["w"])));
            Assert.Equal(new[] { 1f, 2f, 3f }, file["pad"].ToFloat32());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void FromHost_copies_and_Zeros_are_zero()
    {
        var ops = Ops(1);
        var data = new[] { 1f, 2f, 3f };
        var t = ops.FromHost(data, 3);
        data[0] = 9f;
        Assert.Equal(new[] { 1f, 2f, 3f }, ops.ToHost(t));
        Assert.Equal(new float[6], ops.ToHost(ops.Zeros(2, 3)));
        Assert.Throws<ArgumentException>(() => ops.FromHost(data, 2, 2));
    }
}
