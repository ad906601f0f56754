package dev.edgeyard.mobile;

import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Iterator;

/**
 * Per-engine health, a port of edgeyard/runtime/breaker.py: a circuit breaker on consecutive
 * failures and on recent p90 latency.
 *
 * <p>healthy -> demoted after {@code failures} consecutive failures, or when more than 10% of
 * the last {@code latencyWindow} calls (at least {@code latencyMinCalls}) were over budget;
 * demoted engines rest {@code cooloff * 2^(demotions in a row - 1)} seconds (capped), then get
 * one trial call: success -> healthy, failure -> demoted again for longer. After
 * {@code latencyWindow} good calls in a row the cool-off starts over. failed is permanent (the
 * engine never loaded). Not thread-safe on its own: the runtime holds its lock around it.
 */
public final class Breaker {
    public enum State {
        HEALTHY, DEMOTED, FAILED;

        @Override
        public String toString() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    private final BreakerPolicy policy;
    private final Double budget;  // seconds; null: no latency budget
    private final Clock clock;
    State state = State.HEALTHY;
    String reason;
    double until;
    int consecutive;
    int demotionsInARow;
    int streak;
    long calls;
    long failures;
    // recent calls as over-budget flags: p90 > budget <=> more than 10% of them are over
    private final ArrayDeque<Boolean> recentOver = new ArrayDeque<>();
    private int over;
    private final ArrayDeque<Double> allLatencies = new ArrayDeque<>();
    private static final int KEEP_LATENCIES = 1000;

    public Breaker(BreakerPolicy policy, Double latencyBudgetSeconds, Clock clock) {
        this.policy = policy;
        this.budget = latencyBudgetSeconds;
        this.clock = clock;
    }

    public State state() {
        return state;
    }

    public String reason() {
        return reason;
    }

    /** When a demoted engine gets its trial call (clock seconds). */
    public double until() {
        return until;
    }

    public void failPermanently(String why) {
        state = State.FAILED;
        reason = why;
    }

    /** Whether the next call may try this engine (healthy, or demoted and rested). */
    public boolean available() {
        if (state == State.FAILED) {
            return false;
        }
        return state == State.HEALTHY || clock.seconds() >= until;
    }

    private void demote(String why) {
        demotionsInARow++;
        double rest = Math.min(policy.cooloffSeconds * Math.pow(2, demotionsInARow - 1),
                policy.cooloffMaxSeconds);
        state = State.DEMOTED;
        reason = why;
        until = clock.seconds() + rest;
        recentOver.clear();
        over = 0;
    }

    /** Record a good call; returns a demotion reason when latency broke the budget, else null. */
    public String success(double latencySeconds) {
        calls++;
        consecutive = 0;
        allLatencies.addLast(latencySeconds);
        if (allLatencies.size() > KEEP_LATENCIES) {
            allLatencies.removeFirst();
        }
        if (state == State.DEMOTED) {  // the trial call after the cool-off worked
            state = State.HEALTHY;
            reason = null;
            streak = 0;
        }
        streak++;
        if (streak >= policy.latencyWindow) {  // stable again: cool-offs start over
            demotionsInARow = 0;
        }
        if (budget == null) {
            return null;
        }
        if (recentOver.size() == policy.latencyWindow && recentOver.removeFirst()) {
            over--;
        }
        boolean isOver = latencySeconds > budget;
        recentOver.addLast(isOver);
        if (isOver) {
            over++;
        }
        int n = recentOver.size();
        if (n >= policy.latencyMinCalls && over * 10 > n) {
            double p90 = percentile(last(n), 90);
            String why = String.format(java.util.Locale.ROOT, "recent p90 latency %.3f ms > budget %s ms",
                    1e3 * p90, Format.g(1e3 * budget, 6));
            demote(why);
            return why;
        }
        return null;
    }

    /** Record a failed call; returns true when it demoted the engine. */
    public boolean failure(String why) {
        calls++;
        failures++;
        consecutive++;
        if (state == State.DEMOTED || consecutive >= policy.failures) {
            demote(consecutive + " consecutive failure(s), last: " + why);
            return true;
        }
        return false;
    }

    /** p50 and p90 latency in milliseconds over the last 1000 good calls; null when none. */
    public double[] percentilesMs() {
        if (allLatencies.isEmpty()) {
            return null;
        }
        double[] all = last(allLatencies.size());
        return new double[] {1e3 * percentile(all, 50), 1e3 * percentile(all, 90)};
    }

    private double[] last(int n) {
        double[] out = new double[n];
        Iterator<Double> it = allLatencies.descendingIterator();
        for (int i = n - 1; i >= 0; i--) {
            out[i] = it.next();
        }
        return out;
    }

    // numpy.percentile's default (linear interpolation between closest ranks)
    static double percentile(double[] values, double q) {
        double[] v = values.clone();
        Arrays.sort(v);
        double pos = q / 100.0 * (v.length - 1);
        int lo = (int) Math.floor(pos);
        int hi = Math.min(lo + 1, v.length - 1);
        return v[lo] + (v[hi] - v[lo]) * (pos - lo);
    }
}
