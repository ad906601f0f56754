package dev.edgeyard.mobile;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * A release manifest ({@code release.json}) as written by edgeyard (schema
 * {@code edgeyard.release}, versions up to {@link #SCHEMA_VERSION}); see docs/manifest.md.
 *
 * <p>Only the fields the device needs get accessors; {@link #root} keeps the whole document,
 * which the signature check needs byte for byte.
 */
public final class Manifest {
    public static final String SCHEMA_ID = "edgeyard.release";
    public static final int SCHEMA_VERSION = 1;
    public static final String FILE_NAME = "release.json";

    /** Name, shape (-1: dynamic) and numpy dtype name of one model input or output. */
    public static final class TensorSpec {
        public final String name;
        public final long[] shape;
        public final String dtype;

        TensorSpec(String name, long[] shape, String dtype) {
            this.name = name;
            this.shape = shape;
            this.dtype = dtype;
        }

        /** Elements per sample (shape without the batch dimension), or -1 when one is dynamic. */
        public long perSample() {
            long n = 1;
            for (int d = 1; d < shape.length; d++) {
                if (shape[d] < 0) {
                    return -1;
                }
                n *= shape[d];
            }
            return n;
        }
    }

    /** One chain entry joined with its artifact record (what Release.chain() gives in Python). */
    public static final class ChainEntry {
        public final String target;
        public final String backend;
        public final String precision;
        public final String format;  // null when the artifact has none (not built)
        public final String status;
        public final String reason;
        public final String path;    // relative to the release directory; null when not built
        public final String sha256;
        public final double selftestAtol;

        ChainEntry(String target, Map<String, Object> a) {
            this.target = target;
            this.backend = str(a.get("backend"));
            this.precision = str(a.get("precision"));
            this.format = str(a.get("format"));
            this.status = str(a.get("status"));
            this.reason = str(a.get("reason"));
            this.path = str(a.get("path"));
            this.sha256 = str(a.get("sha256"));
            Object st = a.get("selftest");
            Object atol = st instanceof Map ? ((Map<?, ?>) st).get("atol") : null;
            this.selftestAtol = atol instanceof Json.Num ? ((Json.Num) atol).doubleValue() : 1e-4;
        }
    }

    public final Map<String, Object> root;

    private Manifest(Map<String, Object> root) {
        this.root = root;
    }

    /** Read {@code dir/release.json} (or the file itself) and check its schema id and version. */
    public static Manifest load(File dirOrFile) throws ManifestException {
        File f = dirOrFile.isDirectory() ? new File(dirOrFile, FILE_NAME) : dirOrFile;
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(f.toPath());
        } catch (IOException e) {
            throw new ManifestException("cannot read " + f + ": " + e.getMessage()
                    + " (a release directory holds release.json)");
        }
        return parse(bytes, f.toString());
    }

    public static Manifest parse(byte[] utf8, String where) throws ManifestException {
        Object data;
        try {
            data = Json.parse(utf8);
        } catch (Json.ParseException e) {
            throw new ManifestException(where + " is not valid JSON: " + e.getMessage());
        }
        if (!(data instanceof Map) || !SCHEMA_ID.equals(((Map<?, ?>) data).get("schema"))) {
            throw new ManifestException(where + " is not an edgeyard release manifest "
                    + "(expected \"schema\": \"" + SCHEMA_ID + "\")");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> root = (Map<String, Object>) data;
        Object v = root.get("schema_version");
        if (!(v instanceof Json.Num) || !((Json.Num) v).isInteger()
                || ((Json.Num) v).longValue() > SCHEMA_VERSION) {
            throw new ManifestException(where + " has schema version " + v + "; this shim reads up to "
                    + SCHEMA_VERSION + ": update the shim");
        }
        return new Manifest(root);
    }

    public String name() {
        return str(obj(root, "model").get("name"));
    }

    public String version() {
        return str(obj(root, "model").get("version"));
    }

    public List<String> profiles() {
        return new ArrayList<>(obj(root, "profiles").keySet());
    }

    /** The profile's targets in fallback order (first is primary), joined with their artifacts. */
    public List<ChainEntry> chain(String profile) throws ManifestException {
        Map<String, Object> p = profile(profile);
        Map<String, Object> artifacts = obj(root, "artifacts");
        List<ChainEntry> out = new ArrayList<>();
        for (Object e : (List<?>) p.get("chain")) {
            String target = str(((Map<?, ?>) e).get("target"));
            Object a = artifacts.get(target);
            if (!(a instanceof Map)) {
                throw new ManifestException("profile " + profile + " names target " + target
                        + ", which is not in \"artifacts\" (it has " + artifacts.keySet() + ")");
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> am = (Map<String, Object>) a;
            out.add(new ChainEntry(target, am));
        }
        return Collections.unmodifiableList(out);
    }

    /** {@code budgets.max_latency_p90_ms} of the profile in seconds, or null when it has none. */
    public Double latencyBudgetSeconds(String profile) throws ManifestException {
        Object b = profile(profile).get("budgets");
        Object ms = b instanceof Map ? ((Map<?, ?>) b).get("max_latency_p90_ms") : null;
        return ms instanceof Json.Num ? ((Json.Num) ms).doubleValue() / 1e3 : null;
    }

    /** {@code hardware.threads} of the profile, 1 when unset. */
    public int threads(String profile) throws ManifestException {
        Object h = profile(profile).get("hardware");
        Object t = h instanceof Map ? ((Map<?, ?>) h).get("threads") : null;
        return t instanceof Json.Num ? (int) ((Json.Num) t).longValue() : 1;
    }

    public List<TensorSpec> inputs() {
        return specs("inputs");
    }

    public List<TensorSpec> outputs() {
        return specs("outputs");
    }

    public Map<String, Object> golden() {
        return obj(root, "golden");
    }

    private Map<String, Object> profile(String profile) throws ManifestException {
        Object p = obj(root, "profiles").get(profile);
        if (!(p instanceof Map)) {
            throw new ManifestException("release " + name() + " " + version() + " has no profile "
                    + profile + "; it has " + String.join(", ", profiles()));
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) p;
        return m;
    }

    private List<TensorSpec> specs(String key) {
        List<TensorSpec> out = new ArrayList<>();
        for (Object o : (List<?>) obj(root, "model").get(key)) {
            Map<?, ?> m = (Map<?, ?>) o;
            List<?> shape = (List<?>) m.get("shape");
            long[] dims = new long[shape.size()];
            for (int d = 0; d < dims.length; d++) {
                dims[d] = ((Json.Num) shape.get(d)).longValue();
            }
            out.add(new TensorSpec(str(m.get("name")), dims, str(m.get("dtype"))));
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> obj(Map<String, Object> m, String key) {
        Object v = m.get(key);
        if (!(v instanceof Map)) {
            throw new IllegalStateException("release.json: \"" + key + "\" is not an object");
        }
        return (Map<String, Object>) v;
    }

    static String str(Object v) {
        return v == null ? null : v.toString();
    }
}
