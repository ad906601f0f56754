package dev.edgeyard.mobile;

import static org.junit.Assume.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

/**
 * What the tests share: the release written and signed by the Python test, in the current
 * format and the old one (tests/shims/test_jvm_wrapper.py passes their paths as system
 * properties), the shared signature vectors, a manual clock and
 * fake engines computing the release's model, y = x @ W.
 */
final class Fixtures {
    private Fixtures() {}

    // the hand-made release's model: y = x @ W, x: [n, 3], y: [n, 2]
    static final float[][] W = {{1, 2}, {3, 4}, {5, 6}};
    private static final AtomicInteger COPIES = new AtomicInteger();

    static File property(String name) {
        String v = System.getProperty(name);
        assumeTrue("system property " + name + " is not set: run through tests/shims/test_jvm_wrapper.py",
                v != null);
        return new File(v);
    }

    static File release() {
        return property("edgeyard.release");
    }

    /** The same release signed the old way (deprecated): a {@code signature} field inside. */
    static File legacyRelease() {
        return property("edgeyard.legacyRelease");
    }

    /** mobile_shims/testdata/signatures: the vectors shared with Python and Swift. */
    static File signatureVectors() {
        return property("edgeyard.signatureVectors");
    }

    static Ed25519.Key key(String property) throws IOException {
        return Signatures.publicKeyFromPem(new String(Files.readAllBytes(property(property).toPath()),
                StandardCharsets.US_ASCII));
    }

    static Ed25519.Key releaseKey() throws IOException {
        return key("edgeyard.publicKey");
    }

    /** A private copy of the signed release that a test may damage. */
    static File copy() throws IOException {
        return copy(release());
    }

    /** A private copy of the release in {@code from}. */
    static File copy(File from) throws IOException {
        Path src = from.toPath();
        Path dest = property("edgeyard.scratch").toPath().resolve("copy" + COPIES.incrementAndGet());
        try (Stream<Path> s = Files.walk(src)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                Path to = dest.resolve(src.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(to);
                } else {
                    Files.copy(p, to, StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
        return dest.toFile();
    }

    /** Replace {@code old} by {@code replacement} in the copy's release.json (exactly once). */
    static void editManifest(File dir, String old, String replacement) throws IOException {
        Path p = dir.toPath().resolve("release.json");
        String text = new String(Files.readAllBytes(p), StandardCharsets.UTF_8);
        int at = text.indexOf(old);
        if (at < 0 || text.indexOf(old, at + 1) >= 0) {
            throw new AssertionError("expected exactly one '" + old + "' in release.json");
        }
        Files.write(p, text.replace(old, replacement).getBytes(StandardCharsets.UTF_8));
    }

    static float[] linear(float[] x) {
        int n = x.length / 3;
        float[] y = new float[n * 2];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < 2; j++) {
                float s = 0;
                for (int k = 0; k < 3; k++) {
                    s += x[i * 3 + k] * W[k][j];
                }
                y[i * 2 + j] = s;
            }
        }
        return y;
    }

    /** Seconds that only move when a test says so. */
    static final class ManualClock implements Clock {
        double now = 1000.0;

        @Override
        public double seconds() {
            return now;
        }

        void advance(double s) {
            now += s;
        }
    }

    /** What a fake engine does on a call (after the self-test, which it always passes). */
    enum Mode { OK, THROW, NAN, WRONG_SIZE }

    /**
     * A fake runtime for one format. Its engines compute the model with a fixed batch of 1 (as
     * the release's artifacts declare) and advance the clock by {@code latency} per call; tests
     * switch {@code mode} to make them fail.
     */
    static final class FakeFactory implements EngineFactory {
        final String format;
        final ManualClock clock;
        volatile Mode mode = Mode.OK;
        volatile double latency = 0.001;
        volatile boolean failLoad;
        volatile float selftestOffset;  // added to every output: a wrong model fails the self-test
        final List<String> calls = new ArrayList<>();
        int closed;

        FakeFactory(String format, ManualClock clock) {
            this.format = format;
            this.clock = clock;
        }

        @Override
        public String format() {
            return format;
        }

        @Override
        public Engine load(File artifact, int threads, List<Manifest.TensorSpec> inputs,
                           List<Manifest.TensorSpec> outputs) throws Exception {
            if (failLoad) {
                throw new IOException("cannot map " + artifact.getName());
            }
            if (!artifact.isFile() || threads != 2 || inputs.size() != 1 || outputs.size() != 1) {
                throw new AssertionError("unexpected load arguments");
            }
            return new Engine() {
                @Override
                public float[][] predict(float[][] in) throws Exception {
                    if (in[0].length != 3) {
                        throw new IllegalArgumentException("batch 1 expected, got " + in[0].length / 3);
                    }
                    synchronized (calls) {
                        calls.add(format);
                    }
                    if (clock != null) {
                        clock.advance(latency);
                    }
                    float[] y = linear(in[0]);
                    for (int i = 0; i < y.length; i++) {
                        y[i] += selftestOffset;
                    }
                    switch (mode) {
                        case THROW: throw new IllegalStateException(format + " delegate crashed");
                        case NAN: y[0] = Float.NaN; return new float[][] {y};
                        case WRONG_SIZE: return new float[][] {new float[5]};
                        default: return new float[][] {y};
                    }
                }

                @Override
                public int batch() {
                    return 1;
                }

                @Override
                public void close() {
                    closed++;
                }
            };
        }
    }
}
