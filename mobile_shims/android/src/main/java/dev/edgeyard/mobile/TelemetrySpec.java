package dev.edgeyard.mobile;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A release's {@code telemetry} section as the C collector takes it ({@code ey_spec} in
 * mobile_shims/c/include/edgeyard.h): per signal its name, kind, tensor index, channel and
 * softmax flag, and for a {@code random_projection} its direction, read from the release's
 * {@code telemetry/directions.f64} (little-endian float64, see
 * {@code src/edgeyard/telemetry/projections.py}); the classes; the engine names; the resource
 * attributes, as {@code Collector.from_release} builds them in Python.
 */
public final class TelemetrySpec {
    /** Signal kinds in {@code ey_signal_kind} order: the index is the C enum value. */
    static final List<String> KINDS = Arrays.asList("mean", "std", "min", "max", "channel_mean",
            "length", "random_projection", "top1_confidence", "entropy", "output_mean");
    /** {@code EY_SIG_EXTERNAL}: a kind this build does not compute (its sketch stays empty,
     *  as a kind the Python Projector does not know). */
    static final int EXTERNAL = KINDS.size();
    static final String DIRECTIONS_FORMAT = "f64le";

    public final String[] names;
    public final int[] kinds;
    public final int[] tensors;
    public final int[] channels;
    public final int[] softmax;
    /** Per signal: its direction ({@code dim} values) for a random projection, else null. */
    public final double[][] directions;
    public final int classes;
    public final int classOutput;
    public final String className;
    public final int maxSize;
    public final int maxScale;
    public final String[] engines;
    /** Resource attributes in order (the upload id is added by the encoder). */
    public final Map<String, String> resource;

    private TelemetrySpec(int n, Map<String, Object> projections, List<String> engines,
                          Map<String, String> resource, Map<String, double[]> dirs)
            throws ManifestException {
        names = new String[n];
        kinds = new int[n];
        tensors = new int[n];
        channels = new int[n];
        softmax = new int[n];
        directions = new double[n][];
        List<?> signals = (List<?>) projections.get("signals");
        for (int i = 0; i < n; i++) {
            Map<?, ?> s = (Map<?, ?>) signals.get(i);
            names[i] = Manifest.str(s.get("name"));
            String kind = Manifest.str(s.get("kind"));
            int k = KINDS.indexOf(kind);
            kinds[i] = k < 0 ? EXTERNAL : k;
            Object t = s.containsKey("input") ? s.get("input") : s.get("output");
            tensors[i] = integer(t, 0);
            channels[i] = integer(s.get("channel"), 0);
            softmax[i] = "softmax".equals(s.get("activation")) ? 1 : 0;
            if ("random_projection".equals(kind)) {
                double[] d = dirs.get(names[i]);
                long dim = integer(s.get("dim"), -1);
                if (d == null || d.length != dim) {
                    throw new ManifestException("telemetry signal " + names[i] + ": no direction of "
                            + dim + " values in the directions file (" + (d == null ? "absent"
                            : d.length + " values") + "); rebuild the release with this edgeyard");
                }
                directions[i] = d;
            }
        }
        Object c = projections.get("classes");
        if (c instanceof Map) {
            classes = integer(((Map<?, ?>) c).get("count"), 0);
            classOutput = integer(((Map<?, ?>) c).get("output"), 0);
            Object cn = ((Map<?, ?>) c).get("name");
            className = cn == null ? "output.class" : cn.toString();
        } else {
            classes = 0;
            classOutput = 0;
            className = "";
        }
        Object sk = projections.get("sketch");
        Map<?, ?> sketch = sk instanceof Map ? (Map<?, ?>) sk : java.util.Collections.emptyMap();
        maxSize = integer(sketch.get("max_size"), 160);
        maxScale = integer(sketch.get("max_scale"), 20);
        this.engines = engines.toArray(new String[0]);
        this.resource = resource;
    }

