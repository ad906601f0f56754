package dev.edgeyard.mobile;

import java.math.BigInteger;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;

/**
 * An Ed25519 signature verifier (RFC 8032 section 5.1.7), in plain Java: {@link BigInteger}
 * arithmetic and the JDK's SHA-512 ({@link MessageDigest}), nothing else. The JCA's "Ed25519"
 * exists only from Java 15 and Android API 33; this works on every JVM and Android level.
 *
 * <p>Verification only (a device never signs), on public data only, so the arithmetic need not
 * run in constant time. It follows the RFC's reference code: the public key and R must decode
 * to curve points (y &lt; p, x recoverable), S must be canonical (S &lt; L), and the check is
 * [S]B == R + [k]A with k = SHA-512(R || A || M) mod L (the cofactorless equation, as OpenSSL,
 * which signs edgeyard's releases through Python's {@code cryptography}, checks it). One
 * verification per release load.
 */
public final class Ed25519 {
    private Ed25519() {}

    public static final int PUBLIC_KEY_BYTES = 32;
    public static final int SIGNATURE_BYTES = 64;

    private static final BigInteger P = BigInteger.ONE.shiftLeft(255).subtract(BigInteger.valueOf(19));
    private static final BigInteger L = BigInteger.ONE.shiftLeft(252)
            .add(new BigInteger("27742317777372353535851937790883648493"));
    private static final BigInteger TWO = BigInteger.valueOf(2);
    // d = -121665 / 121666 mod p
    private static final BigInteger D = BigInteger.valueOf(-121665)
            .multiply(BigInteger.valueOf(121666).modInverse(P)).mod(P);
    private static final BigInteger SQRT_M1 = TWO.modPow(P.subtract(BigInteger.ONE).shiftRight(2), P);
    private static final BigInteger[] B = basePoint();
    private static final BigInteger[] IDENTITY = {BigInteger.ZERO, BigInteger.ONE, BigInteger.ONE,
        BigInteger.ZERO};

    /** An Ed25519 public key: its 32 raw bytes (RFC 8032 encoding). */
    public static final class Key {
        private final byte[] raw;

        /** @throws IllegalArgumentException when {@code raw} is not 32 bytes */
        public Key(byte[] raw) {
            if (raw == null || raw.length != PUBLIC_KEY_BYTES) {
                throw new IllegalArgumentException("an Ed25519 public key is 32 bytes, got "
                        + (raw == null ? "null" : raw.length));
            }
            this.raw = raw.clone();
        }

        public byte[] raw() {
            return raw.clone();
        }

        /** True when {@code signature} is a valid signature of {@code message} by this key. */
        public boolean verify(byte[] message, byte[] signature) {
            return Ed25519.verify(raw, message, signature);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Key && Arrays.equals(raw, ((Key) o).raw);
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(raw);
        }
    }

    /**
     * True when {@code signature} (64 bytes) is a valid Ed25519 signature of {@code message}
     * by {@code publicKey} (32 bytes). Never throws on bad input: a wrong length, a key or R
     * that is not a curve point, or a non-canonical S is simply not valid.
     */
    public static boolean verify(byte[] publicKey, byte[] message, byte[] signature) {
        if (publicKey == null || message == null || signature == null
                || publicKey.length != PUBLIC_KEY_BYTES || signature.length != SIGNATURE_BYTES) {
            return false;
        }
        BigInteger[] a = decode(publicKey);
        if (a == null) {
            return false;
        }
        byte[] rBytes = Arrays.copyOfRange(signature, 0, 32);
        BigInteger[] r = decode(rBytes);
        if (r == null) {
            return false;
        }
        BigInteger s = littleEndian(Arrays.copyOfRange(signature, 32, 64));
        if (s.compareTo(L) >= 0) {
            return false;  // non-canonical S: a malleable signature
        }
        MessageDigest sha512;
        try {
            sha512 = MessageDigest.getInstance("SHA-512");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-512 is missing from this JVM", e);
        }
        sha512.update(rBytes);
        sha512.update(publicKey);
        sha512.update(message);
        BigInteger k = littleEndian(sha512.digest()).mod(L);
        return equal(multiply(s, B), add(r, multiply(k, a)));
    }

