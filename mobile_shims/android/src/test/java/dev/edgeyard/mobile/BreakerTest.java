package dev.edgeyard.mobile;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

/** The semantics of edgeyard/runtime/breaker.py, on a manual clock. */
public class BreakerTest {
    private final Fixtures.ManualClock clock = new Fixtures.ManualClock();

    @Test
    public void defaultsAreThePythonRuntimes() {
        BreakerPolicy p = BreakerPolicy.DEFAULT;
        assertEquals(3, p.failures);
        assertEquals(50, p.latencyWindow);
        assertEquals(20, p.latencyMinCalls);
        assertEquals(30.0, p.cooloffSeconds, 0);
        assertEquals(600.0, p.cooloffMaxSeconds, 0);
    }

    @Test
    public void opensAfterConsecutiveFailuresThenHalfOpensAndCloses() {
        Breaker b = new Breaker(BreakerPolicy.DEFAULT, null, clock);
        assertFalse(b.failure("boom"));
        assertNull(b.success(0.001));  // a success resets the consecutive count
        assertFalse(b.failure("boom"));
        assertFalse(b.failure("boom"));
        assertTrue(b.failure("boom"));
        assertEquals(Breaker.State.DEMOTED, b.state());
        assertEquals("3 consecutive failure(s), last: boom", b.reason());
        assertFalse(b.available());
        clock.advance(29.9);
        assertFalse(b.available());
        clock.advance(0.1);
        assertTrue(b.available());  // half-open: one trial call
        assertNull(b.success(0.001));
        assertEquals(Breaker.State.HEALTHY, b.state());
        assertNull(b.reason());
    }

    @Test
    public void aFailedTrialDoublesTheCoolOffUpToTheCap() {
        Breaker b = new Breaker(new BreakerPolicy(1, 50, 20, 30.0, 100.0), null, clock);
        double[] rests = {30, 60, 100, 100};
        for (double rest : rests) {
            assertTrue(b.failure("boom"));  // demoted: the first failure, or the failed trial
            assertEquals(clock.now + rest, b.until(), 1e-9);
            clock.advance(rest);
            assertTrue(b.available());
        }
    }

    @Test
    public void aStableStreakResetsTheCoolOff() {
        Breaker b = new Breaker(BreakerPolicy.DEFAULT, null, clock);
        for (int i = 0; i < 3; i++) {
            b.failure("boom");
        }
        clock.advance(30);
        assertTrue(b.failure("boom"));  // the trial failed: rest twice as long
        assertEquals(clock.now + 60, b.until(), 1e-9);
        clock.advance(60);
        for (int i = 0; i < 49; i++) {
            b.success(0.001);
        }
        for (int i = 0; i < 3; i++) {
            b.failure("boom");
        }
        assertEquals(clock.now + 120, b.until(), 1e-9);  // 49 good calls are not yet stable
        clock.advance(120);
        for (int i = 0; i < 50; i++) {
            b.success(0.001);
        }
        for (int i = 0; i < 3; i++) {
            b.failure("boom");
        }
        assertEquals(clock.now + 30, b.until(), 1e-9);
    }

    @Test
    public void recentP90OverTheBudgetDemotes() {
        Breaker b = new Breaker(BreakerPolicy.DEFAULT, 0.005, clock);
        for (int i = 0; i < 17; i++) {
            assertNull(b.success(0.001));
        }
        for (int i = 0; i < 2; i++) {
            assertNull(b.success(0.010));  // 2 of 19: not yet 20 calls
        }
        String why = b.success(0.010);  // 3 of 20 over: p90 > budget
        assertEquals("recent p90 latency 10.000 ms > budget 5 ms", why);
        assertEquals(Breaker.State.DEMOTED, b.state());
        assertEquals(clock.now + 30, b.until(), 1e-9);
    }

    @Test
    public void percentileIsNumpysLinear() {
        assertEquals(9.1, Breaker.percentile(new double[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90), 1e-12);
        assertEquals(5.5, Breaker.percentile(new double[] {10, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 50), 1e-12);
    }

    @Test
    public void formatsLikePython() {
        assertEquals("5", Format.g(5.0, 6));
        assertEquals("0.5", Format.g(0.5, 6));
        assertEquals("1e-05", Format.g(1e-05, 3));
        assertEquals("0.000123", Format.g(0.000123, 3));
        assertEquals("1.23e+03", Format.g(1234.5, 3));
    }
}
