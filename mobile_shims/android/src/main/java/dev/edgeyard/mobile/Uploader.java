package dev.edgeyard.mobile;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.Random;
import java.util.zip.GZIPOutputStream;

/**
 * Sends spooled windows to the ingestion endpoint ({@code <server>/v1/metrics}), as the Python
 * collector's uploader does: one window per POST, gzip ({@code Content-Encoding: gzip},
 * {@code Content-Type: application/json}, {@code Authorization: Bearer <ingest key>}); a window
 * leaves the spool only after a 2xx; a 4xx other than 408 and 429 will never be accepted, so
 * the window is moved to the spool's {@code rejected/} and counted, not retried; anything else
 * (5xx, 408, 429, no network) is retried with exponential backoff and jitter
 * ({@code base * 2^(attempt-1)}, capped, times a uniform factor in [0.5, 1)), waiting at least
 * what a {@code Retry-After} header asks (seconds or an HTTP date). The upload id travels inside
 * the window, so a retry of a window the server did store is dropped there as a duplicate.
 *
 * <p>{@link HttpURLConnection} only (no OkHttp). Call {@link #uploadOnce} from the app's own
 * scheduler (e.g. WorkManager with a network constraint), or {@link #start} a daemon thread.
 * Never call it on the inference thread.
 */
public final class Uploader implements AutoCloseable {
    private final Spool spool;
    private final URL endpoint;
    private final String ingestKey;
    private long backoffBaseMs = 1000;
    private long backoffMaxMs = 300_000;
    private int timeoutMs = 10_000;
    private Random random = new Random();
    private int attempt;
    private Thread thread;
    private volatile boolean stopping;

    private long attempts;
    private long uploaded;
    private long rejectedCount;
    private int lastStatus;
    private String lastRetryAfter;

    /** @param ingestKey an ingest key of the server ({@code edgeyard keys}); null: none sent */
    public Uploader(Spool spool, URL endpoint, String ingestKey) {
        this.spool = spool;
        this.endpoint = endpoint;
        this.ingestKey = ingestKey;
    }

    /** Backoff base and cap (defaults 1 s and 300 s, the Python collector's). */
    public synchronized Uploader backoff(long baseMs, long maxMs) {
        this.backoffBaseMs = baseMs;
        this.backoffMaxMs = maxMs;
        return this;
    }

    /** Connect and read timeout per request (default 10 s). */
    public synchronized Uploader timeoutMs(int ms) {
        this.timeoutMs = ms;
        return this;
    }

    /** The jitter's source (tests fix it). */
    public synchronized Uploader random(Random r) {
        this.random = r;
        return this;
    }

    /**
     * Try to send the oldest spooled window. Returns -1 when the spool is empty, 0 to go on at
     * once (sent, or refused for good), or the milliseconds to wait before trying again.
     */
    public synchronized long uploadOnce() throws IOException {
        List<File> pending = spool.pending();
        if (pending.isEmpty()) {
            attempt = 0;
            return -1;
        }
        File window = pending.get(0);
        String text = spool.read(window);
        if (text == null) {  // removed since it was listed
            return 0;
        }
        byte[] body = gzip(text.getBytes(StandardCharsets.UTF_8));
        attempts++;
        int status = -1;
        String retryAfter = null;
        HttpURLConnection c = null;
        try {
            c = (HttpURLConnection) endpoint.openConnection();
            c.setRequestMethod("POST");
            c.setDoOutput(true);
            c.setConnectTimeout(timeoutMs);
            c.setReadTimeout(timeoutMs);
            c.setFixedLengthStreamingMode(body.length);
            c.setRequestProperty("Content-Type", "application/json");
            c.setRequestProperty("Content-Encoding", "gzip");
            if (ingestKey != null) {
                c.setRequestProperty("Authorization", "Bearer " + ingestKey);
            }
            try (OutputStream out = c.getOutputStream()) {
                out.write(body);
            }
            status = c.getResponseCode();
            retryAfter = c.getHeaderField("Retry-After");
            drain(status >= 400 ? c.getErrorStream() : c.getInputStream());
        } catch (IOException e) {
            status = -1;  // no network, refused, timed out: retried
            if (c != null) {
                c.disconnect();
            }
        }
        lastStatus = status;
        if (status >= 200 && status < 300) {
            spool.remove(window);
            uploaded++;
            attempt = 0;
            return 0;
        }
        if (status >= 400 && status < 500 && status != 408 && status != 429) {
            spool.reject(window);  // OTLP/HTTP: the server will never take these bytes
            rejectedCount++;
            attempt = 0;
            return 0;
        }
        attempt++;
        double wait = Math.min((double) backoffMaxMs,
                backoffBaseMs * Math.pow(2, Math.min(attempt - 1, 40)));
        wait *= 0.5 + 0.5 * random.nextDouble();  // a fleet must not retry in lockstep
        long ms = (long) wait;
        if (retryAfter != null) {
            lastRetryAfter = retryAfter;
            ms = Math.max(ms, retryAfterMs(retryAfter, System.currentTimeMillis()));
        }
        return Math.max(1, ms);
    }

