namespace LayerFusion.Core.Tensors;

/// <summary>
/// A backend capability the denoising loops use when present (CUDA): op outputs inside
/// <see cref="BeginStep"/> come from a per-step arena (no driver allocation or synchronizing free
/// per op once it has grown); tensors that outlive the step (latents, a multistep sampler's
/// history) are copied out with <see cref="Persist"/> before the scope ends.
/// </summary>
public interface IStepArena
{
    /// <summary>Opens a step; disposing it waits for the step's work and recycles the arena.</summary>
    IDisposable BeginStep();

    /// <summary>A copy of <paramref name="x"/> outside the arena.</summary>
    Tensor Persist(Tensor x);
}
