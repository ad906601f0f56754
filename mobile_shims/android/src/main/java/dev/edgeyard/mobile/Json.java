package dev.edgeyard.mobile;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small JSON reader, and the writer of edgeyard's canonical bytes (the bytes the manifest
 * signature covers).
 *
 * <p>Plain JVM has no JSON library (org.json is Android-only), and the signature check needs
 * byte-exact control over the output anyway: Python's {@code json.dumps(obj, sort_keys=True,
 * separators=(",", ":"), ensure_ascii=False)}. Values parse to {@link Map} (insertion ordered),
 * {@link List}, {@link String}, {@link Boolean}, {@link Num} and Java {@code null}.
 *
 * <p>Numbers keep their source text ({@link Num#text}), so a number written by Python's json
 * module (which the release writer is) is written back exactly as Python would write it: this
 * is what lets a non-Python reader rebuild the signed bytes without re-implementing
 * Python's float repr.
 */
public final class Json {
    private Json() {}

    /** A JSON number as its source text. */
    public static final class Num {
        public final String text;

        Num(String text) {
            this.text = text;
        }

        public double doubleValue() {
            return Double.parseDouble(text);
        }

        public long longValue() {
            return isInteger() ? Long.parseLong(text) : (long) doubleValue();
        }

        public boolean isInteger() {
            return text.indexOf('.') < 0 && text.indexOf('e') < 0 && text.indexOf('E') < 0;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Num && ((Num) o).text.equals(text);
        }

        @Override
        public int hashCode() {
            return text.hashCode();
        }

        @Override
        public String toString() {
            return text;
        }
    }

    /** Malformed JSON: the message names the offset. */
    public static final class ParseException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        ParseException(String message) {
            super(message);
        }
    }

    public static Object parse(String text) {
        Reader r = new Reader(text);
        r.ws();
        Object v = r.value();
        r.ws();
        if (r.i != text.length()) {
            throw r.error("unexpected trailing data");
        }
        return v;
    }

    public static Object parse(byte[] utf8) {
        return parse(new String(utf8, StandardCharsets.UTF_8));
    }

    // --- canonical writing ------------------------------------------------------------------

    /** Python's str ordering (by code point); String.compareTo orders UTF-16 units instead. */
    static final Comparator<String> CODE_POINT_ORDER = (a, b) -> {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i);
            int cb = b.codePointAt(j);
            if (ca != cb) {
                return Integer.compare(ca, cb);
            }
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Integer.compare(a.length() - i, b.length() - j);
    };

    /** The canonical UTF-8 bytes of {@code value} (see the class comment). */
    public static byte[] canonical(Object value) {
        StringBuilder sb = new StringBuilder();
        write(sb, value);
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    private static void write(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Boolean) {
            sb.append(((Boolean) v) ? "true" : "false");
        } else if (v instanceof Num) {
            sb.append(((Num) v).text);
        } else if (v instanceof Integer || v instanceof Long) {
            sb.append(v);
        } else if (v instanceof String) {
            writeString(sb, (String) v);
        } else if (v instanceof Map) {
            Map<?, ?> m = (Map<?, ?>) v;
            List<String> keys = new ArrayList<>();
            for (Object k : m.keySet()) {
                keys.add((String) k);
            }
            keys.sort(CODE_POINT_ORDER);
            sb.append('{');
            for (int n = 0; n < keys.size(); n++) {
                if (n > 0) {
                    sb.append(',');
                }
                writeString(sb, keys.get(n));
                sb.append(':');
                write(sb, m.get(keys.get(n)));
            }
            sb.append('}');
        } else if (v instanceof List) {
            sb.append('[');
            int n = 0;
            for (Object x : (List<?>) v) {
                if (n++ > 0) {
                    sb.append(',');
                }
                write(sb, x);
            }
            sb.append(']');
        } else {
            throw new IllegalArgumentException("cannot write " + v.getClass().getName() + " as JSON");
        }
    }

    // CPython's escape for ensure_ascii=False: only '"', '\\' and control characters, lowercase hex
    private static void writeString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\b': sb.append("\\b"); break;
                case '\f': sb.append("\\f"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }

    // --- reading ----------------------------------------------------------------------------

    private static final class Reader {
        final String s;
        int i;

        Reader(String s) {
            this.s = s;
        }

        ParseException error(String what) {
            return new ParseException("invalid JSON at offset " + i + ": " + what);
        }

        void ws() {
            while (i < s.length()) {
                char c = s.charAt(i);
                if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
                    return;
                }
                i++;
            }
        }

        Object value() {
            if (i >= s.length()) {
                throw error("unexpected end of input");
            }
            char c = s.charAt(i);
            switch (c) {
                case '{': return object();
                case '[': return array();
                case '"': return string();
                case 't': return literal("true", Boolean.TRUE);
                case 'f': return literal("false", Boolean.FALSE);
                case 'n': return literal("null", null);
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        return number();
                    }
                    throw error("unexpected character '" + c + "'");
            }
        }

        Object literal(String word, Object v) {
            if (!s.startsWith(word, i)) {
                throw error("expected " + word);
            }
            i += word.length();
            return v;
        }

        Map<String, Object> object() {
            Map<String, Object> m = new LinkedHashMap<>();
            i++;
            ws();
            if (peek() == '}') {
                i++;
                return m;
            }
            while (true) {
                ws();
                if (peek() != '"') {
                    throw error("expected a string key");
                }
                String k = string();
                ws();
                expect(':');
                ws();
                m.put(k, value());
                ws();
                if (peek() == ',') {
                    i++;
                } else {
                    expect('}');
                    return m;
                }
            }
        }

        List<Object> array() {
            List<Object> a = new ArrayList<>();
            i++;
            ws();
            if (peek() == ']') {
                i++;
                return a;
            }
            while (true) {
                ws();
                a.add(value());
                ws();
                if (peek() == ',') {
                    i++;
                } else {
                    expect(']');
                    return a;
                }
            }
        }

        String string() {
            i++;
            StringBuilder sb = new StringBuilder();
            while (true) {
                if (i >= s.length()) {
                    throw error("unterminated string");
                }
                char c = s.charAt(i++);
                if (c == '"') {
                    return sb.toString();
                }
                if (c < 0x20) {
                    throw error("control character in string");
                }
                if (c != '\\') {
                    sb.append(c);
                    continue;
                }
                if (i >= s.length()) {
                    throw error("unterminated escape");
                }
                char e = s.charAt(i++);
                switch (e) {
                    case '"': sb.append('"'); break;
                    case '\\': sb.append('\\'); break;
                    case '/': sb.append('/'); break;
                    case 'b': sb.append('\b'); break;
                    case 'f': sb.append('\f'); break;
                    case 'n': sb.append('\n'); break;
                    case 'r': sb.append('\r'); break;
                    case 't': sb.append('\t'); break;
                    case 'u':
                        if (i + 4 > s.length()) {
                            throw error("short \\u escape");
                        }
                        try {
                            sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                        } catch (NumberFormatException ex) {
                            throw error("bad \\u escape");
                        }
                        i += 4;
                        break;
                    default:
                        throw error("bad escape \\" + e);
                }
            }
        }

        Num number() {
            int start = i;
            if (peek() == '-') {
                i++;
            }
            if (peek() == '0') {
                i++;
            } else {
                digits();
            }
            if (peek() == '.') {
                i++;
                digits();
            }
            if (peek() == 'e' || peek() == 'E') {
                i++;
                if (peek() == '+' || peek() == '-') {
                    i++;
                }
                digits();
            }
            return new Num(s.substring(start, i));
        }

        void digits() {
            int start = i;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
            }
            if (i == start) {
                throw error("expected a digit");
            }
        }

        char peek() {
            return i < s.length() ? s.charAt(i) : '\0';
        }

        void expect(char c) {
            if (peek() != c) {
                throw error("expected '" + c + "'");
            }
            i++;
        }
    }

    /** Write bytes for tests and tools: the canonical form as a String. */
    static String canonicalString(Object value) {
        return new String(canonical(value), StandardCharsets.UTF_8);
    }
}
