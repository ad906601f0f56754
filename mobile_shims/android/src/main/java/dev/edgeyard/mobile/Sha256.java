package dev.edgeyard.mobile;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * sha256 as edgeyard records it (edgeyard/_hashing.py): a file's bytes, or for a bundle
 * directory (.mlpackage) each file's relative POSIX path, a NUL byte and its bytes, files in
 * Python's Path order (component by component).
 */
public final class Sha256 {
    private Sha256() {}

    public static String of(Path p) throws IOException {
        MessageDigest h = digest();
        if (Files.isDirectory(p)) {
            List<Path> files = new ArrayList<>();
            try (Stream<Path> s = Files.walk(p)) {
                s.filter(Files::isRegularFile).forEach(files::add);
            }
            files.sort(Sha256::comparePathParts);
            for (Path f : files) {
                String rel = p.relativize(f).toString().replace('\\', '/');
                h.update(rel.getBytes(StandardCharsets.UTF_8));
                h.update((byte) 0);
                update(h, f);
            }
        } else {
            update(h, p);
        }
        return hex(h.digest());
    }

    public static String of(byte[] data) {
        return hex(digest().digest(data));
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder(b.length * 2);
        for (byte x : b) {
            sb.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
        }
        return sb.toString();
    }

    private static void update(MessageDigest h, Path f) throws IOException {
        byte[] buf = new byte[1 << 16];
        try (InputStream in = Files.newInputStream(f)) {
            int n;
            while ((n = in.read(buf)) > 0) {
                h.update(buf, 0, n);
            }
        }
    }

    // Python sorts Paths by their parts: "a/b" before "a-c", unlike a plain string sort
    private static int comparePathParts(Path a, Path b) {
        int n = Math.min(a.getNameCount(), b.getNameCount());
        for (int i = 0; i < n; i++) {
            int c = Json.CODE_POINT_ORDER.compare(a.getName(i).toString(), b.getName(i).toString());
            if (c != 0) {
                return c;
            }
        }
        return Integer.compare(a.getNameCount(), b.getNameCount());
    }

    private static MessageDigest digest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("this JVM has no SHA-256", e);
        }
    }
}
