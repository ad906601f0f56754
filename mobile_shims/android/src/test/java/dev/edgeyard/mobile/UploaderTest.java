package dev.edgeyard.mobile;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.List;
import java.util.Random;
import java.util.zip.GZIPInputStream;
import org.junit.After;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** The uploader against a real HTTP server (com.sun.net.httpserver) scripted per test. */
public class UploaderTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    /** One request as the server saw it. */
    static final class Seen {
        final String body;
        final String encoding;
        final String type;
        final String auth;
        final long atMs;

        Seen(String body, String encoding, String type, String auth) {
            this.body = body;
            this.encoding = encoding;
            this.type = type;
            this.auth = auth;
            this.atMs = System.currentTimeMillis();
        }
    }

    private HttpServer server;
    private final List<Seen> seen = Collections.synchronizedList(new ArrayList<>());
    /** Answers to give, in order: {status, retryAfter or null}; then 200. */
    private final Deque<String[]> script = new ArrayDeque<>();
    private URL url;
    private Spool spool;

    @Before
    public void startServer() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/v1/metrics", ex -> {
            byte[] raw = readAll(ex.getRequestBody());
            String body = "gzip".equals(ex.getRequestHeaders().getFirst("Content-Encoding"))
                    ? new String(readAll(new GZIPInputStream(new java.io.ByteArrayInputStream(raw))),
                            StandardCharsets.UTF_8)
                    : new String(raw, StandardCharsets.UTF_8);
            seen.add(new Seen(body, ex.getRequestHeaders().getFirst("Content-Encoding"),
                    ex.getRequestHeaders().getFirst("Content-Type"),
                    ex.getRequestHeaders().getFirst("Authorization")));
            String[] answer;
            synchronized (script) {
                answer = script.isEmpty() ? new String[] {"200", null} : script.poll();
            }
            if (answer[1] != null) {
                ex.getResponseHeaders().set("Retry-After", answer[1]);
            }
            byte[] reply = "{}".getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(Integer.parseInt(answer[0]), reply.length);
            ex.getResponseBody().write(reply);
            ex.close();
        });
        server.start();
        url = new URL("http://127.0.0.1:" + server.getAddress().getPort() + "/v1/metrics");
        spool = new Spool(tmp.newFolder("spool"));
    }

    @After
    public void stopServer() {
        server.stop(0);
    }

    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        byte[] buf = new byte[4096];
        for (int n; (n = in.read(buf)) >= 0; ) {
            b.write(buf, 0, n);
        }
        return b.toByteArray();
    }

    private Uploader uploader() {
        return new Uploader(spool, url, "ingest-key-1").backoff(10, 200).random(new Random(1));
    }

    private static String window(String id) {
        return "{\"resourceMetrics\":[{\"resource\":{\"attributes\":[{\"key\":"
                + "\"edgeyard.upload_id\",\"value\":{\"stringValue\":\"" + id + "\"}}]}}],"
                + "\"note\":\"caf\u00e9\"}";
    }

    @Test
    public void retriesA503ThenSendsTheSameWindowAndDeletesItAfter200() throws Exception {
        String id = NativeCollector.newUploadId();
        spool.put(id, window(id));
        script.add(new String[] {"503", null});
        script.add(new String[] {"503", null});
        Uploader up = uploader();
        assertTrue(up.drainSpool(10_000));
        assertEquals(3, seen.size());
        for (Seen s : seen) {
            assertEquals(window(id), s.body);  // gzip decodes to the window; same id each time
            assertEquals("gzip", s.encoding);
            assertEquals("application/json", s.type);
            assertEquals("Bearer ingest-key-1", s.auth);
        }
        assertEquals(1, up.uploaded());
        assertEquals(3, up.attempts());
        assertEquals(0, spool.pending().size());
        assertEquals(200, up.lastStatus());
    }

    @Test
    public void honoursRetryAfter() throws Exception {
        String id = NativeCollector.newUploadId();
        spool.put(id, window(id));
        script.add(new String[] {"429", "1"});
        script.add(new String[] {"503", "1"});
        Uploader up = uploader();
        long wait = up.uploadOnce();
        assertTrue("waits at least Retry-After: " + wait, wait >= 1000);
        assertEquals("1", up.lastRetryAfter());
        assertEquals(1, spool.pending().size());  // kept for the retry
        assertTrue(up.drainSpool(10_000));  // the 503, slept 1 s, then 200
        assertEquals(3, seen.size());
        assertTrue(seen.get(2).atMs - seen.get(1).atMs >= 1000);
        assertEquals(seen.get(0).body, seen.get(2).body);
    }

    @Test
    public void backoffGrowsWithJitterAndIsCapped() throws Exception {
        spool.put("x", window("x"));
        for (int i = 0; i < 8; i++) {
            script.add(new String[] {"500", null});
        }
        Uploader up = uploader();
        long[] waits = new long[8];
        for (int i = 0; i < 8; i++) {
            waits[i] = up.uploadOnce();
        }
        for (int i = 0; i < 8; i++) {
            long full = Math.min(200, 10L << i);
            assertTrue(i + ": " + waits[i], waits[i] >= full / 2 && waits[i] <= full);
        }
    }

    @Test
    public void aPoisonWindowIsSetAsideNotRetried() throws Exception {
        spool.put("bad", window("bad"));
        spool.put("good", window("good"));
        script.add(new String[] {"400", null});
        Uploader up = uploader();
        assertTrue(up.drainSpool(10_000));
        assertEquals(2, seen.size());  // the bad one once, then the good one
        assertTrue(seen.get(0).body.contains("\"bad\""));
        assertTrue(seen.get(1).body.contains("\"good\""));
        assertEquals(1, up.rejected());
        assertEquals(1, up.uploaded());
        assertEquals(1, spool.rejected());
        assertEquals(1, new File(spool.directory(), "rejected").listFiles().length);
    }

    @Test
    public void aRequestTimeoutAndNoServerAreRetried() throws Exception {
        spool.put("t", window("t"));
        script.add(new String[] {"408", null});
        Uploader up = uploader();
        assertTrue(up.uploadOnce() > 0);
        assertEquals(1, spool.pending().size());
        server.stop(0);
        long wait = up.uploadOnce();
        assertTrue(wait > 0);
        assertEquals(-1, up.lastStatus());
        assertEquals(1, spool.pending().size());
    }

    @Test
    public void retryAfterReadsSecondsAndHttpDates() {
        assertEquals(3000, Uploader.retryAfterMs("3", 0));
        assertEquals(0, Uploader.retryAfterMs("soon", 0));
        long now = 1_700_000_000_000L;
        assertEquals(5000, Uploader.retryAfterMs(
                java.time.format.DateTimeFormatter.RFC_1123_DATE_TIME.format(
                        java.time.Instant.ofEpochMilli(now + 5000).atZone(java.time.ZoneOffset.UTC)),
                now));
    }

    @Test
    public void backgroundThreadSendsWhatIsSpooled() throws Exception {
        Uploader up = uploader();
        up.start();
        try {
            String id = NativeCollector.newUploadId();
            spool.put(id, window(id));
            long end = System.currentTimeMillis() + 10_000;
            while (!spool.pending().isEmpty() && System.currentTimeMillis() < end) {
                Thread.sleep(20);
            }
            assertEquals(0, spool.pending().size());
        } finally {
            up.close();
        }
        assertEquals(1, seen.size());
    }
}
