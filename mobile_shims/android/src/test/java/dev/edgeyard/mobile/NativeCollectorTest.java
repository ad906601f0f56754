package dev.edgeyard.mobile;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

/**
 * The Java half of the JNI bridge and the failure an app sees without the library (the bridge
 * itself is tested end to end by tests/shims/test_jni_bridge.py, which builds it).
 */
public class NativeCollectorTest {
    @Test
    public void openWithoutTheLibraryNamesIt() {
        java.io.File release = Fixtures.release();  // skipped (assumption) without the fixture
        UnsatisfiedLinkError e = assertThrows(UnsatisfiedLinkError.class,
                () -> NativeCollector.open(release, "phone", "device"));
        assertTrue(e.getMessage(), e.getMessage().contains(NativeCollector.LIBRARY));
    }

    @Test
    public void shapesCarryTheCallsBatch() throws Exception {
        Manifest m = Manifest.load(Fixtures.release());
        long[][] s = NativeCollector.shapes(m.inputs(), new float[][] {new float[9]});
        assertArrayEquals(new long[] {3, 3}, s[0]);
        assertArrayEquals(new long[] {3, 2}, NativeCollector.shapes(m.outputs(), new float[][] {new float[6]})[0]);
    }

    @Test
    public void stringsTravelAsNulTerminatedUtf8() {
        byte[] b = NativeCollector.blob(new String[] {"a\u00e9", null, "\ud83d\udcf1"}, false);
        assertArrayEquals(new byte[] {'a', (byte) 0xc3, (byte) 0xa9, 0, 0, (byte) 0xf0,
                (byte) 0x9f, (byte) 0x93, (byte) 0xb1, 0}, b);
        assertThrows(IllegalArgumentException.class,
                () -> NativeCollector.blob(new String[] {"a\0b"}, false));
        assertArrayEquals(new byte[] {'a', (byte) 0xef, (byte) 0xbf, (byte) 0xbd, 'b', 0},
                NativeCollector.blob(new String[] {"a\0b"}, true));
    }

    @Test
    public void uploadIdsAre32RandomHexDigits() {
        String a = NativeCollector.newUploadId();
        assertTrue(a, a.matches("[0-9a-f]{32}"));
        assertNotEquals(a, NativeCollector.newUploadId());
    }
}
