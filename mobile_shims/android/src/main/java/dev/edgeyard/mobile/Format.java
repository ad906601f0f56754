package dev.edgeyard.mobile;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;

/** Python's {@code format(x, ".Ng")}, so reasons read the same as the Python runtime's. */
final class Format {
    private Format() {}

    static String g(double x, int precision) {
        if (Double.isNaN(x)) {
            return "nan";
        }
        if (Double.isInfinite(x)) {
            return x > 0 ? "inf" : "-inf";
        }
        if (x == 0) {
            return "0";
        }
        BigDecimal b = new BigDecimal(x).round(new MathContext(precision, RoundingMode.HALF_EVEN));
        int exp = b.precision() - b.scale() - 1;
        if (exp < -4 || exp >= precision) {
            String mantissa = b.movePointLeft(exp).stripTrailingZeros().toPlainString();
            return String.format("%se%s%02d", mantissa, exp < 0 ? "-" : "+", Math.abs(exp));
        }
        return b.stripTrailingZeros().toPlainString();
    }
}
