package dev.edgeyard.mobile;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Ed25519 checks of a release's signature, as edgeyard/signing.py writes it.
 *
 * <p>The signature is detached: {@code release.json.sig} next to {@code release.json}, one line
 * of ASCII, {@code ed25519 <key_id> <base64 signature>\n}, the signature taken over the exact
 * bytes of release.json. {@link #verifyRelease} reads those bytes, checks the signature over
 * them with {@link Ed25519} (pure Java: every Android level), and only then may the caller parse
 * them: nothing here rebuilds JSON. Bytes that verify trust every artifact they list (each still
 * checked against its sha256 when loaded); bytes that do not (an edit, even a reordering of
 * keys; another key; no .sig) trust nothing.
 *
 * <p>Deprecated, read for one more version: the old format, a {@code signature} field inside
 * release.json over the canonical JSON of the manifest ({@link Json#canonical}) plus one
 * signature per artifact statement, so that an edited manifest could still trust the artifacts
 * whose own entry verifies. {@link #verifyRelease} falls back to it when there is no .sig and
 * says so in {@link Verdict#deprecated}: re-sign such a release with {@code edgeyard sign}.
 *
 * <p>Keys are what {@code edgeyard keys generate} writes: a PEM "PUBLIC KEY" (X.509
 * SubjectPublicKeyInfo), or the 32 raw bytes.
 */
public final class Signatures {
    public static final String ALGORITHM = "ed25519";
    public static final String SIGNATURE_FILE = "release.json.sig";
    public static final String DEPRECATED = "release.json carries an embedded `signature` (the old "
            + "format, read for one more version): re-sign the release with `edgeyard sign RELEASE "
            + "--key KEY.pem` (it writes release.json.sig)";
    private static final int MAX_SIGNATURE_FILE = 1024;
    // SubjectPublicKeyInfo prefix of an Ed25519 key (OID 1.3.101.112) before the 32 raw bytes
    private static final byte[] SPKI_PREFIX = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
        0x03, 0x21, 0x00};

    private Signatures() {}

    /** The outcome of a check; never thrown, so the caller decides what a failure means. */
    public static final class Verdict {
        public final boolean manifestOk;
        public final String reason;  // why the signature does not hold; null when it does
        /** Old format only: per-artifact statement verdicts (empty in the detached format). */
        public final Map<String, Boolean> artifactOk;
        public final boolean wrongKey;  // signed, but with another key than the one given
        public final boolean signed;  // false: no .sig and no embedded signature
        public final String deprecated;  // non-null: the old embedded format was read

        Verdict(boolean manifestOk, String reason, Map<String, Boolean> artifactOk, boolean wrongKey,
                boolean signed, String deprecated) {
            this.manifestOk = manifestOk;
            this.reason = reason;
            this.artifactOk = Collections.unmodifiableMap(artifactOk);
            this.wrongKey = wrongKey;
            this.signed = signed;
            this.deprecated = deprecated;
        }

        static Verdict fail(String reason) {
            return new Verdict(false, reason, new LinkedHashMap<>(), false, true, null);
        }

        public boolean artifactTrusted(String artifactId) {
            return manifestOk || artifactOk.getOrDefault(artifactId, false);
        }
    }

    /** A public key from PEM text ("-----BEGIN PUBLIC KEY-----" ...). */
    public static Ed25519.Key publicKeyFromPem(String pem) {
        String b64 = pem.replaceAll("-----(BEGIN|END) PUBLIC KEY-----", "").replaceAll("\\s", "");
        byte[] der;
        try {
            der = Base64.getDecoder().decode(b64);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("not a PEM public key: " + e.getMessage());
        }
        boolean prefixOk = der.length == SPKI_PREFIX.length + 32;
        for (int i = 0; prefixOk && i < SPKI_PREFIX.length; i++) {
            prefixOk = der[i] == SPKI_PREFIX[i];
        }
        if (!prefixOk) {
            throw new IllegalArgumentException("not an Ed25519 PEM public key (SubjectPublicKeyInfo "
                    + "of OID 1.3.101.112 expected)");
        }
        return new Ed25519.Key(java.util.Arrays.copyOfRange(der, SPKI_PREFIX.length, der.length));
    }

    /** A public key from its 32 raw bytes (e.g. compiled into the app). */
    public static Ed25519.Key publicKeyFromRaw(byte[] raw) {
        return new Ed25519.Key(raw);
    }

    /** First 16 hex digits of the sha256 of the raw key: the {@code key_id} edgeyard records. */
    public static String keyId(Ed25519.Key key) {
        return Sha256.of(key.raw()).substring(0, 16);
    }

    /** {@code dir/release.json}'s bytes (or the file's, given release.json itself). */
    public static byte[] readManifestBytes(File dirOrFile) throws ManifestException {
        File f = dirOrFile.isDirectory() ? new File(dirOrFile, Manifest.FILE_NAME) : dirOrFile;
        try {
            return Files.readAllBytes(f.toPath());
        } catch (IOException e) {
            throw new ManifestException("cannot read " + f + ": " + e.getMessage()
                    + " (a release directory holds release.json)");
        }
    }

    /**
     * Check the release in {@code dir}: release.json.sig over release.json's bytes, or (no
     * .sig, deprecated) the signature embedded in release.json.
     */
    public static Verdict verifyRelease(File dir, Ed25519.Key key) {
        byte[] manifest;
        try {
            manifest = Files.readAllBytes(new File(dir, Manifest.FILE_NAME).toPath());
        } catch (IOException e) {
            return new Verdict(false, "cannot read release.json: " + e.getMessage(),
                    new LinkedHashMap<>(), false, false, null);
        }
        byte[] sig;
        try {
            sig = Files.readAllBytes(new File(dir, SIGNATURE_FILE).toPath());
        } catch (NoSuchFileException e) {
            sig = null;
        } catch (IOException e) {
            return Verdict.fail("cannot read " + SIGNATURE_FILE + ": " + e.getMessage());
        }
        return verifyBytes(manifest, sig, key);
    }

    /**
     * Check release.json's {@code manifest} bytes against the contents of its .sig
     * ({@code signature}; null: there is none) with {@code key}. Parse the bytes only once this
     * says {@code manifestOk}.
     */
    public static Verdict verifyBytes(byte[] manifest, byte[] signature, Ed25519.Key key) {
        if (signature == null) {
            Object parsed;
            try {
                parsed = Json.parse(manifest);
            } catch (Json.ParseException e) {
                parsed = null;
            }
            if (parsed instanceof Map && ((Map<?, ?>) parsed).get("signature") instanceof Map
                    && !((Map<?, ?>) ((Map<?, ?>) parsed).get("signature")).isEmpty()) {
                @SuppressWarnings("unchecked")
                Map<String, Object> m = (Map<String, Object>) parsed;
                return verifyLegacy(m, key);
            }
            return new Verdict(false, "the release is not signed (no " + SIGNATURE_FILE
                    + "): sign it with `edgeyard sign RELEASE --key KEY.pem`", new LinkedHashMap<>(),
                    false, false, null);
        }
        if (signature.length > MAX_SIGNATURE_FILE) {
            return Verdict.fail(SIGNATURE_FILE + " is " + signature.length + " bytes: not a signature file");
        }
        String text = new String(signature, StandardCharsets.US_ASCII);
        if (text.endsWith("\n")) {
            text = text.substring(0, text.length() - 1);
        }
        if (text.endsWith("\r")) {
            text = text.substring(0, text.length() - 1);
        }
        String[] fields = text.split(" ", -1);
        if (fields.length != 3 || !fields[0].matches("[!-~]+") || !fields[1].matches("[!-~]+")
                || !fields[2].matches("[A-Za-z0-9+/=]+")) {
            return Verdict.fail(SIGNATURE_FILE + " is not one line 'ed25519 <key_id> <base64>'");
        }
        if (!ALGORITHM.equals(fields[0])) {
            return Verdict.fail("unsupported signature algorithm '" + fields[0] + "'");
        }
        String kid = keyId(key);
        if (!kid.equals(fields[1])) {
            return new Verdict(false, "signed with key " + fields[1] + ", but the key given is " + kid
                    + " (wrong key)", new LinkedHashMap<>(), true, true, null);
        }
        byte[] raw;
        try {
            raw = Base64.getDecoder().decode(fields[2]);
        } catch (IllegalArgumentException e) {
            return Verdict.fail(SIGNATURE_FILE + ": the signature is not base64");
        }
        if (!key.verify(manifest, raw)) {
            return Verdict.fail("the signature does not verify over release.json's bytes "
                    + "(release.json edited or replaced after signing)");
        }
        return new Verdict(true, null, new LinkedHashMap<>(), false, true, null);
    }

    // --- the old embedded format (deprecated: read for one more version) -----------------------

    /** Old format: the bytes {@code signature.manifest} signs. */
    @Deprecated
    public static byte[] manifestBody(Map<String, Object> manifest) {
        Map<String, Object> body = new LinkedHashMap<>(manifest);
        body.remove("signature");
        return Json.canonical(body);
    }

    /** Old format: the bytes {@code signature.artifacts[artifactId]} signs. */
    @Deprecated
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

    /**
     * Old format: check the signatures embedded in a parsed manifest. The verdict carries
     * {@link #DEPRECATED}.
     */
    @Deprecated
    public static Verdict verifyLegacy(Map<String, Object> manifest, Ed25519.Key key) {
        Map<String, Boolean> arts = new LinkedHashMap<>();
        Object s = manifest.get("signature");
        if (!(s instanceof Map) || ((Map<?, ?>) s).isEmpty()) {
            return new Verdict(false, "the release is not signed", arts, false, false, DEPRECATED);
        }
        Map<?, ?> sig = (Map<?, ?>) s;
        if (!ALGORITHM.equals(sig.get("algorithm"))) {
            return new Verdict(false, "unsupported signature algorithm " + sig.get("algorithm"), arts,
                    false, true, DEPRECATED);
        }
        String kid = keyId(key);
        if (!kid.equals(sig.get("key_id"))) {
            return new Verdict(false, "signed with key " + sig.get("key_id") + ", but the key given is "
                    + kid + " (wrong key)", arts, true, true, DEPRECATED);
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
                : "the manifest signature does not verify (release.json edited)", arts, false, true,
                DEPRECATED);
    }

    private static boolean ok(Ed25519.Key key, Object signatureB64, byte[] data) {
        if (!(signatureB64 instanceof String)) {
            return false;
        }
        try {
            return key.verify(data, Base64.getDecoder().decode(
                    ((String) signatureB64).getBytes(StandardCharsets.US_ASCII)));
        } catch (IllegalArgumentException e) {
            return false;
        }
    }
}
