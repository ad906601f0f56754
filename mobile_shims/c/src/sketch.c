/* The exponential histogram (sketch.py in C). Values are added one by one, as
 * opentelemetry-sdk adds them; sketch.py reproduces that order vectorized, so both agree. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* a fused multiply-add would change bits numpy does not */
#endif

#include <float.h>
#include <math.h>
#include <string.h>

#include "edgeyard.h"
#include "internal.h"

#define MANTISSA_WIDTH 52
#define EXPONENT_BIAS 1023
#define MIN_NORMAL_EXPONENT (-EXPONENT_BIAS + 1)
#define MAX_NORMAL_EXPONENT EXPONENT_BIAS

int64_t ey_shr(int64_t x, int s)
{
    /* floor(x / 2^s), as Python's >> (C leaves >> of a negative number to the compiler) */
    if (s <= 0) return x;
    if (s > 62) return x < 0 ? -1 : 0;
    return x >= 0 ? x >> s : -((-(x + 1)) >> s) - 1;
}

static int64_t shl(int64_t x, int s) { return x * ((int64_t)1 << s); }

int64_t ey_map_to_index(double v, int32_t scale)
{
    uint64_t bits;
    int64_t exponent;
    int pow2;
    memcpy(&bits, &v, sizeof bits);
    exponent = (int64_t)((bits >> MANTISSA_WIDTH) & 0x7FF) - EXPONENT_BIAS;
    pow2 = (bits & (((uint64_t)1 << MANTISSA_WIDTH) - 1)) == 0;
    if (scale > 0) {
        int64_t idx, top;
        if (v <= DBL_MIN) return shl(MIN_NORMAL_EXPONENT, scale) - 1;
        if (pow2) {
            idx = shl(exponent, scale) - 1;
        } else {
            double sf = ldexp(1.0 / log(2.0), scale); /* as opentelemetry-sdk computes it */
            idx = (int64_t)floor(log(v) * sf);
        }
        top = shl(MAX_NORMAL_EXPONENT + 1, scale) - 1;
        return idx < top ? idx : top;
    } else {
        int shift = -scale;
        int64_t low;
        if (v < DBL_MIN) {
            low = ey_shr(MIN_NORMAL_EXPONENT, shift);
            return shift < 2 ? low - 1 : low;
        }
        return ey_shr(exponent + (pow2 ? -1 : 0), shift);
    }
}

/* ---- numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src) ---------------- */

#define PW_BLOCKSIZE 128
#define PAIRWISE(NAME, T, ARGS, GET, ADVANCE)                                                 \
    static T NAME ARGS                                                                        \
    {                                                                                         \
        if (n < 8) {                                                                          \
            size_t i;                                                                         \
            T res = 0;                                                                        \
            for (i = 0; i < n; i++) res += GET(i);                                            \
            ADVANCE(n);                                                                       \
            return res;                                                                       \
        } else if (n <= PW_BLOCKSIZE) {                                                       \
            size_t i, j;                                                                      \
            T r[8], res;                                                                      \
            for (j = 0; j < 8; j++) r[j] = GET(j);                                            \
            for (i = 8; i < n - (n % 8); i += 8)                                              \
                for (j = 0; j < 8; j++) r[j] += GET(i + j);                                   \
            res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));          \
            for (; i < n; i++) res += GET(i);                                                 \
            ADVANCE(n);                                                                       \
            return res;                                                                       \
        } else {                                                                              \
            size_t n2 = n / 2;                                                                \
            T left;                                                                           \
            n2 -= n2 % 8;                                                                     \
            left = RECURSE_##NAME(n2, 0);                                                     \
            return left + RECURSE_##NAME(n - n2, n2);                                         \
        }                                                                                     \
    }

#define GET_ARRAY(i) a[i]
#define ADVANCE_NONE(k) (void)0
#define RECURSE_pw_f64(m, at) pw_f64(a + (at), (m))
#define RECURSE_pw_f32(m, at) pw_f32(a + (at), (m))
PAIRWISE(pw_f64, double, (const double *a, size_t n), GET_ARRAY, ADVANCE_NONE)
PAIRWISE(pw_f32, float, (const float *a, size_t n), GET_ARRAY, ADVANCE_NONE)

