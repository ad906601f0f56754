package dev.edgeyard.mobile;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    private static String canon(String json) {
        return Json.canonicalString(Json.parse(json));
    }

    @Test
    public void canonicalSortsKeysAndDropsWhitespace() {
        assertEquals("{\"a\":[1,2.5,null,true,false],\"b\":{\"c\":\"d\"}}",
                canon("{ \"b\" : {\"c\": \"d\"},\n  \"a\": [1, 2.5, null, true, false] }"));
    }

    @Test
    public void numbersKeepTheirSourceText() {
        // Python writes floats with repr: 1e-05, 0.0001, 12.345678901234567 must come back as is
        assertEquals("[1e-05,0.0001,12.345678901234567,-0.0,100000000000000000000]",
                canon("[1e-05, 0.0001, 12.345678901234567, -0.0, 100000000000000000000]"));
        Json.Num n = (Json.Num) ((List<?>) Json.parse("[1e-05]")).get(0);
        assertEquals(1e-05, n.doubleValue(), 0);
    }

    @Test
    public void stringsAreEscapedLikePythonWithEnsureAsciiFalse() {
        // \\u escapes decode; non-ASCII is written raw, control characters as lowercase \\u00xx
        assertEquals("\"\u00e9\u2014\ud83d\udcf1 \\\" \\\\ / \\n\\t\\b\\f\\r \\u0001\\u001f\u007f\"",
                canon("\"\\u00e9\\u2014\\ud83d\\udcf1 \\\" \\\\ \\/ \\n\\t\\b\\f\\r \\u0001\\u001F\u007f\""));
    }

    @Test
    public void keysSortByCodePointLikePython() {
        // U+FF61 sorts before U+1F4F1 in Python; UTF-16 (String.compareTo) puts the surrogate first
        String a = "\uff61";
        String b = new String(Character.toChars(0x1f4f1));
        assertTrue(a.compareTo(b) > 0);
        assertTrue(Json.CODE_POINT_ORDER.compare(a, b) < 0);
        assertEquals("{\"" + a + "\":1,\"" + b + "\":2}", canon("{\"" + b + "\":2,\"" + a + "\":1}"));
    }

    @Test
    public void parsesInOrderAndRejectsBadInput() {
        Map<?, ?> m = (Map<?, ?>) Json.parse("{\"z\":1,\"a\":{}}");
        assertEquals(List.of("z", "a"), List.copyOf(m.keySet()));
        for (String bad : new String[] {"", "{", "[1,]", "{\"a\" 1}", "NaN", "01", "\"\\x\"", "[1] 2"}) {
            assertThrows(bad, Json.ParseException.class, () -> Json.parse(bad));
        }
    }
}
