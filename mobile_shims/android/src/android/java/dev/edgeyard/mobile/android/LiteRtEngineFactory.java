package dev.edgeyard.mobile.android;

// Android-only: needs the LiteRT AAR (com.google.ai.edge.litert:litert, package
// org.tensorflow.lite). NOT compiled or tested in edgeyard's CI (no Android SDK there); the JVM
// build and tests/shims/test_jvm_wrapper.py compile src/main/java and src/test/java only.

import dev.edgeyard.mobile.Engine;
import dev.edgeyard.mobile.EngineFactory;
import dev.edgeyard.mobile.Manifest;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;

/** Runs "tflite" artifacts with the LiteRT Interpreter (float32 inputs and outputs). */
public final class LiteRtEngineFactory implements EngineFactory {
    @Override
    public String format() {
        return "tflite";
    }

    @Override
    public Engine load(File artifact, int threads, List<Manifest.TensorSpec> inputs,
                       List<Manifest.TensorSpec> outputs) {
        Interpreter.Options opts = new Interpreter.Options().setNumThreads(threads);
        Interpreter it = new Interpreter(artifact, opts);
        return new LiteRtEngine(it, inputs, outputs);
    }

    private static final class LiteRtEngine implements Engine {
        private final Interpreter it;
        private final List<Manifest.TensorSpec> inputs;
        private final List<Manifest.TensorSpec> outputs;
        private final String signature;  // null: index order

        LiteRtEngine(Interpreter it, List<Manifest.TensorSpec> inputs, List<Manifest.TensorSpec> outputs) {
            this.it = it;
            this.inputs = inputs;
            this.outputs = outputs;
            // the signature carries the source model's tensor names (LiteRT orders by name), like
            // edgeyard/engines/tflite.py
            String[] keys = it.getSignatureKeys();
            String key = null;
            for (String k : keys) {
                if (k.equals("serving_default") || key == null) {
                    key = k;
                }
            }
            this.signature = key;
            for (int i = 0; i < it.getInputTensorCount(); i++) {
                if (it.getInputTensor(i).dataType() != DataType.FLOAT32) {
                    throw new IllegalArgumentException("input " + i + " is " + it.getInputTensor(i).dataType()
                            + "; this adapter feeds float32 only");
                }
            }
        }

        @Override
        public int batch() {
            long b = inputs.get(0).shape.length > 0 ? inputs.get(0).shape[0] : -1;
            return b > 0 ? (int) b : -1;
        }

        @Override
        public float[][] predict(float[][] x) {
            ByteBuffer[] in = new ByteBuffer[x.length];
            for (int i = 0; i < x.length; i++) {
                in[i] = ByteBuffer.allocateDirect(4 * x[i].length).order(ByteOrder.nativeOrder());
                in[i].asFloatBuffer().put(x[i]);
            }
            ByteBuffer[] out = new ByteBuffer[outputs.size()];
            if (signature != null) {
                Map<String, Object> feed = new HashMap<>();
                for (int i = 0; i < x.length; i++) {
                    feed.put(inputs.get(i).name, in[i]);
                }
                Map<String, Object> fetch = new HashMap<>();
                for (int k = 0; k < out.length; k++) {
                    String name = outputs.get(k).name;
                    out[k] = ByteBuffer.allocateDirect(it.getOutputTensorFromSignature(name, signature).numBytes())
                            .order(ByteOrder.nativeOrder());
                    fetch.put(name, out[k]);
                }
                it.runSignature(feed, fetch, signature);
            } else {
                Map<Integer, Object> fetch = new HashMap<>();
                for (int k = 0; k < out.length; k++) {
                    out[k] = ByteBuffer.allocateDirect(it.getOutputTensor(k).numBytes()).order(ByteOrder.nativeOrder());
                    fetch.put(k, out[k]);
                }
                it.runForMultipleInputsOutputs(in, fetch);
            }
            float[][] y = new float[out.length][];
            for (int k = 0; k < out.length; k++) {
                out[k].rewind();
                y[k] = new float[out[k].capacity() / 4];
                out[k].asFloatBuffer().get(y[k]);
            }
            return y;
        }

        @Override
        public void close() {
            it.close();
        }
    }
}
