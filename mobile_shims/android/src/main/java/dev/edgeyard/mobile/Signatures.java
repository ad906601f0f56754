package dev.edgeyard.mobile;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Ed25519 checks of a release's signatures, byte for byte as edgeyard/signing.py signs them.
 *
 * <p>{@code signature.manifest} signs the canonical JSON of the manifest without its
 * {@code signature} field; {@code signature.artifacts[id]} signs a small statement per artifact
 * (release identity, the artifact's path / sha256 / size / format / backend / precision /
 * selftest / status, the golden data and the model I/O), so that after an edit to release.json
 * each engine can still be judged on its own entry.
 *
 * <p>Keys are what {@code edgeyard keys generate} writes: a PEM "PUBLIC KEY" (X.509
 * SubjectPublicKeyInfo). Needs a JCA provider with Ed25519 (Java 15+).
 */
public final class Signatures {
    public static final String ALGORITHM = "ed25519";
    // SubjectPublicKeyInfo prefix of an Ed25519 key (OID 1.3.101.112) before the 32 raw bytes
    private static final byte[] SPKI_PREFIX = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
        0x03, 0x21, 0x00};

    private Signatures() {}

    /** The outcome of {@link #verify}; never thrown, so each engine can be judged on its own. */
    public static final class Verdict {
        public final boolean manifestOk;
        public final String reason;  // why the manifest signature does not hold; null when it does
        public final Map<String, Boolean> artifactOk;

        Verdict(boolean manifestOk, String reason, Map<String, Boolean> artifactOk) {
            this.manifestOk = manifestOk;
            this.reason = reason;
            this.artifactOk = Collections.unmodifiableMap(artifactOk);
        }

        public boolean artifactTrusted(String artifactId) {
            return manifestOk || artifactOk.getOrDefault(artifactId, false);
        }
    }

    /** A public key from PEM text ("-----BEGIN PUBLIC KEY-----" ...). */
    public static PublicKey publicKeyFromPem(String pem) throws GeneralSecurityException {
        String b64 = pem.replaceAll("-----(BEGIN|END) PUBLIC KEY-----", "").replaceAll("\\s", "");
        byte[] der;
        try {
            der = Base64.getDecoder().decode(b64);
        } catch (IllegalArgumentException e) {
            throw new GeneralSecurityException("not a PEM public key: " + e.getMessage());
        }
        return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der));
    }

    /** A public key from its 32 raw bytes (e.g. compiled into the app). */
    public static PublicKey publicKeyFromRaw(byte[] raw) throws GeneralSecurityException {
        if (raw.length != 32) {
            throw new GeneralSecurityException("an Ed25519 public key is 32 bytes, got " + raw.length);
        }
        byte[] der = new byte[SPKI_PREFIX.length + 32];
        System.arraycopy(SPKI_PREFIX, 0, der, 0, SPKI_PREFIX.length);
        System.arraycopy(raw, 0, der, SPKI_PREFIX.length, 32);
        return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der));
    }

    /** First 16 hex digits of the sha256 of the raw key: the {@code key_id} edgeyard records. */
    public static String keyId(PublicKey key) {
        byte[] der = key.getEncoded();
        byte[] raw = new byte[32];
        System.arraycopy(der, der.length - 32, raw, 0, 32);
        return Sha256.of(raw).substring(0, 16);
    }

    /** The bytes {@code signature.manifest} signs. */
    public static byte[] manifestBody(Map<String, Object> manifest) {
        Map<String, Object> body = new LinkedHashMap<>(manifest);
        body.remove("signature");
        return Json.canonical(body);
    }

    /** The bytes {@code signature.artifacts[artifactId]} signs. */
    public static byte[] artifactStatement(Map<String, Object> manifest, String artifactId) {
        Map<String, Object> model = Manifest.obj(manifest, "model");
        Map<String, Object> a = Manifest.obj(Manifest.obj(manifest, "artifacts"), artifactId);
        Map<String, Object> release = new LinkedHashMap<>();
        for (String k : new String[] {"name", "version", "source_sha256"}) {
            release.put(k, model.get(k));
        }
        Map<String, Object> artifact = new LinkedHashMap<>();
        for (String k : new String[] {"path", "sha256", "size_bytes", "format", "backend",
            "precision", "selftest", "status"}) {
            artifact.put(k, a.get(k));  // a missing field signs as null, like dict.get
        }
        Map<String, Object> io = new LinkedHashMap<>();
        io.put("inputs", model.get("inputs"));
        io.put("outputs", model.get("outputs"));
        Map<String, Object> st = new LinkedHashMap<>();
        st.put("release", release);
        st.put("artifact_id", artifactId);
        st.put("artifact", artifact);
        st.put("golden", manifest.get("golden"));
        st.put("model_io", io);
        return Json.canonical(st);
    }

    /** Check the manifest's signatures against {@code key}; a bad signature is a verdict. */
    public static Verdict verify(Map<String, Object> manifest, PublicKey key) {
        Map<String, Boolean> arts = new LinkedHashMap<>();
        Object s = manifest.get("signature");
        if (!(s instanceof Map) || ((Map<?, ?>) s).isEmpty()) {
            return new Verdict(false, "the release is not signed", arts);
        }
        Map<?, ?> sig = (Map<?, ?>) s;
        if (!ALGORITHM.equals(sig.get("algorithm"))) {
            return new Verdict(false, "unsupported signature algorithm " + sig.get("algorithm"), arts);
        }
        String kid = keyId(key);
        if (!kid.equals(sig.get("key_id"))) {
            return new Verdict(false, "signed with key " + sig.get("key_id") + ", but the key given is "
                    + kid + " (wrong key)", arts);
        }
        boolean manifestOk = ok(key, sig.get("manifest"), manifestBody(manifest));
        Object artifacts = manifest.get("artifacts");
        if (sig.get("artifacts") instanceof Map) {
            for (Map.Entry<?, ?> e : ((Map<?, ?>) sig.get("artifacts")).entrySet()) {
                String id = (String) e.getKey();
                boolean known = artifacts instanceof Map && ((Map<?, ?>) artifacts).containsKey(id);
                arts.put(id, known && ok(key, e.getValue(), artifactStatement(manifest, id)));
            }
        }
        return new Verdict(manifestOk, manifestOk ? null
                : "the manifest signature does not verify (release.json edited)", arts);
    }

    private static boolean ok(PublicKey key, Object signatureB64, byte[] data) {
        if (!(signatureB64 instanceof String)) {
            return false;
        }
        try {
            Signature v = Signature.getInstance("Ed25519");
            v.initVerify(key);
            v.update(data);
            return v.verify(Base64.getDecoder().decode(
                    ((String) signatureB64).getBytes(StandardCharsets.US_ASCII)));
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            return false;
        }
    }
}
