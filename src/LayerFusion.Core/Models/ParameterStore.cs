using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Models;

/// <summary>
/// The weights of one component (unet, vae, text_encoder, ...) by diffusers name, uploaded to a
/// backend on first use. Model blocks take a <see cref="Scope"/> ("down_blocks.0.resnets.1") so a
/// block's code reads the same names as the checkpoint keys under it.
/// </summary>
public sealed class ParameterStore
{
    readonly IReadOnlyDictionary<string, WeightTensor> _weights;
    readonly Dictionary<string, Tensor> _uploaded;
    readonly string _prefix;

    public ParameterStore(IOps ops, IReadOnlyDictionary<string, WeightTensor> weights, string component)
        : this(ops, weights, component, "", new Dictionary<string, Tensor>()) { }

    ParameterStore(IOps ops, IReadOnlyDictionary<string, WeightTensor> weights, string component, string prefix,
        Dictionary<string, Tensor> uploaded)
    {
        Ops = ops;
        Component = component;
        _weights = weights;
        _prefix = prefix;
        _uploaded = uploaded;
    }

    public IOps Ops { get; }
    public string Component { get; }

    /// <summary>A view whose names are relative to <paramref name="name"/> (joined with '.').</summary>
    public ParameterStore Scope(string name) => new(Ops, _weights, Component, _prefix + name + ".", _uploaded);

    /// <summary>The checkpoint key <paramref name="name"/> has in this scope (for messages).</summary>
    public string FullName(string name) => _prefix + name;

    public bool Contains(string name) => _weights.ContainsKey(_prefix + name);

    /// <summary>The tensor named <paramref name="name"/> in this scope; a missing key is a user error naming it.</summary>
    public Tensor this[string name]
    {
        get
        {
            var full = _prefix + name;
            lock (_uploaded)
            {
                if (_uploaded.TryGetValue(full, out var t)) return t;
                if (!_weights.TryGetValue(full, out var w))
                    throw new UserInputException($"{Component}: weight '{full}' is missing from the checkpoint");
                t = Ops.Upload(w);
                _uploaded[full] = t;
                return t;
            }
        }
    }

    /// <summary>The tensor if present (optional biases), else null.</summary>
    public Tensor? Optional(string name) => Contains(name) ? this[name] : null;

    /// <summary>The checkpoint's shape of a weight, without uploading it.</summary>
    public long[] ShapeOf(string name) => _weights.TryGetValue(_prefix + name, out var w)
        ? w.Shape
        : throw new UserInputException($"{Component}: weight '{_prefix + name}' is missing from the checkpoint");
}
