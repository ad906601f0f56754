package dev.edgeyard.mobile;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.Before;
import org.junit.Test;

/** The fallback runtime over the release signed by the Python test, with fake engines. */
public class EdgeRuntimeTest {
    private static final List<String> CHAIN = List.of("tflite-int8", "executorch-fp32", "onnx-fp32",
            "coreml-fp16");
    private static final float[][] X = {{1, 2, 3}};
    private static final float[] Y = {22, 28};

    private final Fixtures.ManualClock clock = new Fixtures.ManualClock();
    private Fixtures.FakeFactory tflite;
    private Fixtures.FakeFactory executorch;
    private Fixtures.FakeFactory onnx;
    private final List<Object[]> calls = new ArrayList<>();

    @Before
    public void setUp() {
        tflite = new Fixtures.FakeFactory("tflite", clock);
        executorch = new Fixtures.FakeFactory("executorch", clock);
        onnx = new Fixtures.FakeFactory("onnx", clock);
    }

    private EdgeRuntime.Builder builder(File dir) throws Exception {
        return EdgeRuntime.builder(dir, "phone").publicKey(Fixtures.releaseKey()).clock(clock)
                .engine(tflite).engine(executorch).engine(onnx)
                .collector((in, out, engine, latency, fb) -> calls.add(new Object[] {out, engine, latency, fb}));
    }

    private static EdgeRuntime.EngineStatus status(EdgeRuntime rt, String target) {
        return rt.status().stream().filter(s -> s.target.equals(target)).findFirst().orElseThrow();
    }

    private Object[] lastCall() {
        return calls.get(calls.size() - 1);
    }

    @SuppressWarnings("unchecked")
    private List<FallbackEvent> lastFallbacks() {
        return (List<FallbackEvent>) lastCall()[3];
    }

    @Test
    public void loadsTheProfilesChainInOrderAndServesFromThePrimary() throws Exception {
        try (EdgeRuntime rt = builder(Fixtures.release()).build()) {
            List<String> targets = new ArrayList<>();
            rt.status().forEach(s -> targets.add(s.target));
            assertEquals(CHAIN, targets);
            assertEquals(List.of("tflite-int8", "executorch-fp32", "onnx-fp32"), rt.healthyEngines());
            EdgeRuntime.EngineStatus coreml = status(rt, "coreml-fp16");
            assertEquals("failed", coreml.state);
            assertTrue(coreml.reason, coreml.reason.startsWith(
                    "not built (skipped): no Core ML on linux:\n\tcoremltools \u00abmissing\u00bb"));
            assertArrayEquals(Y, rt.predict(X)[0], 0);
            assertEquals("tflite-int8", lastCall()[1]);
            assertTrue(lastFallbacks().isEmpty());
            assertEquals(0.001, (double) lastCall()[2], 1e-9);
            assertEquals(Long.valueOf(1), rt.servedBy().get("tflite-int8"));
            assertEquals("m\u00fc", rt.manifest.name());
        }
    }

    @Test
    public void aBatchLargerThanTheEnginesIsSplitAndPadded() throws Exception {
        try (EdgeRuntime rt = builder(Fixtures.release()).build()) {
            float[][] y = rt.predict(new float[][] {{1, 2, 3, 0, 0, 1, 1, 0, 0}});
            assertArrayEquals(new float[] {22, 28, 5, 6, 1, 2}, y[0], 0);
        }
    }

    @Test
    public void aCorruptedArtifactIsSkippedWithItsReason() throws Exception {
        File dir = Fixtures.copy();
        Files.write(dir.toPath().resolve("artifacts/m-tflite-int8.tflite"), new byte[] {1, 2, 3});
        try (EdgeRuntime rt = builder(dir).build()) {
            EdgeRuntime.EngineStatus s = status(rt, "tflite-int8");
            assertEquals("failed", s.state);
            assertEquals("artifact artifacts/m-tflite-int8.tflite does not match its sha256 "
                    + "(corrupted or replaced)", s.reason);
            assertArrayEquals(Y, rt.predict(X)[0], 0);
            assertEquals("executorch-fp32", lastCall()[1]);
            assertEquals("unavailable", lastFallbacks().get(0).kind);
        }
    }

    @Test
    public void aMissingArtifactOrGoldenFileIsReported() throws Exception {
        File dir = Fixtures.copy();
        Files.delete(dir.toPath().resolve("artifacts/m-executorch-fp32.pte"));
        try (EdgeRuntime rt = builder(dir).build()) {
            assertEquals("artifact artifacts/m-executorch-fp32.pte is missing",
                    status(rt, "executorch-fp32").reason);
        }
        Files.delete(dir.toPath().resolve("golden.npz"));
        try (EdgeRuntime rt = builder(dir).build()) {
            assertEquals("golden data golden.npz is missing: the self-test cannot run",
                    status(rt, "onnx-fp32").reason);
            assertTrue(rt.healthyEngines().isEmpty());
        }
    }

