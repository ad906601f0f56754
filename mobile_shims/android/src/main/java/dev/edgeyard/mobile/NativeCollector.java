package dev.edgeyard.mobile;

import java.util.ArrayList;
import java.util.List;

/**
 * The C telemetry collector (mobile_shims/c, {@code ey_window_*}) behind {@link Collector},
 * through JNI.
 *
 * <p>The glue is {@code src/main/jni/edgeyard_collector_jni.c}, a documented stub: it is not
 * built or tested here; the calls into the C collector are marked TODO there. The library is
 * loaded on {@link #open}, not when the class loads, so apps and tests that never open one need
 * no native code.
 *
 * <p>Per call the C side gets what {@code ey_window_observe} and {@code ey_window_add_fallback}
 * take: the inputs and outputs with their shapes (batch first), the serving engine as an index
 * into the profile's chain (-1 when every engine failed) and the fallbacks (engine, kind,
 * reason). The C side must copy what it keeps and return: this runs on the inference thread.
 */
public final class NativeCollector implements Collector, AutoCloseable {
    public static final String LIBRARY = "edgeyard_collector_jni";

    private final List<Manifest.TensorSpec> inputs;
    private final List<Manifest.TensorSpec> outputs;
    private final List<String> engines;
    private long handle;

    NativeCollector(Manifest m, List<String> engines, long handle) {
        this.inputs = m.inputs();
        this.outputs = m.outputs();
        this.engines = engines;
        this.handle = handle;
    }

    /**
     * A collector for {@code profile} of the release in {@code releaseDir}: the glue reads the
     * telemetry projections from its release.json and names the engines in chain order.
     *
     * @throws UnsatisfiedLinkError when lib{@value #LIBRARY}.so is not packaged with the app
     */
    public static NativeCollector open(java.io.File releaseDir, String profile) throws ManifestException {
        Manifest m = Manifest.load(releaseDir);
        List<String> engines = new ArrayList<>();
        for (Manifest.ChainEntry e : m.chain(profile)) {
            engines.add(e.target);
        }
        System.loadLibrary(LIBRARY);
        long h = nativeOpen(releaseDir.getPath(), engines.toArray(new String[0]));
        if (h == 0) {
            throw new IllegalStateException("the C collector could not open " + releaseDir
                    + " (no telemetry projections in release.json?); see logcat for its reason");
        }
        return new NativeCollector(m, engines, h);
    }

    @Override
    public synchronized void onCall(float[][] in, float[][] out, String engine, double latencySeconds,
                                    List<FallbackEvent> fallbacks) {
        if (handle == 0) {
            return;
        }
        String[] fe = new String[fallbacks.size()];
        String[] fk = new String[fe.length];
        String[] fr = new String[fe.length];
        for (int i = 0; i < fe.length; i++) {
            fe[i] = fallbacks.get(i).engine;
            fk[i] = fallbacks.get(i).kind;
            fr[i] = fallbacks.get(i).reason;
        }
        nativeRecord(handle, in, shapes(inputs, in), out, out == null ? null : shapes(outputs, out),
                engine == null ? -1 : engines.indexOf(engine), latencySeconds, fe, fk, fr);
    }

    /** Close the current window and return it as OTLP/JSON for the app's uploader. */
    public synchronized String takeWindowOtlpJson(String uploadId) {
        return handle == 0 ? null : nativeTakeWindow(handle, uploadId);
    }

    @Override
    public synchronized void close() {
        if (handle != 0) {
            nativeClose(handle);
            handle = 0;
        }
    }

    /** Each tensor's full shape: the manifest's, with the call's batch first. */
    static long[][] shapes(List<Manifest.TensorSpec> specs, float[][] data) {
        long[][] out = new long[data.length][];
        for (int i = 0; i < data.length; i++) {
            Manifest.TensorSpec s = specs.get(Math.min(i, specs.size() - 1));
            long per = s.perSample();
            out[i] = s.shape.clone();
            if (out[i].length == 0) {
                out[i] = new long[] {data[i].length};
            } else if (per > 0) {
                out[i][0] = data[i].length / per;
            } else {
                out[i] = new long[] {1, data[i].length};  // dynamic: one flat sample
            }
        }
        return out;
    }

    private static native long nativeOpen(String releaseDir, String[] engines);

    private static native void nativeRecord(long handle, float[][] inputs, long[][] inputShapes,
                                            float[][] outputs, long[][] outputShapes, int engine,
                                            double latencySeconds, String[] fallbackEngines,
                                            String[] fallbackKinds, String[] fallbackReasons);

    private static native String nativeTakeWindow(long handle, String uploadId);

    private static native void nativeClose(long handle);
}