/* the same order over a generated sequence (consumed strictly in order) */
#define GET_CURSOR(i) c->next(c)
#define RECURSE_pw_cursor(m, at) pw_cursor(c, (m))
PAIRWISE(pw_cursor, double, (ey_cursor *c, size_t n), GET_CURSOR, ADVANCE_NONE)

double ey_pairwise_sum(const double *a, size_t n) { return 0.0 + pw_f64(a, n); }
float ey_pairwise_sum_f32(const float *a, size_t n) { return 0.0f + pw_f32(a, n); }
double ey_pairwise_cursor(ey_cursor *c, size_t n) { return 0.0 + pw_cursor(c, n); }

static double next_finite(ey_cursor *c)
{
    const double *p = (const double *)c->data;
    while (!isfinite(p[c->i])) c->i++;
    return p[c->i++];
}

/* ---- the sketch ---------------------------------------------------------------------------- */

int ey_hist_init(ey_hist *h, int32_t max_size, int32_t max_scale)
{
    if (h == NULL || max_size < 2 || max_size > EY_SKETCH_CAPACITY || max_scale < -10 ||
        max_scale > 20)
        return EY_E_ARG;
    memset(h, 0, sizeof *h);
    h->max_size = max_size;
    h->max_scale = max_scale;
    h->scale = max_scale;
    h->min = HUGE_VAL;
    h->max = -HUGE_VAL;
    return EY_OK;
}

static int scale_change(int64_t low, int64_t high, int32_t max_size)
{
    int change = 0;
    while (high - low >= max_size) {
        high = ey_shr(high, 1);
        low = ey_shr(low, 1);
        change++;
    }
    return change;
}

static void buckets_shift(ey_buckets *b, int change)
{
    int64_t off;
    int32_t i;
    if (change == 0 || b->len == 0) return;
    off = ey_shr(b->offset, change);
    for (i = 0; i < b->len; i++) { /* targets never lie after their source: in place */
        int64_t t = ey_shr(b->offset + i, change) - off;
        uint64_t c = b->counts[i];
        b->counts[i] = 0;
        b->counts[t] += c;
    }
    b->len = (int32_t)(ey_shr(b->offset + b->len - 1, change) - off + 1);
    b->offset = off;
}

static void buckets_add(ey_buckets *b, int64_t idx, uint64_t n)
{
    if (b->len == 0) {
        b->offset = idx;
        b->len = 1;
        b->counts[0] = n;
    } else if (idx < b->offset) {
        int32_t d = (int32_t)(b->offset - idx);
        memmove(b->counts + d, b->counts, (size_t)b->len * sizeof b->counts[0]);
        memset(b->counts, 0, (size_t)d * sizeof b->counts[0]);
        b->offset = idx;
        b->len += d;
        b->counts[0] += n;
    } else {
        int64_t at = idx - b->offset;
        if (at >= b->len) {
            memset(b->counts + b->len, 0, (size_t)(at + 1 - b->len) * sizeof b->counts[0]);
            b->len = (int32_t)(at + 1);
        }
        b->counts[at] += n;
    }
}

static void add_one(ey_hist *h, double mag, int positive)
{
    ey_buckets *b = positive ? &h->positive : &h->negative;
    int64_t idx = ey_map_to_index(mag, h->scale);
    while (b->len) {
        int64_t end = b->offset + b->len - 1;
        int64_t lo = idx < b->offset ? idx : b->offset, hi = idx > end ? idx : end;
        int change;
        if (hi - lo < h->max_size) break;
        change = scale_change(lo, hi, h->max_size);
        h->scale -= change;
        buckets_shift(&h->positive, change);
        buckets_shift(&h->negative, change);
        /* the value that forced the change is mapped again at the new scale; it fits unless
           libm's log put it one bucket off at the old scale (then this loop shifts once more,
           where sketch.py would keep one bucket over max_size) */
        idx = ey_map_to_index(mag, h->scale);
    }
    buckets_add(b, idx, 1);
}

