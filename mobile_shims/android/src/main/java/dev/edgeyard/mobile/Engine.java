package dev.edgeyard.mobile;

/**
 * One loaded artifact in its platform runtime (LiteRT Interpreter, ExecuTorch Module, ...).
 *
 * <p>Tensors are float32, flattened row-major with the batch dimension first, one array per
 * model input / output in the manifest's order ({@code model.inputs} / {@code model.outputs}).
 * Not called concurrently: the runtime holds a lock per engine (LiteRT interpreters and
 * ExecuTorch modules are not re-entrant).
 */
public interface Engine extends AutoCloseable {
    /** Outputs for {@code inputs}; any exception makes the runtime fall back to the next engine. */
    float[][] predict(float[][] inputs) throws Exception;

    /** The artifact's fixed batch size, or -1 when any batch is accepted. */
    default int batch() {
        return -1;
    }

    /** Release the runtime's resources; the engine is unusable afterwards. */
    @Override
    default void close() {}
}
