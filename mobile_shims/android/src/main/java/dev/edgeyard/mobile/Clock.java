package dev.edgeyard.mobile;

/** Monotonic seconds; injectable so that tests drive the circuit breaker's cool-off. */
public interface Clock {
    double seconds();

    Clock MONOTONIC = () -> System.nanoTime() / 1e9;
}
