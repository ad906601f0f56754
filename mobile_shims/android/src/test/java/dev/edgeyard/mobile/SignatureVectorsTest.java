package dev.edgeyard.mobile;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;
import org.junit.Test;

/** mobile_shims/testdata/signatures: the vectors Python (and Swift) check too. */
public class SignatureVectorsTest {
    @Test
    public void everyCaseHasItsExpectedVerdict() throws Exception {
        File root = Fixtures.signatureVectors();
        Ed25519.Key key = Signatures.publicKeyFromPem(new String(
                Files.readAllBytes(new File(root, "public_key.pem").toPath()), StandardCharsets.US_ASCII));
        String hex = new String(Files.readAllBytes(new File(root, "public_key.hex").toPath()),
                StandardCharsets.US_ASCII).trim();
        assertEquals(Signatures.keyId(key), Signatures.keyId(Signatures.publicKeyFromRaw(unhex(hex))));
        List<String> lines = Files.readAllLines(new File(root, "cases.txt").toPath(), StandardCharsets.UTF_8);
        int n = 0;
        for (String line : lines) {
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            String[] f = line.split(" ");
            String name = f[0];
            Signatures.Verdict v = Signatures.verifyRelease(new File(root, name), key);
            switch (f[1]) {
                case "valid":
                    assertTrue(name + ": " + v.reason, v.manifestOk);
                    assertNull(name, v.deprecated);
                    break;
                case "tampered":
                case "reordered":
                    assertFalse(name, v.manifestOk);
                    assertTrue(name, v.signed && !v.wrongKey);
                    break;
                case "wrong-key":
                    assertFalse(name, v.manifestOk);
                    assertTrue(name, v.wrongKey);
                    break;
                case "unsigned":
                    assertFalse(name, v.manifestOk);
                    assertFalse(name, v.signed);
                    break;
                case "legacy":
                    assertTrue(name + ": " + v.reason, v.manifestOk);
                    assertNotNull(name, v.deprecated);
                    break;
                default:
                    fail("unknown expected verdict " + f[1] + " in cases.txt");
            }
            n++;
        }
        assertEquals(6, n);
    }

    private static byte[] unhex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
