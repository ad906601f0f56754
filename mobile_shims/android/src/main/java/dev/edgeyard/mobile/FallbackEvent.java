package dev.edgeyard.mobile;

/** An engine tried before the answer: kind is "error", "invalid_output" or "unavailable". */
public final class FallbackEvent {
    public final String engine;
    public final String kind;
    public final String reason;

    public FallbackEvent(String engine, String kind, String reason) {
        this.engine = engine;
        this.kind = kind;
        this.reason = reason;
    }

    @Override
    public String toString() {
        return engine + " " + kind + ": " + reason;
    }
}
