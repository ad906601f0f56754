package dev.edgeyard.mobile;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A profile's chain of verified engines behind one {@link #predict}, falling back on failure: a
 * port of edgeyard/runtime/runtime.py for Android (and any JVM).
 *
 * <p>Per engine, in chain order, at load: signature (the manifest's, or the artifact's own
 * statement), the artifact's sha256, loading through the {@link EngineFactory} registered for
 * its format, then the self-test on the golden inputs within the tolerance recorded at build
 * time. An engine that fails a step is marked failed with the reason ({@link #status}); the
 * others still load. Per call: the first engine whose {@link Breaker} lets it answers; an
 * exception, a wrong output count or size, or a NaN/Inf output counts as a failure and the next
 * engine is tried.
 *
 * <p>Thread-safe: each engine is called under its own lock, different engines run concurrently,
 * and the health bookkeeping has its own lock.
 */
public final class EdgeRuntime implements AutoCloseable {

    /** An engine's health as {@link #status} reports it. */
    public static final class EngineStatus {
        public final String target;
        public final String backend;
        public final String precision;
        public final String state;  // healthy | demoted | demoted (retry due) | failed
        public final String reason;
        public final long calls;
        public final long failures;
        public final int consecutiveFailures;
        public final double[] latencyP50P90Ms;  // null before the first good call

        EngineStatus(Slot s, double now) {
            Breaker b = s.breaker;
            this.target = s.entry.target;
            this.backend = s.entry.backend;
            this.precision = s.entry.precision;
            String st = b.state.toString();
            if (b.state == Breaker.State.DEMOTED && now >= b.until) {
                st = "demoted (retry due)";
            }
            this.state = st;
            this.reason = b.reason;
            this.calls = b.calls;
            this.failures = b.failures;
            this.consecutiveFailures = b.consecutive;
            this.latencyP50P90Ms = b.percentilesMs();
        }

        @Override
        public String toString() {
            return target + ": " + state + (reason == null ? "" : " (" + reason + ")");
        }
    }

    /** Options for {@link EdgeRuntime}: start with {@link EdgeRuntime#builder}. */
    public static final class Builder {
        private final File releaseDir;
        private final String profile;
        private Ed25519.Key publicKey;
        private boolean allowUnsigned;
        private int threads;
        private BreakerPolicy policy = BreakerPolicy.DEFAULT;
        private Clock clock = Clock.MONOTONIC;
        private final Map<String, EngineFactory> factories = new LinkedHashMap<>();
        private final List<Collector> collectors = new ArrayList<>();

        Builder(File releaseDir, String profile) {
            this.releaseDir = releaseDir;
            this.profile = profile;
        }

        /** The release's Ed25519 public key (see {@link Signatures#publicKeyFromPem}). */
        public Builder publicKey(Ed25519.Key key) {
            this.publicKey = key;
            return this;
        }

        /** Load without a public key and without signature checks (development only). */
        public Builder allowUnsigned() {
            this.allowUnsigned = true;
            return this;
        }

        /** Engine threads; default: the profile's hardware.threads. */
        public Builder threads(int n) {
            this.threads = n;
            return this;
        }

        public Builder breaker(BreakerPolicy p) {
            this.policy = p;
            return this;
        }

        /** The clock for cool-offs and latencies (tests inject a manual one). */
        public Builder clock(Clock c) {
            this.clock = c;
            return this;
        }

        /** Register the runtime for one artifact format; a later one for the same format wins. */
        public Builder engine(EngineFactory f) {
            factories.put(f.format(), f);
            return this;
        }

        public Builder collector(Collector c) {
            collectors.add(c);
            return this;
        }

        public EdgeRuntime build() throws ManifestException {
            return load(this);
        }
    }

    static final class Slot {
        final Manifest.ChainEntry entry;
        final Breaker breaker;
        final Object lock = new Object();
        Engine engine;
        int batch = -1;

        Slot(Manifest.ChainEntry entry, Breaker breaker) {
            this.entry = entry;
            this.breaker = breaker;
        }
    }

    /** Thrown inside predict when an engine's answer breaks the output contract. */
    static final class OutputInvalid extends Exception {
        private static final long serialVersionUID = 1L;

        OutputInvalid(String message) {
            super(message);
        }
    }

    public final Manifest manifest;
    public final String profile;
    private final List<Manifest.TensorSpec> inputs;
    private final List<Manifest.TensorSpec> outputs;
    private final List<Slot> slots;
    private final List<Collector> collectors;
    private final Clock clock;
    private final Object lock = new Object();
    private final Map<List<String>, Long> fallbacks = new TreeMap<>(
            (a, b) -> String.join("\0", a).compareTo(String.join("\0", b)));
    private final Map<String, Long> served = new LinkedHashMap<>();
    private long failedCalls;
    private long observerErrors;

    private EdgeRuntime(Manifest manifest, String profile, List<Slot> slots,
                        List<Collector> collectors, Clock clock) {
        this.manifest = manifest;
        this.profile = profile;
        this.inputs = manifest.inputs();
        this.outputs = manifest.outputs();
        this.slots = slots;
        this.collectors = new ArrayList<>(collectors);
        this.clock = clock;
    }

    public static Builder builder(File releaseDir, String profile) {
        return new Builder(releaseDir, profile);
    }

    // --- loading --------------------------------------------------------------------------------

    private static EdgeRuntime load(Builder o) throws ManifestException {
        // the signature is checked over the bytes read here, before they are parsed
        byte[] bytes = Signatures.readManifestBytes(o.releaseDir);
        Trust trust = new Trust(o.releaseDir, bytes, o.publicKey, o.allowUnsigned);
        Manifest m = Manifest.parse(bytes, new File(o.releaseDir, Manifest.FILE_NAME).toString());
        trust.manifest = m;
        List<Manifest.ChainEntry> chain = m.chain(o.profile);
        Double budget = m.latencyBudgetSeconds(o.profile);
        int threads = o.threads > 0 ? o.threads : m.threads(o.profile);
        String goldenProblem = trust.goldenProblem(o.releaseDir);
        Golden golden = null;
        if (goldenProblem == null) {
            Map<String, Object> g = m.golden();
            try {
                golden = Golden.read(new File(o.releaseDir, (String) g.get("path")),
                        (int) ((Json.Num) g.get("inputs")).longValue(),
                        (int) ((Json.Num) g.get("outputs")).longValue());
            } catch (IOException e) {
                goldenProblem = "golden data cannot be read: " + e.getMessage()
                        + ": the self-test cannot run";
            }
        }
        List<Slot> slots = new ArrayList<>();
        for (Manifest.ChainEntry e : chain) {
            Slot slot = new Slot(e, new Breaker(o.policy, budget, o.clock));
            slots.add(slot);
            String problem = trust.problem(e.target);
            if (problem == null) {
                problem = goldenProblem;
            }
            if (problem == null) {
                problem = loadEngine(slot, o.releaseDir, m, threads, golden, o.factories);
            }
            if (problem != null) {
                slot.breaker.failPermanently(problem);
            }
        }
        return new EdgeRuntime(m, o.profile, slots, o.collectors, o.clock);
    }

    /** Verify and load one engine; returns why it cannot serve, or null. */
    private static String loadEngine(Slot slot, File root, Manifest m, int threads, Golden golden,
                                     Map<String, EngineFactory> factories) {
        Manifest.ChainEntry e = slot.entry;
        if (!("ok".equals(e.status) || "unverified".equals(e.status)) || e.path == null) {
            return "not built (" + e.status + "): " + e.reason;
        }
        File path = new File(root, e.path);
        if (!path.exists()) {  // a file, or a bundle directory
            return "artifact " + e.path + " is missing";
        }
        try {
            if (!Sha256.of(path.toPath()).equals(e.sha256)) {
                return "artifact " + e.path + " does not match its sha256 (corrupted or replaced)";
            }
        } catch (IOException ex) {
            return "artifact " + e.path + " cannot be read: " + ex.getMessage();
        }
        EngineFactory f = factories.get(e.format);
        if (f == null) {
            return "cannot load with the " + e.format + " runtime: no EngineFactory registered for "
                    + "format " + e.format + " (registered: " + String.join(", ", factories.keySet()) + ")";
        }
        Engine engine;
        try {
            engine = f.load(path, threads, m.inputs(), m.outputs());
        } catch (Exception ex) {
            return "cannot load with the " + e.format + " runtime: " + describe(ex);
        }
        slot.engine = engine;
        slot.batch = engine.batch();
        if (golden != null) {
            float[][] got;
            try {
                got = runBatched(engine, golden.inputs.toArray(new float[0][]),
                        (int) golden.inputShapes.get(0)[0], slot.batch);
            } catch (Exception ex) {
                return "self-test failed: " + describe(ex);
            }
            for (int i = 0; i < golden.outputs.size(); i++) {
                float[] want = golden.outputs.get(i);
                float[] g = i < got.length ? got[i] : null;
                if (g == null || g.length != want.length || !finite(g)) {
                    return "self-test failed: output " + i + " has " + (g == null ? "no" : g.length)
                            + " values, expected " + want.length + " / non-finite values";
                }
                double err = 0;
                for (int k = 0; k < g.length; k++) {
                    err = Math.max(err, Math.abs((double) g[k] - (double) want[k]));
                }
                if (err > e.selftestAtol) {
                    return "self-test failed: output " + i + " max abs error " + Format.g(err, 3)
                            + " > tolerance " + Format.g(e.selftestAtol, 3);
                }
            }
        }
        return null;
    }

    // --- calling --------------------------------------------------------------------------------

    /**
     * Outputs for {@code x} (one float array per model input, flattened, batch first) from the
     * first engine that answers validly.
     *
     * @throws AllEnginesFailed when no engine could answer; its reasons say why, per engine
     * @throws IllegalArgumentException when the inputs do not match the model's
     */
    public float[][] predict(float[][] x) {
        int n = batchOf(x);
        double start = clock.seconds();
        List<FallbackEvent> fb = new ArrayList<>();
        Map<String, String> reasons = new LinkedHashMap<>();
        for (Slot slot : slots) {
            boolean usable;
            String why;
            Breaker.State state;
            synchronized (lock) {
                usable = slot.breaker.available();
                why = slot.breaker.reason;
                state = slot.breaker.state;
            }
            if (!usable) {
                fb.add(new FallbackEvent(slot.entry.target, "unavailable", why == null ? "" : why));
                reasons.put(slot.entry.target, state + ": " + why);
                continue;
            }
            double t0 = clock.seconds();
            float[][] outs;
            double took;
            try {
                synchronized (slot.lock) {
                    if (slot.engine == null) {
                        throw new IllegalStateException("the runtime is closed");
                    }
                    outs = runBatched(slot.engine, x, n, slot.batch);
                }
                took = clock.seconds() - t0;
                validate(outs, n);
            } catch (Exception ex) {
                boolean invalid = ex instanceof OutputInvalid;
                String reason = invalid ? ex.getMessage() : describe(ex);
                synchronized (lock) {
                    slot.breaker.failure(reason);
                }
                fb.add(new FallbackEvent(slot.entry.target, invalid ? "invalid_output" : "error", reason));
                reasons.put(slot.entry.target, reason);
                continue;
            }
            synchronized (lock) {
                slot.breaker.success(took);
            }
            record(fb, slot.entry.target);
            notifyCollectors(x, outs, slot.entry.target, clock.seconds() - start, fb);
            return outs;
        }
        record(fb, null);
        notifyCollectors(x, null, null, clock.seconds() - start, fb);
        throw new AllEnginesFailed(reasons);
    }

    private int batchOf(float[][] x) {
        if (x == null || x.length != inputs.size()) {
            throw new IllegalArgumentException("predict: expected " + inputs.size() + " input array(s) ("
                    + names(inputs) + "), got " + (x == null ? "null" : String.valueOf(x.length)));
        }
        int n = -1;
        for (int i = 0; i < x.length; i++) {
            long per = inputs.get(i).perSample();
            if (per <= 0) {
                continue;  // dynamic per-sample shape: the engine checks
            }
            if (x[i].length % per != 0) {
                throw new IllegalArgumentException("predict: input " + inputs.get(i).name + " has "
                        + x[i].length + " values, not a multiple of " + per + " (shape "
                        + Arrays.toString(inputs.get(i).shape) + ")");
            }
            int b = (int) (x[i].length / per);
            if (n >= 0 && b != n) {
                throw new IllegalArgumentException("predict: inputs hold different batch sizes ("
                        + n + " and " + b + ")");
            }
            n = b;
        }
        return n;
    }

    private void validate(float[][] outs, int n) throws OutputInvalid {
        if (outs == null || outs.length != outputs.size()) {
            throw new OutputInvalid((outs == null ? 0 : outs.length) + " outputs, expected " + outputs.size());
        }
        for (int i = 0; i < outs.length; i++) {
            long per = outputs.get(i).perSample();
            if (outs[i] == null) {
                throw new OutputInvalid("output " + i + " is null");
            }
            if (per >= 0 && n >= 0 && outs[i].length != n * per) {
                throw new OutputInvalid("output " + i + " has " + outs[i].length + " values, expected "
                        + n + " x " + per);
            }
            if (!finite(outs[i])) {
                throw new OutputInvalid("output " + i + " contains NaN or Inf");
            }
        }
    }

    /**
     * Run {@code e} over {@code n} samples in chunks of its fixed batch (like edgeyard.data's
     * run_batched): the last chunk is padded by repeating its last sample and the padded rows are
     * dropped from the outputs.
     */
    static float[][] runBatched(Engine e, float[][] x, int n, int batch) throws Exception {
        if (batch <= 0 || n < 0 || n == batch) {
            return e.predict(x);
        }
        List<List<float[]>> parts = new ArrayList<>();
        for (int start = 0; start < n; start += batch) {
            int real = Math.min(batch, n - start);
            float[][] chunk = new float[x.length][];
            for (int i = 0; i < x.length; i++) {
                int per = x[i].length / n;
                chunk[i] = new float[batch * per];
                System.arraycopy(x[i], start * per, chunk[i], 0, real * per);
                for (int p = real; p < batch; p++) {
                    System.arraycopy(x[i], (start + real - 1) * per, chunk[i], p * per, per);
                }
            }
            float[][] out = e.predict(chunk);
            List<float[]> kept = new ArrayList<>();
            for (float[] o : out) {
                int per = o.length / batch;
                kept.add(Arrays.copyOf(o, real * per));
            }
            parts.add(kept);
        }
        float[][] result = new float[parts.get(0).size()][];
        for (int k = 0; k < result.length; k++) {
            int total = 0;
            for (List<float[]> p : parts) {
                total += p.get(k).length;
            }
            result[k] = new float[total];
            int at = 0;
            for (List<float[]> p : parts) {
                System.arraycopy(p.get(k), 0, result[k], at, p.get(k).length);
                at += p.get(k).length;
            }
        }
        return result;
    }

    private void record(List<FallbackEvent> fb, String engine) {
        synchronized (lock) {
            for (FallbackEvent f : fb) {
                fallbacks.merge(Arrays.asList(f.engine, f.kind, reasonKey(f.reason)), 1L, Long::sum);
            }
            if (engine == null) {
                failedCalls++;
            } else {
                served.merge(engine, 1L, Long::sum);
            }
        }
    }

    private void notifyCollectors(float[][] in, float[][] out, String engine, double latency,
                                  List<FallbackEvent> fb) {
        if (collectors.isEmpty()) {
            return;
        }
        List<FallbackEvent> events = fb.isEmpty() ? Collections.emptyList() : Collections.unmodifiableList(fb);
        for (Collector c : collectors) {
            try {
                c.onCall(in, out, engine, latency, events);
            } catch (RuntimeException ex) {
                synchronized (lock) {
                    observerErrors++;
                }
            }
        }
    }

    // --- reporting ------------------------------------------------------------------------------

    /** Engines in chain order with their state, reason, counts and latency. */
    public List<EngineStatus> status() {
        double now = clock.seconds();
        synchronized (lock) {
            List<EngineStatus> out = new ArrayList<>();
            for (Slot s : slots) {
                out.add(new EngineStatus(s, now));
            }
            return out;
        }
    }

    public List<String> healthyEngines() {
        synchronized (lock) {
            List<String> out = new ArrayList<>();
            for (Slot s : slots) {
                if (s.breaker.state == Breaker.State.HEALTHY) {
                    out.add(s.entry.target);
                }
            }
            return out;
        }
    }

    /** Calls served, by engine. */
    public Map<String, Long> servedBy() {
        synchronized (lock) {
            return new LinkedHashMap<>(served);
        }
    }

    /** Fallbacks counted by [engine, kind, reason with numbers replaced by #]. */
    public Map<List<String>, Long> fallbacks() {
        synchronized (lock) {
            return new LinkedHashMap<>(fallbacks);
        }
    }

    public long failedCalls() {
        synchronized (lock) {
            return failedCalls;
        }
    }

    public long observerErrors() {
        synchronized (lock) {
            return observerErrors;
        }
    }

    @Override
    public void close() {
        for (Slot s : slots) {
            synchronized (s.lock) {
                if (s.engine != null) {
                    s.engine.close();
                    s.engine = null;
                }
                synchronized (lock) {
                    if (s.breaker.state != Breaker.State.FAILED) {
                        s.breaker.failPermanently("runtime closed");
                    }
                }
            }
        }
    }

    // --- helpers --------------------------------------------------------------------------------

    /** Group fallback reasons: numbers (latencies, counts) vary from call to call. */
    static String reasonKey(String reason) {
        String k = reason.replaceAll("\\d+(\\.\\d+)?", "#");
        return k.length() > 200 ? k.substring(0, 200) : k;
    }

    static String describe(Throwable ex) {
        return ex.getClass().getSimpleName() + ": " + ex.getMessage();
    }

    private static boolean finite(float[] a) {
        double sum = 0;  // NaN and Inf propagate through a sum: one pass, no branch per element
        for (float v : a) {
            sum += v;
        }
        return !Double.isNaN(sum) && !Double.isInfinite(sum);
    }

    private static String names(List<Manifest.TensorSpec> specs) {
        List<String> n = new ArrayList<>();
        for (Manifest.TensorSpec s : specs) {
            n.add(s.name);
        }
        return String.join(", ", n);
    }

    /** Signature checks for one release, done once (edgeyard/runtime/runtime.py's _Trust). */
    private static final class Trust {
        private Manifest manifest;
        private Signatures.Verdict verdict;
        private String blanket;

        Trust(File dir, byte[] manifestBytes, Ed25519.Key key, boolean allowUnsigned) {
            if (key == null) {
                if (!allowUnsigned) {
                    blanket = "no public key given: pass publicKey(...) to verify the release, "
                            + "or allowUnsigned() to load it without signature checks";
                }
                return;
            }
            byte[] sig;
            try {
                sig = Files.readAllBytes(new File(dir, Signatures.SIGNATURE_FILE).toPath());
            } catch (NoSuchFileException e) {
                sig = null;
            } catch (IOException e) {
                blanket = "signature check failed: cannot read " + Signatures.SIGNATURE_FILE + ": "
                        + e.getMessage();
                return;
            }
            verdict = Signatures.verifyBytes(manifestBytes, sig, key);
            if (!verdict.signed) {
                blanket = verdict.reason;
            }
        }

        String problem(String artifactId) {
            if (blanket != null) {
                return blanket;
            }
            if (verdict == null || verdict.artifactTrusted(artifactId)) {
                return null;
            }
            if (verdict.wrongKey || verdict.deprecated == null) {
                return "signature check failed: " + verdict.reason;
            }
            return "signature check failed: " + verdict.reason
                    + ", and this artifact's own entry does not verify either (tampered)";
        }

        String goldenProblem(File root) {
            Map<String, Object> g = manifest.golden();
            File p = new File(root, (String) g.get("path"));
            if (!p.isFile()) {
                return "golden data " + g.get("path") + " is missing: the self-test cannot run";
            }
            try {
                if (!Sha256.of(p.toPath()).equals(g.get("sha256"))) {
                    return "golden data " + g.get("path")
                            + " does not match its sha256: the self-test cannot run";
                }
            } catch (IOException e) {
                return "golden data " + g.get("path") + " cannot be read: " + e.getMessage();
            }
            return null;
        }
    }
}