    /**
     * The spec of {@code profile}: engines are the chain's targets in order; {@code deviceId} is
     * the pseudonymous id sent as {@code edgeyard.device_id} (see {@link Spool#pseudonymousId}).
     *
     * @throws ManifestException when the release has no telemetry section (built by an older
     *     edgeyard), no such profile, or random projections without a valid directions file
     */
    public static TelemetrySpec of(File releaseDir, Manifest m, String profile, String deviceId)
            throws ManifestException {
        Object tel = m.root.get("telemetry");
        if (!(tel instanceof Map)) {
            throw new ManifestException("this release has no telemetry projections (built by an "
                    + "older edgeyard): rebuild it");
        }
        Map<?, ?> t = (Map<?, ?>) tel;
        @SuppressWarnings("unchecked")
        Map<String, Object> projections = (Map<String, Object>) t.get("projections");
        Object version = projections.get("version");
        if (integer(version, -1) != 1) {
            throw new ManifestException("telemetry projections version " + version
                    + "; this shim reads 1: update it");
        }
        List<Manifest.ChainEntry> chain = m.chain(profile);
        List<String> engines = new ArrayList<>();
        for (Manifest.ChainEntry e : chain) {
            engines.add(e.target);
        }
        Map<String, String> resource = new LinkedHashMap<>();
        resource.put("service.name", "edgeyard-device");
        resource.put("edgeyard.model", m.name());
        resource.put("edgeyard.release", m.version());
        resource.put("edgeyard.profile", profile);
        resource.put("edgeyard.artifact.sha256", chain.isEmpty() || chain.get(0).sha256 == null
                ? "" : chain.get(0).sha256);
        resource.put("edgeyard.device_id", deviceId);
        int n = ((List<?>) projections.get("signals")).size();
        return new TelemetrySpec(n, projections, engines, resource,
                readDirections(releaseDir, t.get("directions")));
    }

    /** signal name -> direction, from the directions file the manifest names (none: empty). */
    static Map<String, double[]> readDirections(File releaseDir, Object entry)
            throws ManifestException {
        Map<String, double[]> out = new LinkedHashMap<>();
        if (!(entry instanceof Map)) {
            return out;
        }
        Map<?, ?> e = (Map<?, ?>) entry;
        String path = Manifest.str(e.get("path"));
        if (!DIRECTIONS_FORMAT.equals(e.get("format"))) {
            throw new ManifestException("telemetry directions format " + e.get("format")
                    + "; this shim reads " + DIRECTIONS_FORMAT + ": update it");
        }
        byte[] data;
        try {
            data = Files.readAllBytes(new File(releaseDir, path).toPath());
        } catch (IOException | RuntimeException ex) {
            throw new ManifestException("cannot read the telemetry directions " + path + ": " + ex);
        }
        if (!Sha256.of(data).equals(e.get("sha256"))) {
            throw new ManifestException("telemetry directions " + path + ": sha256 mismatch "
                    + "(the file was edited or truncated)");
        }
        List<?> signals = (List<?>) e.get("signals");
        List<?> offsets = (List<?>) e.get("offsets");
        if (data.length % 8 != 0 || signals == null || offsets == null
                || offsets.size() != signals.size()) {
            throw new ManifestException("telemetry directions " + path + ": malformed entry");
        }
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        int total = data.length / 8;
        for (int i = 0; i < signals.size(); i++) {
            int start = integer(offsets.get(i), -1);
            int end = i + 1 < offsets.size() ? integer(offsets.get(i + 1), -1) : total;
            if (start < 0 || end < start || end > total) {
                throw new ManifestException("telemetry directions " + path + ": offsets "
                        + offsets + " do not fit " + total + " values");
            }
            double[] d = new double[end - start];
            for (int k = 0; k < d.length; k++) {
                d[k] = b.getDouble(8 * (start + k));
            }
            out.put(Manifest.str(signals.get(i)), d);
        }
        return out;
    }

    private static int integer(Object v, int dflt) {
        return v instanceof Json.Num ? (int) ((Json.Num) v).longValue() : dflt;
    }
}
