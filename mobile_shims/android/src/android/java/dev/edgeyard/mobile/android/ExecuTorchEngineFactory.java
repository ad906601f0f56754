package dev.edgeyard.mobile.android;

// Android-only: needs the ExecuTorch AAR (org.pytorch.executorch). NOT compiled or tested in
// edgeyard's CI (no Android SDK there); the JVM build compiles src/main/java and src/test/java only.

import dev.edgeyard.mobile.Engine;
import dev.edgeyard.mobile.EngineFactory;
import dev.edgeyard.mobile.Manifest;
import java.io.File;
import java.util.List;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/** Runs "executorch" artifacts (.pte, method "forward") with float32 tensors. */
public final class ExecuTorchEngineFactory implements EngineFactory {
    @Override
    public String format() {
        return "executorch";
    }

    @Override
    public Engine load(File artifact, int threads, List<Manifest.TensorSpec> inputs,
                       List<Manifest.TensorSpec> outputs) {
        // threads: ExecuTorch's XNNPACK delegate sizes its own thread pool
        Module m = Module.load(artifact.getAbsolutePath());
        return new Engine() {
            @Override
            public int batch() {
                long b = inputs.get(0).shape.length > 0 ? inputs.get(0).shape[0] : -1;
                return b > 0 ? (int) b : -1;
            }

            @Override
            public float[][] predict(float[][] x) {
                EValue[] in = new EValue[x.length];
                for (int i = 0; i < x.length; i++) {
                    long[] shape = inputs.get(i).shape.clone();
                    long per = inputs.get(i).perSample();
                    if (shape.length > 0 && per > 0) {
                        shape[0] = x[i].length / per;  // the call's batch
                    }
                    in[i] = EValue.from(Tensor.fromBlob(x[i], shape));
                }
                EValue[] out = m.forward(in);
                float[][] y = new float[out.length][];
                for (int k = 0; k < out.length; k++) {
                    y[k] = out[k].toTensor().getDataAsFloatArray();
                }
                return y;
            }

            @Override
            public void close() {
                m.destroy();
            }
        };
    }
}
