namespace LayerFusion.Core.Pipelines;

/// <summary>
/// A pipeline's lifetime and its one-generation-at-a-time rule, shared by <see cref="SdxlPipeline"/>
/// and the LayerFusion triplet pipeline: <see cref="Run{T}"/> serializes generations; <see cref="Dispose"/>
/// cancels the running one, waits for it and then releases the pipeline's resources. Called from the
/// generation's own thread (a progress callback), Dispose only cancels, and the generation releases
/// on its way out, so neither side deadlocks.
/// </summary>
internal sealed class GenerationGate(object owner, Action release)
{
    readonly SemaphoreSlim _gate = new(1, 1);
    readonly CancellationTokenSource _life = new();
    int _disposed;
    int _runner = -1;
    bool _releaseOnExit;

    string OwnerName => owner.GetType().FullName!;

    public void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, owner);

    /// <summary>Runs <paramref name="run"/> once no other generation runs, with a token that Dispose also cancels.</summary>
    public T Run<T>(CancellationToken cancellationToken, Func<CancellationToken, T> run)
    {
        CancellationTokenSource linked;
        try { linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _life.Token); }
        catch (ObjectDisposedException) { throw new ObjectDisposedException(OwnerName); }
        using (linked)
        {
            try { _gate.Wait(linked.Token); }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new ObjectDisposedException(OwnerName, "the pipeline was disposed while this generation waited for its turn");
            }
            try
            {
                ThrowIfDisposed();
                Volatile.Write(ref _runner, Environment.CurrentManagedThreadId);
                return run(linked.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && Volatile.Read(ref _disposed) != 0)
            {
                throw new ObjectDisposedException(OwnerName, "the pipeline was disposed during this generation");
            }
            finally
            {
                Volatile.Write(ref _runner, -1);
                bool releaseNow;
                lock (_life) releaseNow = _releaseOnExit;
                // the gate stays taken after the release: every later Run sees the disposal first
                if (releaseNow) release();
                else _gate.Release();
            }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _life.Cancel();
        if (Volatile.Read(ref _runner) == Environment.CurrentManagedThreadId)
        {
            lock (_life) _releaseOnExit = true;
            return;
        }
        _gate.Wait();
        release();
    }
}