    @Test
    public void theWrongKeyLoadsNothing() throws Exception {
        Ed25519.Key other = Fixtures.key("edgeyard.otherPublicKey");
        try (EdgeRuntime rt = builder(Fixtures.release()).publicKey(other).build()) {
            String reason = status(rt, "onnx-fp32").reason;
            assertTrue(reason, reason.startsWith("signature check failed: signed with key "));
            assertTrue(reason, reason.endsWith("(wrong key)"));
            AllEnginesFailed e = assertThrows(AllEnginesFailed.class, () -> rt.predict(X));
            assertEquals(CHAIN, new ArrayList<>(e.reasons.keySet()));
            assertEquals(1, rt.failedCalls());
            assertNull(lastCall()[0]);
            assertNull(lastCall()[1]);
        }
    }

    @Test
    public void anEditedManifestLoadsNothing() throws Exception {
        File dir = Fixtures.copy();
        Fixtures.editManifest(dir, "\"max_latency_p90_ms\": 5.0", "\"max_latency_p90_ms\": 500.0");
        try (EdgeRuntime rt = builder(dir).build()) {
            for (String target : CHAIN.subList(0, 3)) {
                assertEquals("signature check failed: the signature does not verify over release.json's "
                        + "bytes (release.json edited or replaced after signing)", status(rt, target).reason);
            }
            assertTrue(rt.healthyEngines().isEmpty());
        }
    }

    @Test
    public void withoutTheSigFileTheReleaseIsUnsigned() throws Exception {
        File dir = Fixtures.copy();
        Files.delete(new File(dir, Signatures.SIGNATURE_FILE).toPath());
        try (EdgeRuntime rt = builder(dir).build()) {
            assertTrue(status(rt, "onnx-fp32").reason,
                    status(rt, "onnx-fp32").reason.startsWith("the release is not signed"));
            assertTrue(rt.healthyEngines().isEmpty());
        }
    }

    @Test
    public void anEditedOldFormatManifestLoadsOnlyTheUntouchedEntries() throws Exception {
        File dir = Fixtures.copy(Fixtures.legacyRelease());
        // point the tflite entry at another file with a matching hash: its own statement breaks
        File evil = new File(dir, "artifacts/evil.tflite");
        Files.write(evil.toPath(), "evil".getBytes("UTF-8"));
        Fixtures.editManifest(dir, "\"path\": \"artifacts/m-tflite-int8.tflite\"", "\"path\": \"artifacts/evil.tflite\"");
        Fixtures.editManifest(dir, Manifest.load(dir).chain("phone").get(0).sha256, Sha256.of(evil.toPath()));
        try (EdgeRuntime rt = builder(dir).build()) {
            String reason = status(rt, "tflite-int8").reason;
            assertEquals("signature check failed: the manifest signature does not verify (release.json "
                    + "edited), and this artifact's own entry does not verify either (tampered)", reason);
            assertEquals(List.of("executorch-fp32", "onnx-fp32"), rt.healthyEngines());
        }
    }

    @Test
    public void withoutAKeyOnlyAllowUnsignedLoads() throws Exception {
        EdgeRuntime.Builder b = EdgeRuntime.builder(Fixtures.release(), "phone").clock(clock)
                .engine(tflite).engine(executorch).engine(onnx);
        try (EdgeRuntime rt = b.build()) {
            assertTrue(status(rt, "tflite-int8").reason.startsWith("no public key given"));
        }
        try (EdgeRuntime rt = b.allowUnsigned().build()) {
            assertEquals(3, rt.healthyEngines().size());
        }
    }

    @Test
    public void anEngineThatThrowsFallsBackThenOpensAndHalfOpens() throws Exception {
        try (EdgeRuntime rt = builder(Fixtures.release()).build()) {
            tflite.mode = Fixtures.Mode.THROW;
            for (int i = 0; i < 3; i++) {
                assertArrayEquals(Y, rt.predict(X)[0], 0);
                assertEquals("executorch-fp32", lastCall()[1]);
                FallbackEvent f = lastFallbacks().get(0);
                assertEquals("tflite-int8", f.engine);
                assertEquals("error", f.kind);
                assertEquals("IllegalStateException: tflite delegate crashed", f.reason);
            }
            EdgeRuntime.EngineStatus s = status(rt, "tflite-int8");
            assertEquals("demoted", s.state);
            assertEquals("3 consecutive failure(s), last: IllegalStateException: tflite delegate crashed",
                    s.reason);
            int before = tflite.calls.size();
            rt.predict(X);  // open: tflite is not even tried
            assertEquals(before, tflite.calls.size());
            assertEquals("unavailable", lastFallbacks().get(0).kind);
            clock.advance(30);
            assertEquals("demoted (retry due)", status(rt, "tflite-int8").state);
            tflite.mode = Fixtures.Mode.OK;
            rt.predict(X);  // half-open: one trial call, which works
            assertEquals("tflite-int8", lastCall()[1]);
            assertEquals("healthy", status(rt, "tflite-int8").state);
            assertEquals(Long.valueOf(3), rt.fallbacks().get(
                    Arrays.asList("tflite-int8", "error", "IllegalStateException: tflite delegate crashed")));
        }
    }

