import dev.edgeyard.mobile.FallbackEvent;
import dev.edgeyard.mobile.NativeCollector;
import dev.edgeyard.mobile.Spool;
import dev.edgeyard.mobile.Uploader;
import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;

/**
 * Driven by tests/shims/test_jni_bridge.py: replays calls (a big-endian file written by the
 * test) into NativeCollector on a real release, takes the window, spools it and uploads it
 * with the library's Uploader to a real `edgeyard serve`; then uploads the same window again
 * (a retry: same upload id) and checks the bridge's error paths. Prints key=value lines.
 *
 * args: releaseDir profile deviceId callsFile spoolDir endpoint ingestKey windowOut
 */
public final class JniBridgeDriver {
    private JniBridgeDriver() {}

    private static String str(DataInputStream in) throws IOException {
        byte[] b = new byte[in.readInt()];
        in.readFully(b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private static float[][] tensors(DataInputStream in) throws IOException {
        int n = in.readInt();
        if (n < 0) {
            return null;
        }
        float[][] out = new float[n][];
        for (int i = 0; i < n; i++) {
            out[i] = new float[in.readInt()];
            for (int k = 0; k < out[i].length; k++) {
                out[i][k] = in.readFloat();
            }
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        File release = new File(args[0]);
        String profile = args[1];
        Spool spool = new Spool(new File(args[4]));
        int calls = 0;
        String id;
        NativeCollector c = NativeCollector.open(release, profile, args[2]);
        try (DataInputStream in = new DataInputStream(new BufferedInputStream(
                     new FileInputStream(args[3])))) {
            System.out.println("engines=" + String.join(",", c.spec().engines));
            int n = in.readInt();
            for (int i = 0; i < n; i++) {
                String engine = str(in);
                double latency = in.readDouble();
                int nf = in.readInt();
                List<FallbackEvent> fb = new ArrayList<>();
                for (int k = 0; k < nf; k++) {
                    fb.add(new FallbackEvent(str(in), str(in), str(in)));
                }
                float[][] ins = tensors(in);
                float[][] outs = tensors(in);
                c.onCall(ins, outs, engine.isEmpty() ? null : engine, latency, fb);
                calls++;
            }
            // error paths: a Java exception naming the C error, the window untouched
            try {
                c.onCall(new float[][] {new float[5]}, null, null, 0.001, new ArrayList<>());
                System.out.println("bad_shape=accepted");
            } catch (IllegalArgumentException e) {
                System.out.println("bad_shape=" + e.getMessage());
            }
            try {
                c.onCall(null, null, "no-such-engine", 0.001, new ArrayList<>());
                System.out.println("bad_engine=accepted");
            } catch (IllegalArgumentException e) {
                System.out.println("bad_engine=" + e.getMessage());
            }
            c.addDropped(spool.takeDropped());
            id = NativeCollector.newUploadId();
            String window = c.takeWindowOtlpJson(id);
            Files.write(new File(args[7]).toPath(), window.getBytes(StandardCharsets.UTF_8));
            spool.put(id, window);
            System.out.println("upload_id=" + id);
            System.out.println("empty_window_bytes=" + c.takeWindowOtlpJson(
                    NativeCollector.newUploadId()).length());
        } finally {
            c.close();
        }
        System.out.println("after_close=" + c.takeWindowOtlpJson(id));
        Uploader up = new Uploader(spool, new URL(args[5]), args[6]).backoff(50, 1000);
        boolean empty = up.drainSpool(60_000);
        System.out.println("calls=" + calls);
        System.out.println("first_upload=" + empty + " status=" + up.lastStatus()
                + " uploaded=" + up.uploaded() + " attempts=" + up.attempts());
        // the same window again, as a retry after a lost answer would send it
        String again = new String(Files.readAllBytes(new File(args[7]).toPath()),
                StandardCharsets.UTF_8);
        spool.put(id, again);
        boolean empty2 = up.drainSpool(60_000);
        System.out.println("retry_upload=" + empty2 + " status=" + up.lastStatus()
                + " uploaded=" + up.uploaded() + " rejected=" + up.rejected());
    }
}
