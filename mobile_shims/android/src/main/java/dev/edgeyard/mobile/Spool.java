package dev.edgeyard.mobile;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.StandardCopyOption;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Closed telemetry windows on disk until the server acknowledges them (the Python collector's
 * {@code telemetry/spool.py}, for OTLP/JSON windows).
 *
 * <p>One file per window, {@code <19-digit sequence>-<upload id>.json}, written to a
 * {@code .tmp-} file, flushed to the disk, then renamed: a window that reached the spool
 * survives a crash, and only whole windows are ever pending. The upload id is inside the window
 * (its {@code edgeyard.upload_id} attribute) and in the name, so every retry sends the same id
 * and the server stores the window once. Bounded in count and bytes: past either bound the
 * oldest windows are deleted and counted ({@link #dropped}, {@link #takeDropped}, persisted in
 * {@code dropped.count}). Windows the server refuses for good (a 4xx other than 408 and 429)
 * are moved to {@code rejected/} (the last {@link #KEEP_REJECTED} are kept for a look) and
 * counted. Thread-safe; one process per directory.
 */
public final class Spool {
    public static final long DEFAULT_MAX_BYTES = 16L * 1024 * 1024;
    public static final int DEFAULT_MAX_FILES = 1000;
    static final int KEEP_REJECTED = 8;
    static final String SUFFIX = ".json";
    private static final SecureRandom RANDOM = new SecureRandom();

    private final File dir;
    private final File rejectedDir;
    private final long maxBytes;
    private final int maxFiles;
    private long lastSeq;
    private long dropped;
    private long droppedTaken;
    private long rejected;

    public Spool(File dir) throws IOException {
        this(dir, DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES);
    }

    public Spool(File dir, long maxBytes, int maxFiles) throws IOException {
        if (maxBytes <= 0 || maxFiles <= 0) {
            throw new IllegalArgumentException("spool bounds must be positive (got " + maxBytes
                    + " bytes, " + maxFiles + " files)");
        }
        this.dir = dir;
        this.rejectedDir = new File(dir, "rejected");
        this.maxBytes = maxBytes;
        this.maxFiles = maxFiles;
        Files.createDirectories(dir.toPath());
        for (File f : list(dir, ".tmp-")) {  // a write a crash interrupted: never a window
            delete(f);
        }
        String d = readText(new File(dir, "dropped.count"));
        dropped = d == null ? 0 : Long.parseLong(d.trim().isEmpty() ? "0" : d.trim());
        for (File f : pending()) {
            lastSeq = Math.max(lastSeq, sequenceOf(f));
        }
    }

    public File directory() {
        return dir;
    }

    /** Spool one window (OTLP/JSON) under its upload id; returns its file. */
    public synchronized File put(String uploadId, String otlpJson) throws IOException {
        if (uploadId == null || uploadId.isEmpty() || uploadId.contains("/")
                || uploadId.contains(File.separator)) {
            throw new IllegalArgumentException("upload id " + uploadId + " is not a file name part");
        }
        lastSeq = Math.max(lastSeq + 1, System.currentTimeMillis() * 1_000_000L);
        File f = new File(dir, String.format("%019d-%s%s", lastSeq, uploadId, SUFFIX));
        atomicWrite(f, otlpJson.getBytes(StandardCharsets.UTF_8));
        enforceBounds();
        return f;
    }

    /** Committed windows, oldest first. */
    public synchronized List<File> pending() {
        List<File> out = new ArrayList<>();
        for (File f : list(dir, null)) {
            if (f.getName().endsWith(SUFFIX) && !f.getName().startsWith(".")) {
                out.add(f);
            }
        }
        return out;
    }

    /** A window's text, or null when it is gone (removed since it was listed). */
    public String read(File window) throws IOException {
        return readText(window);
    }

    /** Delete windows the server acknowledged. */
    public synchronized void remove(File window) {
        delete(window);
    }

    /** Move a window the server refused for good to {@code rejected/} and count it. */
    public synchronized void reject(File window) throws IOException {
        Files.createDirectories(rejectedDir.toPath());
        try {
            Files.move(window.toPath(), new File(rejectedDir, window.getName()).toPath(),
                    StandardCopyOption.REPLACE_EXISTING);
        } catch (NoSuchFileException e) {
            return;
        }
        rejected++;
        List<File> kept = list(rejectedDir, null);
        for (int i = 0; i + KEEP_REJECTED < kept.size(); i++) {
            delete(kept.get(i));
        }
    }

    /** The upload id a spooled window was written under. */
    public static String uploadIdOf(File window) {
        String n = window.getName();
        return n.substring(n.indexOf('-') + 1, n.length() - SUFFIX.length());
    }

    /** Windows dropped by the bounds, ever (persisted). */
    public synchronized long dropped() {
        return dropped;
    }

    /** Windows dropped since the last call: report them in the next window (Python does). */
    public synchronized long takeDropped() {
        long n = dropped - droppedTaken;
        droppedTaken = dropped;
        return n;
    }

    /** Windows moved to {@code rejected/} by this instance. */
    public synchronized long rejected() {
        return rejected;
    }

    public synchronized long bytes() {
        long n = 0;
        for (File f : pending()) {
            n += f.length();
        }
        return n;
    }

    /**
     * Python's {@code pseudonymous_id}: sha256(salt + ":" + deviceId), first 32 hex digits; the
     * salt is random per install and never leaves the device ({@code dir/salt}); without an
     * app-given id a random install id is used ({@code dir/install_id}). Never a hardware id.
     */
    public static String pseudonymousId(File dir, String deviceId) throws IOException {
        Files.createDirectories(dir.toPath());
        String salt = readOrCreate(new File(dir, "salt"));
        String id = deviceId != null ? deviceId : readOrCreate(new File(dir, "install_id"));
        return Sha256.of((salt + ":" + id).getBytes(StandardCharsets.UTF_8)).substring(0, 32);
    }

    private static synchronized String readOrCreate(File f) throws IOException {
        String v = readText(f);
        if (v == null) {
            byte[] b = new byte[16];
            RANDOM.nextBytes(b);
            atomicWrite(f, Sha256.hex(b).getBytes(StandardCharsets.UTF_8));
            v = readText(f);
        }
        return v.trim();
    }

    private void enforceBounds() throws IOException {
        List<File> files = pending();
        long bytes = 0;
        for (File f : files) {
            bytes += f.length();
        }
        int drop = 0;
        while (drop < files.size() && (files.size() - drop > maxFiles || bytes > maxBytes)) {
            bytes -= files.get(drop).length();
            delete(files.get(drop));
            drop++;
        }
        if (drop > 0) {
            dropped += drop;
            atomicWrite(new File(dir, "dropped.count"),
                    Long.toString(dropped).getBytes(StandardCharsets.UTF_8));
        }
    }

    private static long sequenceOf(File f) {
        String n = f.getName();
        try {
            return Long.parseLong(n.substring(0, n.indexOf('-')));
        } catch (RuntimeException e) {
            return 0;
        }
    }

    /** Temp file in the same directory, flushed to the disk, renamed over {@code f}. */
    static void atomicWrite(File f, byte[] data) throws IOException {
        File tmp = new File(f.getParentFile(), ".tmp-" + Long.toHexString(RANDOM.nextLong())
                + "-" + f.getName());
        try {
            try (FileOutputStream out = new FileOutputStream(tmp)) {
                out.write(data);
                out.getFD().sync();
            }
            try {
                Files.move(tmp.toPath(), f.toPath(), StandardCopyOption.ATOMIC_MOVE,
                        StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp.toPath(), f.toPath(), StandardCopyOption.REPLACE_EXISTING);
            }
        } finally {
            delete(tmp);
        }
    }

    private static String readText(File f) throws IOException {
        try {
            return new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            return null;
        }
    }

    private static List<File> list(File d, String prefix) {
        File[] all = d.listFiles();
        List<File> out = new ArrayList<>();
        if (all == null) {
            return out;
        }
        Arrays.sort(all);
        for (File f : all) {
            if (f.isFile() && (prefix == null || f.getName().startsWith(prefix))) {
                out.add(f);
            }
        }
        return out;
    }

    private static void delete(File f) {
        try {
            Files.deleteIfExists(f.toPath());
        } catch (IOException e) {
            // a file we cannot delete is retried by the next bound check or upload
        }
    }
}