    @Test
    public void invalidOutputsFallBack() throws Exception {
        try (EdgeRuntime rt = builder(Fixtures.release()).build()) {
            tflite.mode = Fixtures.Mode.NAN;
            executorch.mode = Fixtures.Mode.WRONG_SIZE;
            assertArrayEquals(Y, rt.predict(X)[0], 0);
            assertEquals("onnx-fp32", lastCall()[1]);
            List<FallbackEvent> fb = lastFallbacks();
            assertEquals("invalid_output", fb.get(0).kind);
            assertEquals("output 0 contains NaN or Inf", fb.get(0).reason);
            assertEquals("output 0 has 5 values, expected 1 x 2", fb.get(1).reason);
        }
    }

    @Test
    public void overTheLatencyBudgetDemotes() throws Exception {
        try (EdgeRuntime rt = builder(Fixtures.release()).build()) {
            tflite.latency = 0.010;  // the profile's budget is max_latency_p90_ms = 5.0
            for (int i = 0; i < 20; i++) {
                rt.predict(X);
                assertEquals("tflite-int8", lastCall()[1]);
            }
            EdgeRuntime.EngineStatus s = status(rt, "tflite-int8");
            assertEquals("demoted", s.state);
            assertEquals("recent p90 latency 10.000 ms > budget 5 ms", s.reason);
            rt.predict(X);
            assertEquals("executorch-fp32", lastCall()[1]);
        }
    }

    @Test
    public void theSelfTestRejectsAWrongEngine() throws Exception {
        tflite.selftestOffset = 1e-3f;
        onnx.selftestOffset = 0.01f;
        try (EdgeRuntime rt = builder(Fixtures.release()).build()) {
            assertEquals("self-test failed: output 0 max abs error 0.001 > tolerance 1e-05",
                    status(rt, "tflite-int8").reason);
            assertEquals("self-test failed: output 0 max abs error 0.01 > tolerance 0.0001",
                    status(rt, "onnx-fp32").reason);
            assertEquals(List.of("executorch-fp32"), rt.healthyEngines());
        }
    }

    @Test
    public void aFormatWithoutARuntimeOrALoadErrorIsReported() throws Exception {
        executorch.failLoad = true;
        try (EdgeRuntime rt = EdgeRuntime.builder(Fixtures.release(), "phone")
                .publicKey(Fixtures.releaseKey()).engine(executorch).engine(onnx).build()) {
            assertEquals("cannot load with the tflite runtime: no EngineFactory registered for format "
                    + "tflite (registered: executorch, onnx)", status(rt, "tflite-int8").reason);
            assertEquals("cannot load with the executorch runtime: IOException: cannot map "
                    + "m-executorch-fp32.pte", status(rt, "executorch-fp32").reason);
            assertEquals(List.of("onnx-fp32"), rt.healthyEngines());
        }
    }

    @Test
    public void collectorErrorsAreCountedNotThrown() throws Exception {
        try (EdgeRuntime rt = builder(Fixtures.release())
                .collector((in, out, engine, latency, fb) -> {
                    throw new IllegalStateException("collector bug");
                }).build()) {
            rt.predict(X);
            assertEquals(1, rt.observerErrors());
            assertEquals(1, calls.size());
        }
    }

    @Test
    public void closeReleasesTheEngines() throws Exception {
        EdgeRuntime rt = builder(Fixtures.release()).build();
        rt.close();
        assertEquals(List.of(1, 1, 1), List.of(tflite.closed, executorch.closed, onnx.closed));
        assertEquals("runtime closed", status(rt, "onnx-fp32").reason);
        assertThrows(AllEnginesFailed.class, () -> rt.predict(X));
    }

    @Test
    public void badProfilesAndInputsAreExplained() throws Exception {
        try {
            builder(Fixtures.release()).build().close();
            EdgeRuntime.builder(Fixtures.release(), "watch").allowUnsigned().build();
            fail("expected ManifestException");
        } catch (ManifestException e) {
            assertEquals("release m\u00fc 1.0 has no profile watch; it has phone, desk", e.getMessage());
        }
        try (EdgeRuntime rt = builder(Fixtures.release()).build()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> rt.predict(new float[][] {{1, 2}}));
            assertTrue(e.getMessage(), e.getMessage().contains("not a multiple of 3"));
        }
    }
}
