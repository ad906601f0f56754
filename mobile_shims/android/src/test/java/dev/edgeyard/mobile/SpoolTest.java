package dev.edgeyard.mobile;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class SpoolTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private static List<String> ids(Spool s) {
        List<String> out = new ArrayList<>();
        for (File f : s.pending()) {
            out.add(Spool.uploadIdOf(f));
        }
        return out;
    }

    @Test
    public void windowsAreWholeFilesOldestFirst() throws Exception {
        File dir = tmp.newFolder("spool");
        Spool s = new Spool(dir);
        s.put("aa", "{\"w\":1}");
        s.put("bb", "{\"w\":2}");
        s.put("cc", "{\"w\":3}");
        assertEquals(List.of("aa", "bb", "cc"), ids(s));
        assertEquals("{\"w\":2}", s.read(s.pending().get(1)));
        for (File f : dir.listFiles()) {
            assertTrue(f.getName(), !f.getName().startsWith(".tmp-"));  // renamed into place
        }
        s.remove(s.pending().get(0));
        assertEquals(List.of("bb", "cc"), ids(s));
        assertNull(s.read(new File(dir, "gone.json")));
        // a new instance on the same directory (an app restart) sees them, in order
        File stale = new File(dir, ".tmp-123-x.json");
        Files.write(stale.toPath(), new byte[] {1});
        Spool again = new Spool(dir);
        assertEquals(List.of("bb", "cc"), ids(again));
        assertTrue("a crashed write is swept", !stale.exists());
        again.put("dd", "{}");
        assertEquals(List.of("bb", "cc", "dd"), ids(again));
    }

    @Test
    public void boundsDropTheOldestAndCountThem() throws Exception {
        File dir = tmp.newFolder("spool");
        Spool s = new Spool(dir, 1 << 20, 3);
        for (int i = 0; i < 5; i++) {
            s.put("id" + i, "{}");
        }
        assertEquals(List.of("id2", "id3", "id4"), ids(s));
        assertEquals(2, s.dropped());
        assertEquals(2, s.takeDropped());
        assertEquals(0, s.takeDropped());
        assertEquals(2, new Spool(dir, 1 << 20, 3).dropped());  // persisted

        Spool small = new Spool(tmp.newFolder("small"), 25, 100);
        small.put("a", "0123456789");
        small.put("b", "0123456789");
        small.put("c", "0123456789");  // 30 bytes > 25: the oldest goes
        assertEquals(List.of("b", "c"), ids(small));
        assertEquals(1, small.dropped());
        assertEquals(20, small.bytes());
    }

    @Test
    public void rejectedWindowsAreMovedAsideAndBounded() throws Exception {
        File dir = tmp.newFolder("spool");
        Spool s = new Spool(dir);
        for (int i = 0; i < Spool.KEEP_REJECTED + 3; i++) {
            s.reject(s.put("r" + i, "{}"));
        }
        assertEquals(0, s.pending().size());
        assertEquals(Spool.KEEP_REJECTED + 3, s.rejected());
        assertEquals(Spool.KEEP_REJECTED, new File(dir, "rejected").listFiles().length);
    }

    @Test
    public void pseudonymousIdIsSaltedAndStable() throws Exception {
        File dir = tmp.newFolder("tel");
        String a = Spool.pseudonymousId(dir, "device-1");
        assertTrue(a, a.matches("[0-9a-f]{32}"));
        assertEquals(a, Spool.pseudonymousId(dir, "device-1"));
        assertNotEquals(a, Spool.pseudonymousId(dir, "device-2"));
        String salt = new String(Files.readAllBytes(new File(dir, "salt").toPath())).trim();
        assertEquals(Sha256.of((salt + ":device-1").getBytes("UTF-8")).substring(0, 32), a);
        String install = Spool.pseudonymousId(dir, null);
        assertEquals(install, Spool.pseudonymousId(dir, null));
        assertNotEquals(a, Spool.pseudonymousId(tmp.newFolder("other"), "device-1"));
    }
}