    // --- the curve, in extended coordinates (X, Y, Z, T): x = X/Z, y = Y/Z, x*y = T/Z ----------

    private static BigInteger[] add(BigInteger[] p, BigInteger[] q) {
        BigInteger a = p[1].subtract(p[0]).multiply(q[1].subtract(q[0])).mod(P);
        BigInteger b = p[1].add(p[0]).multiply(q[1].add(q[0])).mod(P);
        BigInteger c = TWO.multiply(p[3]).multiply(q[3]).multiply(D).mod(P);
        BigInteger d = TWO.multiply(p[2]).multiply(q[2]).mod(P);
        BigInteger e = b.subtract(a);
        BigInteger f = d.subtract(c);
        BigInteger g = d.add(c);
        BigInteger h = b.add(a);
        return new BigInteger[] {e.multiply(f).mod(P), g.multiply(h).mod(P), f.multiply(g).mod(P),
            e.multiply(h).mod(P)};
    }

    private static BigInteger[] multiply(BigInteger s, BigInteger[] p) {
        BigInteger[] q = IDENTITY;
        BigInteger[] addend = p;
        for (int i = 0; i < s.bitLength(); i++) {
            if (s.testBit(i)) {
                q = add(q, addend);
            }
            addend = add(addend, addend);
        }
        return q;
    }

    private static boolean equal(BigInteger[] p, BigInteger[] q) {
        // x1/z1 == x2/z2 and y1/z1 == y2/z2, without inverses
        return p[0].multiply(q[2]).subtract(q[0].multiply(p[2])).mod(P).signum() == 0
                && p[1].multiply(q[2]).subtract(q[1].multiply(p[2])).mod(P).signum() == 0;
    }

    /** x from y and the sign bit (RFC 8032 5.1.3), or null when there is none. */
    private static BigInteger recoverX(BigInteger y, int sign) {
        if (y.compareTo(P) >= 0) {
            return null;
        }
        BigInteger y2 = y.multiply(y);
        BigInteger x2 = y2.subtract(BigInteger.ONE).multiply(D.multiply(y2).add(BigInteger.ONE).modInverse(P)).mod(P);
        if (x2.signum() == 0) {
            return sign == 0 ? BigInteger.ZERO : null;
        }
        BigInteger x = x2.modPow(P.add(BigInteger.valueOf(3)).shiftRight(3), P);
        if (x.multiply(x).subtract(x2).mod(P).signum() != 0) {
            x = x.multiply(SQRT_M1).mod(P);
        }
        if (x.multiply(x).subtract(x2).mod(P).signum() != 0) {
            return null;
        }
        if (x.testBit(0) != (sign == 1)) {
            x = P.subtract(x);
        }
        return x;
    }

    private static BigInteger[] decode(byte[] s) {
        BigInteger y = littleEndian(s);
        int sign = y.testBit(255) ? 1 : 0;
        y = y.clearBit(255);
        BigInteger x = recoverX(y, sign);
        if (x == null) {
            return null;
        }
        return new BigInteger[] {x, y, BigInteger.ONE, x.multiply(y).mod(P)};
    }

    private static BigInteger[] basePoint() {
        BigInteger y = BigInteger.valueOf(4).multiply(BigInteger.valueOf(5).modInverse(P)).mod(P);
        BigInteger x = recoverX(y, 0);
        return new BigInteger[] {x, y, BigInteger.ONE, x.multiply(y).mod(P)};
    }

    private static BigInteger littleEndian(byte[] b) {
        byte[] be = new byte[b.length];
        for (int i = 0; i < b.length; i++) {
            be[i] = b[b.length - 1 - i];
        }
        return new BigInteger(1, be);
    }
}
