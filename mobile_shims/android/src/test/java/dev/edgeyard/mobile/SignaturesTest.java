package dev.edgeyard.mobile;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Map;
import org.junit.Test;

/** Against releases signed by edgeyard/signing.py (tests/shims/test_jvm_wrapper.py). */
public class SignaturesTest {
    private static String sigLine(File dir) throws Exception {
        return new String(Files.readAllBytes(new File(dir, Signatures.SIGNATURE_FILE).toPath()),
                StandardCharsets.US_ASCII);
    }

    @Test
    public void verifiesTheFileBytesWithTheReleaseKey() throws Exception {
        Ed25519.Key key = Fixtures.releaseKey();
        Signatures.Verdict v = Signatures.verifyRelease(Fixtures.release(), key);
        assertTrue(v.reason, v.manifestOk);
        assertNull(v.reason);
        assertNull(v.deprecated);
        assertTrue(v.artifactOk.isEmpty());  // one signature covers everything
        assertTrue(v.artifactTrusted("onnx-fp32"));
        assertEquals(16, Signatures.keyId(key).length());
        assertTrue(sigLine(Fixtures.release()).startsWith("ed25519 " + Signatures.keyId(key) + " "));
        // the new format needs nothing of JSON: release.json has no signature field
        assertFalse(Manifest.load(Fixtures.release()).root.containsKey("signature"));
    }

    @Test
    public void rawKeyHasTheSameId() throws Exception {
        Ed25519.Key key = Fixtures.releaseKey();
        assertEquals(Signatures.keyId(key), Signatures.keyId(Signatures.publicKeyFromRaw(key.raw())));
    }

    @Test
    public void tamperedBytesTrustNothing() throws Exception {
        File dir = Fixtures.copy();
        Fixtures.editManifest(dir, "\"max_latency_p90_ms\": 5.0", "\"max_latency_p90_ms\": 500.0");
        Signatures.Verdict v = Signatures.verifyRelease(dir, Fixtures.releaseKey());
        assertFalse(v.manifestOk);
        assertTrue(v.signed);
        assertFalse(v.wrongKey);
        assertTrue(v.reason, v.reason.contains("release.json edited"));
        for (String id : new String[] {"tflite-int8", "executorch-fp32", "onnx-fp32"}) {
            assertFalse(id, v.artifactTrusted(id));
        }
    }

    @Test
    public void reorderedJsonFailsEvenThoughItsContentIsTheSame() throws Exception {
        File dir = Fixtures.copy();
        byte[] before = Files.readAllBytes(new File(dir, Manifest.FILE_NAME).toPath());
        Fixtures.editManifest(dir, "\"schema\": \"edgeyard.release\",\n  \"schema_version\": 1,",
                "\"schema_version\": 1,\n  \"schema\": \"edgeyard.release\",");
        byte[] after = Files.readAllBytes(new File(dir, Manifest.FILE_NAME).toPath());
        assertArrayEquals(Json.canonical(Json.parse(before)), Json.canonical(Json.parse(after)));
        Signatures.Verdict v = Signatures.verifyRelease(dir, Fixtures.releaseKey());
        assertFalse(v.manifestOk);
        assertTrue(v.reason, v.reason.contains("does not verify over release.json's bytes"));
    }

    @Test
    public void wrongKeyIsReportedAsSuch() throws Exception {
        Signatures.Verdict v = Signatures.verifyRelease(Fixtures.release(), Fixtures.key("edgeyard.otherPublicKey"));
        assertFalse(v.manifestOk);
        assertTrue(v.wrongKey);
        assertTrue(v.reason, v.reason.endsWith("(wrong key)"));
        assertFalse(v.artifactTrusted("onnx-fp32"));
    }

    @Test
    public void missingSigFileIsUnsigned() throws Exception {
        File dir = Fixtures.copy();
        Files.delete(new File(dir, Signatures.SIGNATURE_FILE).toPath());
        Signatures.Verdict v = Signatures.verifyRelease(dir, Fixtures.releaseKey());
        assertFalse(v.manifestOk);
        assertFalse(v.signed);
        assertTrue(v.reason, v.reason.startsWith("the release is not signed (no release.json.sig)"));
    }

