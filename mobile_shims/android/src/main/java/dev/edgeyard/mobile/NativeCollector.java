package dev.edgeyard.mobile;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The C telemetry collector (mobile_shims/c, {@code ey_window_*}) behind {@link Collector},
 * through JNI ({@code src/main/jni/edgeyard_collector_jni.c}, built by {@code CMakeLists.txt}
 * as lib{@value #LIBRARY}.so).
 *
 * <p>The library is loaded on {@link #open}, not when the class loads, so apps and tests that
 * never open one need no native code. Java reads release.json ({@link TelemetrySpec}: the
 * projections, the random-projection directions file, the resource attributes) and hands the
 * C side arrays, which it copies into one native block; per call it gets the inputs and
 * outputs with their shapes (batch first), the serving engine as an index into the profile's
 * chain (-1 when every engine failed: counted under engine "none", as Python does) and the
 * fallbacks. The C side copies nothing of the call and keeps no Java reference.
 *
 * <p>Every method is synchronized (the C window is not thread-safe). A C error is thrown as
 * {@link IllegalArgumentException} / {@link IllegalStateException} naming the {@code EY_E_*}
 * code; {@link EdgeRuntime} counts an exception thrown by {@link #onCall} and goes on.
 *
 * <pre>
 * NativeCollector c = NativeCollector.open(releaseDir, "pixel8", Spool.pseudonymousId(dir, null));
 * // ... EdgeRuntime.builder(...).collector(c) ...; every N calls or T seconds:
 * String id = NativeCollector.newUploadId();
 * spool.put(id, c.takeWindowOtlpJson(id));   // then an Uploader sends the spool
 * </pre>
 */
public final class NativeCollector implements Collector, AutoCloseable {
    public static final String LIBRARY = "edgeyard_collector_jni";
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final Pattern UPLOAD_ID = Pattern.compile("[0-9A-Za-z._-]{1,128}");

    private final List<Manifest.TensorSpec> inputs;
    private final List<Manifest.TensorSpec> outputs;
    private final List<String> engines;
    private final TelemetrySpec spec;
    private long handle;

    private NativeCollector(Manifest m, TelemetrySpec spec, long handle) {
        this.inputs = m.inputs();
        this.outputs = m.outputs();
        this.engines = java.util.Arrays.asList(spec.engines);
        this.spec = spec;
        this.handle = handle;
    }

    /**
     * A collector for {@code profile} of the release in {@code releaseDir}: its telemetry
     * projections, the chain's engines in order, and the resource attributes of Python's
     * {@code Collector.from_release} with {@code deviceId} as {@code edgeyard.device_id} (a
     * pseudonymous id: {@link Spool#pseudonymousId}).
     *
     * @throws UnsatisfiedLinkError when lib{@value #LIBRARY}.so is not packaged with the app
     * @throws ManifestException when the release has no telemetry section (or an unusable one)
     * @throws IllegalArgumentException when the C core refuses the spec (its bounds)
     */
    public static NativeCollector open(File releaseDir, String profile, String deviceId)
            throws ManifestException {
        Manifest m = Manifest.load(releaseDir);
        m.chain(profile);  // an unknown profile is the caller's error, before any native code
        System.loadLibrary(LIBRARY);
        TelemetrySpec s = TelemetrySpec.of(releaseDir, m, profile, deviceId);
        String[] strings = new String[s.names.length + 1 + s.engines.length
                + 2 * s.resource.size()];
        int k = 0;
        for (String n : s.names) {
            strings[k++] = n;
        }
        strings[k++] = s.className;
        for (String e : s.engines) {
            strings[k++] = e;
        }
        for (String key : s.resource.keySet()) {
            strings[k++] = key;
        }
        for (String v : s.resource.values()) {
            strings[k++] = v;
        }
        long h = nativeOpen(blob(strings, false), s.kinds, s.tensors, s.channels, s.softmax,
                s.directions, s.classes, s.classOutput, s.maxSize, s.maxScale,
                s.engines.length, s.resource.size());
        if (h == 0) {  // nativeOpen throws before returning 0; this is a guard
            throw new IllegalStateException("the C collector could not open " + releaseDir);
        }
        return new NativeCollector(m, s, h);
    }

    /** A random upload id: 32 hex digits from SecureRandom (Python: uuid4().hex). */
    public static String newUploadId() {
        byte[] b = new byte[16];
        RANDOM.nextBytes(b);
        return Sha256.hex(b);
    }

    /** The spec handed to the C side (names, engines, resource attributes). */
    public TelemetrySpec spec() {
        return spec;
    }

    @Override
    public synchronized void onCall(float[][] in, float[][] out, String engine, double latencySeconds,
                                    List<FallbackEvent> fallbacks) {
        if (handle == 0) {
            return;
        }
        String[] f = new String[3 * fallbacks.size()];
        for (int i = 0; i < fallbacks.size(); i++) {
            f[3 * i] = fallbacks.get(i).engine;
            f[3 * i + 1] = fallbacks.get(i).kind;
            f[3 * i + 2] = fallbacks.get(i).reason;
        }
        int index = engine == null ? -1 : engines.indexOf(engine);
        if (engine != null && index < 0) {
            throw new IllegalArgumentException("engine " + engine + " is not in the chain "
                    + engines);
        }
        nativeRecord(handle, in, in == null ? null : shapes(inputs, in), out,
                out == null ? null : shapes(outputs, out), index, latencySeconds,
                fallbacks.size(), blob(f, true));
    }

    /** Count {@code n} calls or windows lost before the window (e.g. {@link Spool#takeDropped}). */
    public synchronized void addDropped(long n) {
        if (handle != 0 && n > 0) {
            nativeAddDropped(handle, n);
        }
    }

    /**
     * Close the current window and return it as OTLP/JSON (one ResourceMetrics, with
     * {@code edgeyard.upload_id} = {@code uploadId}); a new window starts. Null once closed.
     */
    public synchronized String takeWindowOtlpJson(String uploadId) {
        if (uploadId == null || !UPLOAD_ID.matcher(uploadId).matches()) {
            throw new IllegalArgumentException("upload id " + uploadId + ": expected 1 to 128 of "
                    + "[0-9A-Za-z._-] (newUploadId() gives 32 random hex digits)");
        }
        if (handle == 0) {
            return null;
        }
        return new String(nativeTakeWindow(handle, uploadId), StandardCharsets.UTF_8);
    }

    @Override
    public synchronized void close() {
        if (handle != 0) {
            nativeClose(handle);
            handle = 0;
        }
    }

    /**
     * Each tensor's full shape: the manifest's, with the call's batch first.
     *
     * @throws IllegalArgumentException when an array is not a whole number of samples
     */
    static long[][] shapes(List<Manifest.TensorSpec> specs, float[][] data) {
        long[][] out = new long[data.length][];
        for (int i = 0; i < data.length; i++) {
            Manifest.TensorSpec s = specs.get(Math.min(i, specs.size() - 1));
            long per = s.perSample();
            int len = data[i] == null ? 0 : data[i].length;
            out[i] = s.shape.clone();
            if (out[i].length == 0) {
                out[i] = new long[] {len};
            } else if (per > 0) {
                if (len % per != 0) {
                    throw new IllegalArgumentException("tensor " + i + " holds " + len
                            + " floats, not a whole number of samples of " + per + " (shape "
                            + java.util.Arrays.toString(s.shape) + ")");
                }
                out[i][0] = len / per;
            } else {
                out[i] = new long[] {1, len};  // dynamic: one flat sample
            }
        }
        return out;
    }

    /**
     * Strings as NUL-terminated UTF-8, back to back (what the C side splits). A NUL inside a
     * string is refused in the spec and replaced by U+FFFD in per-call strings (a fallback
     * reason must never make inference throw).
     */
    static byte[] blob(String[] strings, boolean replaceNul) {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (String s : strings) {
            String v = s == null ? "" : s;
            if (v.indexOf('\0') >= 0) {
                if (!replaceNul) {
                    throw new IllegalArgumentException("a telemetry name holds a NUL character: "
                            + v.replace('\0', '\uFFFD'));
                }
                v = v.replace('\0', '\uFFFD');
            }
            byte[] u = v.getBytes(StandardCharsets.UTF_8);
            b.write(u, 0, u.length);
            b.write(0);
        }
        return b.toByteArray();
    }

    /** The resource attributes the windows carry (besides the upload id). */
    public Map<String, String> resource() {
        return spec.resource;
    }

    private static native long nativeOpen(byte[] strings, int[] kinds, int[] tensors,
                                          int[] channels, int[] softmax, double[][] directions,
                                          int classes, int classOutput, int maxSize, int maxScale,
                                          int nEngines, int nResource);

    private static native void nativeRecord(long handle, float[][] inputs, long[][] inputShapes,
                                            float[][] outputs, long[][] outputShapes, int engine,
                                            double latencySeconds, int nFallbacks,
                                            byte[] fallbacks);

    private static native void nativeAddDropped(long handle, long n);

    private static native byte[] nativeTakeWindow(long handle, String uploadId);

    private static native void nativeClose(long handle);
}