void ey_hist_update(ey_hist *h, const double *v, size_t n)
{
    size_t i, finite = 0;
    double lo = 0, hi = 0;
    if (h == NULL || v == NULL || n == 0) return;
    for (i = 0; i < n; i++) {
        double x = v[i];
        if (isnan(x)) {
            h->missing++;
        } else if (isinf(x)) {
            h->non_finite++;
        } else {
            if (finite == 0 || x < lo) lo = x;
            if (finite == 0 || x > hi) hi = x;
            finite++;
        }
    }
    if (finite == 0) return;
    h->count += finite;
    if (finite == n) {
        h->sum += ey_pairwise_sum(v, n);
    } else {
        ey_cursor c;
        c.data = v;
        c.i = 0;
        c.next = next_finite;
        h->sum += ey_pairwise_cursor(&c, finite);
    }
    if (lo < h->min) h->min = lo;
    if (hi > h->max) h->max = hi;
    for (i = 0; i < n; i++) {
        double x = v[i];
        if (x == 0) {
            h->zero_count++;
        } else if (isfinite(x)) {
            add_one(h, fabs(x), x > 0);
        }
    }
}

int32_t ey_hist_reported_scale(const ey_hist *h)
{
    return h->count == h->zero_count ? 0 : h->scale;
}

static void side_range(const ey_buckets *a, int da, const ey_buckets *b, int db, int64_t *lo,
                       int64_t *hi, int *any)
{
    const ey_buckets *src[2];
    int d[2], k;
    src[0] = a;
    src[1] = b;
    d[0] = da;
    d[1] = db;
    *any = 0;
    for (k = 0; k < 2; k++) {
        int64_t l, h;
        if (src[k]->len == 0) continue;
        l = ey_shr(src[k]->offset, d[k]);
        h = ey_shr(src[k]->offset + src[k]->len - 1, d[k]);
        if (!*any || l < *lo) *lo = l;
        if (!*any || h > *hi) *hi = h;
        *any = 1;
    }
}

static void merge_side(ey_buckets *out, const ey_buckets *a, int da, const ey_buckets *b, int db)
{
    int64_t lo = 0, hi = 0;
    int any;
    int32_t i;
    side_range(a, da, b, db, &lo, &hi, &any);
    memset(out, 0, sizeof *out);
    if (!any) return;
    out->offset = lo;
    out->len = (int32_t)(hi - lo + 1);
    for (i = 0; i < a->len; i++) out->counts[ey_shr(a->offset + i, da) - lo] += a->counts[i];
    for (i = 0; i < b->len; i++) out->counts[ey_shr(b->offset + i, db) - lo] += b->counts[i];
}

int ey_hist_merge(ey_hist *out, const ey_hist *a, const ey_hist *b)
{
    ey_hist r;
    int32_t scale;
    int change = 0, side, any;
    int64_t lo = 0, hi = 0;
    if (out == NULL || a == NULL || b == NULL) return EY_E_ARG;
    if (ey_hist_init(&r, a->max_size < b->max_size ? a->max_size : b->max_size,
                     a->max_scale > b->max_scale ? a->max_scale : b->max_scale) != EY_OK)
        return EY_E_ARG;
    scale = a->scale < b->scale ? a->scale : b->scale;
    for (side = 0; side < 2; side++) {
        int c;
        side_range(side ? &a->negative : &a->positive, a->scale - scale,
                   side ? &b->negative : &b->positive, b->scale - scale, &lo, &hi, &any);
        if (!any) continue;
        c = scale_change(lo, hi, r.max_size);
        if (c > change) change = c;
    }
    r.scale = scale - change;
    merge_side(&r.positive, &a->positive, a->scale - scale + change, &b->positive,
               b->scale - scale + change);
    merge_side(&r.negative, &a->negative, a->scale - scale + change, &b->negative,
               b->scale - scale + change);
    r.zero_count = a->zero_count + b->zero_count;
    r.count = a->count + b->count;
    r.sum = a->sum + b->sum;
    r.min = b->min < a->min ? b->min : a->min;
    r.max = b->max > a->max ? b->max : a->max;
    r.missing = a->missing + b->missing;
    r.non_finite = a->non_finite + b->non_finite;
    *out = r;
    return EY_OK;
}
