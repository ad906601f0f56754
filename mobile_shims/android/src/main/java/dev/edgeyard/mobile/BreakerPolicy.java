package dev.edgeyard.mobile;

/**
 * When an engine is taken out of rotation, and for how long; the defaults are the Python
 * runtime's (edgeyard/runtime/breaker.py BreakerPolicy).
 *
 * <p>failures: consecutive failed calls that demote an engine. latencyWindow / latencyMinCalls:
 * the recent calls whose p90 is compared with the profile's max_latency_p90_ms budget.
 * cooloffSeconds: how long a demoted engine rests before one trial call ("half-open"); each
 * demotion in a row doubles it, up to cooloffMaxSeconds.
 */
public final class BreakerPolicy {
    public final int failures;
    public final int latencyWindow;
    public final int latencyMinCalls;
    public final double cooloffSeconds;
    public final double cooloffMaxSeconds;

    public BreakerPolicy(int failures, int latencyWindow, int latencyMinCalls, double cooloffSeconds,
                         double cooloffMaxSeconds) {
        this.failures = failures;
        this.latencyWindow = latencyWindow;
        this.latencyMinCalls = latencyMinCalls;
        this.cooloffSeconds = cooloffSeconds;
        this.cooloffMaxSeconds = cooloffMaxSeconds;
    }

    public static final BreakerPolicy DEFAULT = new BreakerPolicy(3, 50, 20, 30.0, 600.0);
}
