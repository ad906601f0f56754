package dev.edgeyard.mobile;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

/** The JNI glue is not built here: the Java half, and the failure an app sees without it. */
public class NativeCollectorTest {
    @Test
    public void openWithoutTheLibraryNamesIt() {
        UnsatisfiedLinkError e = assertThrows(UnsatisfiedLinkError.class,
                () -> NativeCollector.open(Fixtures.release(), "phone"));
        assertTrue(e.getMessage(), e.getMessage().contains(NativeCollector.LIBRARY));
    }

    @Test
    public void shapesCarryTheCallsBatch() throws Exception {
        Manifest m = Manifest.load(Fixtures.release());
        long[][] s = NativeCollector.shapes(m.inputs(), new float[][] {new float[9]});
        assertArrayEquals(new long[] {3, 3}, s[0]);
        assertArrayEquals(new long[] {3, 2}, NativeCollector.shapes(m.outputs(), new float[][] {new float[6]})[0]);
    }
}
