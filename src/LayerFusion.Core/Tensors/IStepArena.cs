namespace LayerFusion.Core.Tensors;

/// <summary>
/// A backend capability the denoising loops use when present (CUDA): op outputs inside
/// <see cref="BeginStep"/> come from a per-step arena (no driver allocation or synchronizing free
/// per op once it has grown); tensors that outlive the step (latents, a multistep sampler's
/// history) live outside it and are overwritten in place with <see cref="CopyInto"/>, so a step's
/// memory addresses are the same every step and the step can be captured once as a graph
/// (<see cref="TryCapture"/>) and replayed.
/// </summary>
public interface IStepArena
{
    /// <summary>Opens a step; disposing it recycles the arena (stream-ordered: no wait for the step's work).</summary>
    IDisposable BeginStep();

    /// <summary>A copy of <paramref name="x"/> outside the arena.</summary>
    Tensor Persist(Tensor x);

    /// <summary>Overwrites <paramref name="destination"/> with <paramref name="source"/> (same shape), in stream order.</summary>
    void CopyInto(Tensor destination, Tensor source);

    /// <summary>
    /// Inside an open step: records everything <paramref name="issue"/> enqueues as one graph, without
    /// running it (call <see cref="IStepGraph.Launch"/>). <paramref name="issue"/> must allocate only what
    /// an earlier uncaptured step of the same work already grew the arena to, and read every per-step
    /// value from device memory (<see cref="StepScalars"/>), never from the host. Null where the backend
    /// cannot capture now (then run <paramref name="issue"/> directly).
    /// </summary>
    IStepGraph? TryCapture(Action issue);
}

/// <summary>A captured denoising step; each <see cref="Launch"/> replays it in stream order.</summary>
public interface IStepGraph : IDisposable
{
    void Launch();
}
