package dev.edgeyard.mobile;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.PublicKey;
import java.util.Map;
import org.junit.Test;

/** Against signatures made by edgeyard/signing.py. */
public class SignaturesTest {
    private static Map<String, Object> manifest(File dir) throws Exception {
        return Manifest.load(dir).root;
    }

    @Test
    public void rebuildsTheBytesPythonSigned() throws Exception {
        Map<String, Object> m = manifest(Fixtures.release());
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
    public void verifiesWithTheReleaseKey() throws Exception {
        PublicKey key = Fixtures.releaseKey();
        Signatures.Verdict v = Signatures.verify(manifest(Fixtures.release()), key);
        assertTrue(v.reason, v.manifestOk);
        assertNull(v.reason);
        assertEquals(3, v.artifactOk.size());  // the skipped Core ML target has no file to sign
        assertTrue(v.artifactOk.values().stream().allMatch(ok -> ok));
        assertEquals(16, Signatures.keyId(key).length());
        assertEquals(Signatures.keyId(key), ((Map<?, ?>) manifest(Fixtures.release()).get("signature")).get("key_id"));
    }

    @Test
    public void rawKeyHasTheSameId() throws Exception {
        PublicKey key = Fixtures.releaseKey();
        byte[] der = key.getEncoded();
        byte[] raw = java.util.Arrays.copyOfRange(der, der.length - 32, der.length);
        assertEquals(Signatures.keyId(key), Signatures.keyId(Signatures.publicKeyFromRaw(raw)));
    }

    @Test
    public void wrongKeyIsReportedAsSuch() throws Exception {
        Signatures.Verdict v = Signatures.verify(manifest(Fixtures.release()), Fixtures.key("edgeyard.otherPublicKey"));
        assertFalse(v.manifestOk);
        assertTrue(v.reason, v.reason.endsWith("(wrong key)"));
        assertFalse(v.artifactTrusted("onnx-fp32"));
    }

    @Test
    public void anEditedManifestStillTrustsUntouchedArtifacts() throws Exception {
        File dir = Fixtures.copy();
        Fixtures.editManifest(dir, "\"max_latency_p90_ms\": 5.0", "\"max_latency_p90_ms\": 500.0");
        Fixtures.editManifest(dir, "\"path\": \"artifacts/m-tflite-int8.tflite\"",
                "\"path\": \"artifacts/evil.tflite\"");
        Signatures.Verdict v = Signatures.verify(manifest(dir), Fixtures.releaseKey());
        assertFalse(v.manifestOk);
        assertTrue(v.reason, v.reason.contains("release.json edited"));
        assertFalse(v.artifactTrusted("tflite-int8"));
        assertTrue(v.artifactTrusted("executorch-fp32"));
        assertTrue(v.artifactTrusted("onnx-fp32"));
    }

    @Test
    public void unsignedRelease() throws Exception {
        File dir = Fixtures.copy();
        Map<String, Object> m = manifest(dir);
        m.put("signature", null);
        Signatures.Verdict v = Signatures.verify(m, Fixtures.releaseKey());
        assertFalse(v.manifestOk);
        assertEquals("the release is not signed", v.reason);
    }
}