    /**
     * Upload until the spool is empty or {@code timeoutMs} passed, sleeping between retries;
     * true when the spool is empty.
     */
    public boolean drainSpool(long timeoutMs) throws IOException, InterruptedException {
        long end = System.currentTimeMillis() + timeoutMs;
        while (true) {
            long wait = uploadOnce();
            if (wait < 0) {
                return true;
            }
            long left = end - System.currentTimeMillis();
            if (left <= 0 || wait > left) {
                return false;
            }
            if (wait > 0) {
                Thread.sleep(wait);
            }
        }
    }

    /** A daemon thread that uploads whenever the spool has windows (polls every second). */
    public synchronized void start() {
        if (thread != null) {
            return;
        }
        stopping = false;
        thread = new Thread(() -> {
            while (!stopping) {
                long wait;
                try {
                    wait = uploadOnce();
                } catch (IOException | RuntimeException e) {
                    wait = backoffBaseMs;
                }
                try {
                    if (wait != 0) {
                        Thread.sleep(wait < 0 ? 1000 : wait);
                    }
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "edgeyard-uploader");
        thread.setDaemon(true);
        thread.start();
    }

    @Override
    public void close() {
        Thread t;
        synchronized (this) {
            t = thread;
            thread = null;
            stopping = true;
        }
        if (t != null) {
            t.interrupt();
            try {
                t.join(timeoutMs + 1000L);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    public synchronized long attempts() {
        return attempts;
    }

    public synchronized long uploaded() {
        return uploaded;
    }

    /** Windows the server refused for good (moved to the spool's {@code rejected/}). */
    public synchronized long rejected() {
        return rejectedCount;
    }

    /** The last HTTP status, -1 for no answer (no network, timeout). */
    public synchronized int lastStatus() {
        return lastStatus;
    }

    public synchronized String lastRetryAfter() {
        return lastRetryAfter;
    }

    /** Retry-After as milliseconds from {@code nowMs}: delta-seconds or an HTTP date; 0 if bad. */
    static long retryAfterMs(String value, long nowMs) {
        String v = value.trim();
        try {
            return Math.max(0, Math.round(Double.parseDouble(v) * 1000));
        } catch (NumberFormatException e) {
            // an HTTP date, below
        }
        try {
            long at = ZonedDateTime.parse(v, DateTimeFormatter.RFC_1123_DATE_TIME).toInstant()
                    .toEpochMilli();
            return Math.max(0, Math.min(at - nowMs, Duration.ofDays(1).toMillis()));
        } catch (RuntimeException e) {
            return 0;
        }
    }

    static byte[] gzip(byte[] data) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream(data.length / 4 + 64);
        try (GZIPOutputStream z = new GZIPOutputStream(b)) {
            z.write(data);
        }
        return b.toByteArray();
    }

    private static void drain(InputStream in) throws IOException {
        if (in == null) {
            return;
        }
        try (InputStream s = in) {
            byte[] buf = new byte[4096];
            while (s.read(buf) >= 0) {
                // read the answer out: the connection can then be reused
            }
        }
    }
}
