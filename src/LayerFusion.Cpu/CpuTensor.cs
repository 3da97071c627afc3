using LayerFusion.Core.Tensors;

namespace LayerFusion.Cpu;

/// <summary>
/// A CPU tensor: contiguous row-major fp32 values at <see cref="Offset"/> in <see cref="Data"/>.
/// Reshape returns a view sharing the array; ops never write into their inputs, so views are safe.
/// </summary>
public sealed class CpuTensor : Tensor
{
    internal CpuTensor(CpuOps ops, float[] data, int offset, int[] shape) : base(shape)
    {
        if (offset < 0 || offset + ElementCount > data.Length)
            throw new ArgumentException($"tensor {ShapeUtil.Format(shape)} at offset {offset} does not fit storage of {data.Length}");
        CpuOps = ops;
        Data = data;
        Offset = offset;
    }

    internal CpuOps CpuOps { get; }
    public float[] Data { get; }
    public int Offset { get; }
    public int Length => (int)ElementCount;
    public override IOps Ops => CpuOps;

    public Span<float> Span => Data.AsSpan(Offset, Length);
    public ReadOnlySpan<float> ReadOnlySpan => Data.AsSpan(Offset, Length);

    public override Tensor Reshape(params int[] shape) => new CpuTensor(CpuOps, Data, Offset, ShapeUtil.Resolve(shape, ElementCount));
}
