package dev.edgeyard.mobile;

import java.util.List;

/**
 * Sees every call, like the Python runtime's {@code RuntimeObserver}: called on the caller's
 * thread right after the answer, so it must be cheap and must not keep {@code inputs} or
 * {@code outputs} beyond the call without copying them. An exception it throws is counted
 * ({@link EdgeRuntime#observerErrors()}) and otherwise ignored.
 *
 * @param outputs null when every engine failed
 * @param engine the target id that answered, or null when every engine failed
 * @param latencySeconds the whole call, fallbacks included
 * @param fallbacks the engines tried before the answer (empty on the fast path)
 */
public interface Collector {
    void onCall(float[][] inputs, float[][] outputs, String engine, double latencySeconds,
                List<FallbackEvent> fallbacks);
}
