package dev.edgeyard.mobile;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** No engine could answer; {@link #reasons} maps each engine, in chain order, to why. */
public final class AllEnginesFailed extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public final Map<String, String> reasons;

    public AllEnginesFailed(Map<String, String> reasons) {
        super(message(reasons));
        this.reasons = Collections.unmodifiableMap(new LinkedHashMap<>(reasons));
    }

    private static String message(Map<String, String> reasons) {
        StringBuilder sb = new StringBuilder("every engine failed for this call:");
        for (Map.Entry<String, String> e : reasons.entrySet()) {
            sb.append("\n  ").append(e.getKey()).append(": ").append(e.getValue());
        }
        return sb.toString();
    }
}
