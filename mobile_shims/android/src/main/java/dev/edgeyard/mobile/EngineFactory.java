package dev.edgeyard.mobile;

import java.io.File;
import java.util.List;

/**
 * Loads artifacts of one format (the manifest's {@code artifacts[id].format}: "tflite",
 * "executorch", ...). Registered explicitly with {@link EdgeRuntime.Builder#engine}; an artifact
 * whose format has no factory is marked failed with the reason, and the chain goes on.
 */
public interface EngineFactory {
    String format();

    /** Throwing marks the engine failed ("cannot load with the FORMAT runtime: ..."). */
    Engine load(File artifact, int threads, List<Manifest.TensorSpec> inputs,
                List<Manifest.TensorSpec> outputs) throws Exception;
}