    @Test
    public void malformedOrAlteredSigFilesFail() throws Exception {
        Ed25519.Key key = Fixtures.releaseKey();
        byte[] manifest = Signatures.readManifestBytes(Fixtures.release());
        String line = sigLine(Fixtures.release());
        String[] f = line.trim().split(" ");
        assertTrue(Signatures.verifyBytes(manifest, line.getBytes(StandardCharsets.US_ASCII), key).manifestOk);
        for (String bad : new String[] {"", "ed25519", f[0] + " " + f[1], "rsa " + f[1] + " " + f[2],
            f[0] + " " + f[1] + " " + f[2] + " extra", f[0] + " " + f[1] + " not*base64",
            f[0] + " " + f[1] + " " + f[2].substring(4)}) {
            Signatures.Verdict v = Signatures.verifyBytes(manifest, bad.getBytes(StandardCharsets.US_ASCII), key);
            assertFalse(bad, v.manifestOk);
            assertTrue(bad, v.signed);
        }
    }

    // --- the old format (deprecated, read for one more version) --------------------------------

    @Test
    @SuppressWarnings("deprecation")
    public void oldFormatRebuildsTheBytesPythonSigned() throws Exception {
        Map<String, Object> m = Manifest.load(Fixtures.legacyRelease()).root;
        File expected = Fixtures.property("edgeyard.expected");
        assertEquals(new String(Files.readAllBytes(new File(expected, "manifest_body.bin").toPath()),
                        StandardCharsets.UTF_8),
                new String(Signatures.manifestBody(m), StandardCharsets.UTF_8));
        for (String id : new String[] {"tflite-int8", "executorch-fp32", "onnx-fp32"}) {
            assertArrayEquals(id, Files.readAllBytes(new File(expected, "statement_" + id + ".bin").toPath()),
                    Signatures.artifactStatement(m, id));
        }
    }

    @Test
    public void oldFormatStillVerifiesWithADeprecationNote() throws Exception {
        Signatures.Verdict v = Signatures.verifyRelease(Fixtures.legacyRelease(), Fixtures.releaseKey());
        assertTrue(v.reason, v.manifestOk);
        assertNotNull(v.deprecated);
        assertTrue(v.deprecated, v.deprecated.contains("edgeyard sign"));
        assertEquals(3, v.artifactOk.size());  // the skipped Core ML target has no file to sign
        assertTrue(v.artifactOk.values().stream().allMatch(ok -> ok));
    }

    @Test
    public void anEditedOldFormatManifestStillTrustsUntouchedArtifacts() throws Exception {
        File dir = Fixtures.copy(Fixtures.legacyRelease());
        Fixtures.editManifest(dir, "\"max_latency_p90_ms\": 5.0", "\"max_latency_p90_ms\": 500.0");
        Fixtures.editManifest(dir, "\"path\": \"artifacts/m-tflite-int8.tflite\"",
                "\"path\": \"artifacts/evil.tflite\"");
        Signatures.Verdict v = Signatures.verifyRelease(dir, Fixtures.releaseKey());
        assertFalse(v.manifestOk);
        assertNotNull(v.deprecated);
        assertTrue(v.reason, v.reason.contains("release.json edited"));
        assertFalse(v.artifactTrusted("tflite-int8"));
        assertTrue(v.artifactTrusted("executorch-fp32"));
        assertTrue(v.artifactTrusted("onnx-fp32"));
    }

    @Test
    public void oldFormatWrongKey() throws Exception {
        Signatures.Verdict v = Signatures.verifyRelease(Fixtures.legacyRelease(),
                Fixtures.key("edgeyard.otherPublicKey"));
        assertFalse(v.manifestOk);
        assertTrue(v.wrongKey);
        assertTrue(v.reason, v.reason.endsWith("(wrong key)"));
    }
}
