/* Fuzz target: the fuzz bytes choose a spec (signal kinds, tensors, channels, directions of any
 * length, names of any bytes and length, classes, sketch bounds, engines, resource attributes),
 * then a sequence of calls: observe with arbitrary shapes, dtypes and values (NaN, Inf,
 * subnormals, huge), projections, fallbacks with arbitrary names, external values, drops, and
 * encodes into small buffers; and sketches on their own (init, update, merge).
 *
 * Every buffer handed to the library is malloc'd at its exact size, so that a read past what
 * the shape promises is an AddressSanitizer report. Shapes tell the truth about their data
 * (the library cannot check that), except shapes whose byte size overflows int64, which the
 * library must refuse before reading. Beyond the sanitizers, checked here (abort() on failure):
 * the encoder's length is the same for any buffer, its text is NUL-terminated, a prefix of the
 * whole text, and parses as JSON; counters add up (calls, engine calls, latency count).
 *
 * Built by `make fuzz`: with libFuzzer when CC is clang, otherwise with tests/fuzz_driver.c. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeyard.h"

#define MAX_SIG 6
#define MAX_T 3
#define MAX_NUMEL 4096
#define NAME_CAP 700

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static unsigned u8(rd *r)
{
    if (r->n == 0) return 0;
    r->n--;
    return *r->p++;
}

static unsigned u16(rd *r)
{
    unsigned lo = u8(r);
    return lo | (u8(r) << 8);
}

static double f64(rd *r)
{
    unsigned c = u8(r);
    switch (c % 12) {
    case 0: {
        uint64_t bits = 0;
        double v;
        int k;
        for (k = 0; k < 8; k++) bits |= (uint64_t)u8(r) << (8 * k);
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    case 1: return NAN;
    case 2: return INFINITY;
    case 3: return -INFINITY;
    case 4: return 0.0;
    case 5: return -0.0;
    case 6: return DBL_MIN / (double)(1 + u8(r)); /* subnormal */
    case 7: {
        double sign = u8(r) & 1 ? -1 : 1;
        return sign * DBL_MAX / (double)(1 + u8(r) % 3);
    }
    case 8: {
        double m = 1.0 + u8(r) / 256.0;
        return ldexp(m, (int)u8(r) - 128);
    }
    default: return ((int)u8(r) - 128) / 8.0;
    }
}

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_window: %s\n", what);
    abort();
}

/* a NUL-terminated name of arbitrary bytes (no NUL inside); now and then a long one */
static void name_of(rd *r, char *dst)
{
    unsigned c = u8(r);
    size_t n = c < 240 ? c % 24 : (u16(r) % (NAME_CAP - 1)), i;
    for (i = 0; i < n; i++) {
        unsigned b = r->n ? u8(r) : 'x';
        dst[i] = (char)(b ? b : 'z');
    }
    dst[n] = '\0';
}

/* ---- a minimal JSON syntax check (RFC 8259 grammar; strings as bytes) ---------------------- */

static const char *js_value(const char *s, int depth);

static const char *js_ws(const char *s)
{
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t') s++;
    return s;
}

static const char *js_string(const char *s)
{
    if (*s++ != '"') return NULL;
    for (; *s != '"'; s++) {
        if (*s == '\0' || (unsigned char)*s < 0x20) return NULL;
        if (*s == '\\') {
            s++;
            if (*s == 'u') {
                int k;
                for (k = 0; k < 4; k++)
                    if (!strchr("0123456789abcdefABCDEF", *++s) || *s == '\0') return NULL;
            } else if (!*s || !strchr("\"\\/bfnrt", *s)) {
                return NULL;
            }
        }
    }
    return s + 1;
}

static const char *js_number(const char *s)
{
    const char *s0;
    if (*s == '-') s++;
    if (*s == '0') s++;
    else if (*s >= '1' && *s <= '9') while (*s >= '0' && *s <= '9') s++;
    else return NULL;
    if (*s == '.') {
        s0 = ++s;
        while (*s >= '0' && *s <= '9') s++;
        if (s == s0) return NULL;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        s0 = s;
        while (*s >= '0' && *s <= '9') s++;
        if (s == s0) return NULL;
    }
    return s;
}

static const char *js_seq(const char *s, int depth, char close, int object)
{
    s = js_ws(s + 1);
    if (*s == close) return s + 1;
    for (;;) {
        if (object) {
            s = js_string(js_ws(s));
            if (s == NULL) return NULL;
            s = js_ws(s);
            if (*s++ != ':') return NULL;
        }
        s = js_value(s, depth + 1);
        if (s == NULL) return NULL;
        s = js_ws(s);
        if (*s == close) return s + 1;
        if (*s++ != ',') return NULL;
    }
}

static const char *js_value(const char *s, int depth)
{
    if (depth > 32) return NULL;
    s = js_ws(s);
    switch (*s) {
    case '{': return js_seq(s, depth, '}', 1);
    case '[': return js_seq(s, depth, ']', 0);
    case '"': return js_string(s);
    case 't': return strncmp(s, "true", 4) ? NULL : s + 4;
    case 'f': return strncmp(s, "false", 5) ? NULL : s + 5;
    case 'n': return strncmp(s, "null", 4) ? NULL : s + 4;
    default: return js_number(s);
    }
}

/* ---- the target ---------------------------------------------------------------------------- */

/* how far the inputs got (printed by the standalone driver: a check that random bytes do
   reach past init and observe's checks) */
static unsigned long n_runs, n_inited, n_observed, n_encoded, n_sampled;

void fuzz_window_report(FILE *f);
void fuzz_window_report(FILE *f)
{
    fprintf(f, "fuzz_window: %lu inputs, %lu windows initialized, %lu calls observed (%lu "
            "sampled), %lu encodes\n", n_runs, n_inited, n_observed, n_sampled, n_encoded);
}

static ey_window w;
static ey_spec spec;
static ey_signal_spec sigs[MAX_SIG];
static char sig_names[MAX_SIG][NAME_CAP], eng_names[EY_MAX_ENGINES + 1][NAME_CAP];
static char res_k[3][NAME_CAP], res_v[3][NAME_CAP], cls_name[NAME_CAP];
static char fb[3][NAME_CAP];
static const char *eng_ptrs[EY_MAX_ENGINES + 1], *key_ptrs[3], *val_ptrs[3];
static double *dirs[MAX_SIG];

static void make_spec(rd *r)
{
    int32_t k;
    unsigned c0;
    memset(&spec, 0, sizeof spec);
    c0 = u8(r); /* few signals mostly: a call is added only when every signal fits it */
    spec.n_signals = (int32_t)(c0 % (c0 < 192 ? 3 : MAX_SIG + 1));
    for (k = 0; k < spec.n_signals; k++) {
        ey_signal_spec *s = &sigs[k];
        unsigned c = u8(r);
        memset(s, 0, sizeof *s);
        name_of(r, sig_names[k]);
        s->name = c == 255 ? NULL : sig_names[k];
        s->kind = (ey_signal_kind)(u8(r) % (EY_SIG_EXTERNAL + 1));
        c0 = u8(r);
        s->tensor = (c0 < 180 ? 0 : (int32_t)(c0 % 4)) - (c == 254);
        s->channel = (int32_t)(u8(r) % 3) - (c == 253);
        s->softmax = (int32_t)(u8(r) & 1);
        c0 = u8(r);
        s->dim = (int64_t)(c0 < 200 ? 1 + c0 % 4 : c0 % 40); /* rows: mostly 1..4 values */
        dirs[k] = NULL;
        if (s->dim && c != 252) {
            int64_t d;
            dirs[k] = malloc((size_t)s->dim * sizeof(double));
            for (d = 0; d < s->dim; d++) dirs[k][d] = f64(r);
        }
        s->direction = dirs[k];
    }
    spec.signals = u8(r) == 255 ? NULL : sigs;
    spec.classes = (int32_t)(u8(r) % 14) - (u8(r) == 255);
    spec.class_output = (int32_t)(u8(r) % 4) - 1;
    name_of(r, cls_name);
    spec.class_name = u8(r) & 1 ? cls_name : NULL;
    if (u8(r) & 1) {
        spec.max_size = (int32_t)(u8(r) % 180) - 5;
        spec.max_scale = (int32_t)(u8(r) % 36) - 13;
    }
    c0 = u8(r); /* mostly 1..EY_MAX_ENGINES; now and then 0 or one too many */
    spec.n_engines = c0 >= 250 ? (int32_t)(c0 & 1) * (EY_MAX_ENGINES + 1)
                               : 1 + (int32_t)(c0 % EY_MAX_ENGINES);
    for (k = 0; k < spec.n_engines && k <= EY_MAX_ENGINES; k++) {
        unsigned c = u8(r);
        if (c < 16) strcpy(eng_names[k], "none");
        else name_of(r, eng_names[k]);
        eng_ptrs[k] = eng_names[k];
    }
    spec.engines = eng_ptrs;
    spec.n_resource = (int32_t)(u8(r) % 4);
    for (k = 0; k < spec.n_resource; k++) {
        name_of(r, res_k[k]);
        name_of(r, res_v[k]);
        key_ptrs[k] = res_k[k];
        val_ptrs[k] = res_v[k];
    }
    spec.resource_keys = key_ptrs;
    spec.resource_values = val_ptrs;
}

typedef struct tensors {
    ey_tensor t[2 * MAX_T];
    void *data[2 * MAX_T];
} tensors;

static const size_t dsize[] = {4, 8, 4, 8, 1};

/* a tensor whose shape tells the truth about its exact-size buffer (or overflows int64):
   mostly a well-formed one of `batch` rows (1..4 dimensions of 1..3), else any shape */
static void make_tensor(rd *r, ey_tensor *t, void **data, int64_t batch)
{
    int32_t k, nd;
    int64_t numel = 1, i;
    unsigned mode = u8(r);
    memset(t, 0, sizeof *t);
    t->dtype = (ey_dtype)(u8(r) % 5);
    if (mode < 160) { /* [batch], [batch, 1..4], or [batch, 1..3, 1..2, 1..2] */
        unsigned c = u8(r);
        t->ndim = c % 4 == 3 ? 4 : c % 4 == 2 ? 1 : 2;
        t->shape[0] = batch;
        if (t->ndim == 2) t->shape[1] = 1 + (int64_t)(u8(r) % 4);
        for (k = 1; k < t->ndim && t->ndim == 4; k++)
            t->shape[k] = 1 + (int64_t)(u8(r) % (k == 1 ? 3 : 2));
    } else {
        t->ndim = (int32_t)(u8(r) % (EY_MAX_DIMS + 2)); /* 0..EY_MAX_DIMS + 1 */
    }
    nd = t->ndim < EY_MAX_DIMS ? t->ndim : EY_MAX_DIMS;
    for (k = 0; k < nd && mode >= 160; k++) {
        unsigned b = u8(r);
        t->shape[k] = b < 200 ? (int64_t)(b % 4) : b < 252 ? (int64_t)(b % 70) : -(int64_t)(b % 3);
    }
    for (k = 0; k < nd; k++) { /* bound the buffer: shrink trailing dimensions */
        int64_t d = t->shape[k] > 0 ? t->shape[k] : 0;
        if (d && numel * d > MAX_NUMEL) t->shape[k] = d = MAX_NUMEL / numel;
        numel *= d;
    }
    if (t->ndim > EY_MAX_DIMS || t->ndim < 1) numel = 0;
    if (mode % 32 == 31 && nd >= 3) { /* a byte size over int64: must be refused unread */
        t->shape[1] = (int64_t)1 << 40;
        t->shape[2] = (int64_t)1 << 40;
        numel = 1;
    }
    *data = malloc((size_t)numel * dsize[t->dtype]);
    for (i = 0; i < numel && *data != NULL; i++) {
        double v = f64(r);
        switch (t->dtype) {
        case EY_F32: ((float *)*data)[i] = (float)(fabs(v) < FLT_MAX || isnan(v) || isinf(v)
                                                   ? v : 1e30); break;
        case EY_F64: ((double *)*data)[i] = v; break;
        case EY_I32: ((int32_t *)*data)[i] = (int32_t)u16(r) - 32768; break;
        case EY_I64: {
            int64_t m = (int64_t)u16(r) * (u8(r) & 1 ? -1 : 1);
            ((int64_t *)*data)[i] = m * ((int64_t)1 << (u8(r) % 40));
            break;
        }
        default: ((uint8_t *)*data)[i] = (uint8_t)u8(r);
        }
    }
    t->data = mode % 32 == 30 ? NULL : *data;
}

static void do_observe(rd *r, uint64_t *calls)
{
    tensors ts;
    unsigned c = u8(r);
    int32_t n_in = c < 200 ? 1 + (int32_t)(c % 2) : (int32_t)(c % (MAX_T + 1)), k;
    int32_t n_out = (int32_t)(u8(r) % (MAX_T + 1));
    int32_t engine = (int32_t)(u8(r) % (EY_MAX_ENGINES + 4)) - 2;
    unsigned flags = u8(r);
    double lat = f64(r);
    int rc;
    unsigned b = u8(r);
    int64_t batch = b < 200 ? 1 + (int64_t)(b % 3) : (int64_t)(b % 70); /* > 64: chunked */
    memset(&ts, 0, sizeof ts);
    for (k = 0; k < n_in + n_out; k++) make_tensor(r, &ts.t[k], &ts.data[k], batch);
    rc = ey_window_observe(&w, flags & 1 ? NULL : ts.t, n_in, flags & 2 ? NULL : ts.t + n_in,
                           n_out, engine, lat, (int64_t)u16(r));
    if (rc == EY_OK) {
        ++*calls;
        n_observed++;
        n_sampled += !(flags & 1) && n_in > 0;
    }
    else if (rc != EY_E_ARG && rc != EY_E_SHAPE) fail("observe: unexpected status");
    if (u8(r) & 1 && spec.n_signals > 0) { /* one signal's projection of the same tensors */
        int32_t s = (int32_t)(u8(r) % (uint32_t)spec.n_signals);
        int64_t batch = (int64_t)(u8(r) % 9) - 1;
        double *out = malloc((size_t)(batch > 0 ? batch : 0) * sizeof(double));
        if (out != NULL || batch <= 0)
            (void)ey_project(&sigs[s], ts.t, n_in, ts.t + n_in, n_out, out, batch);
        free(out);
    }
    for (k = 0; k < n_in + n_out; k++) free(ts.data[k]);
}

static void do_encode(rd *r)
{
    unsigned c = u8(r);
    size_t cap = c < 200 ? c % 64 : u16(r) % 4096, need, need2, m;
    char *small = cap || (c & 1) ? malloc(cap) : NULL, *full;
    const char *end;
    need = ey_window_encode_otlp_json(&w, "0123abcd", small, cap);
    if (w.spec == NULL) {
        if (need != 0) fail("encode of an uninitialized window");
        free(small);
        return;
    }
    full = malloc(need + 1);
    if (full == NULL) fail("out of memory");
    need2 = ey_window_encode_otlp_json(&w, "0123abcd", full, need + 1);
    if (need2 != need || strlen(full) != need) fail("encode: length differs by buffer size");
    if (small != NULL && cap > 0) {
        m = need < cap - 1 ? need : cap - 1;
        if (small[m] != '\0' || memcmp(small, full, m) != 0)
            fail("encode: a small buffer's text is not the NUL-terminated prefix");
    }
    n_encoded++;
    end = js_value(full, 0);
    if (end == NULL || *js_ws(end) != '\0') {
        fprintf(stderr, "%s\n", full);
        fail("encode: not JSON");
    }
    free(full);
    free(small);
}

static void do_hist(rd *r)
{
    static ey_hist a, b, m;
    int32_t size = (int32_t)(u8(r) % 200) - 10, scale = (int32_t)(u8(r) % 40) - 15;
    int ok_a = ey_hist_init(&a, size, scale) == EY_OK;
    int ok_b = ey_hist_init(&b, (int32_t)(u8(r) % 170), (int32_t)(u8(r) % 32) - 11) == EY_OK;
    uint64_t added = 0;
    unsigned k, n_batches = u8(r) % 5;
    for (k = 0; k < n_batches && ok_a; k++) {
        size_t n = u8(r) % 80, i;
        double *v = malloc(n * sizeof(double));
        if (v == NULL && n) fail("out of memory");
        for (i = 0; i < n; i++) v[i] = f64(r);
        ey_hist_update(k & 1 && ok_b ? &b : &a, v, n);
        if (!(k & 1 && ok_b)) added += n;
        free(v);
    }
    if (ok_a && a.count + a.missing + a.non_finite != added) fail("hist: values lost");
    if (ok_a && ok_b && ey_hist_merge(&m, &a, &b) == EY_OK &&
        m.count + m.missing + m.non_finite !=
            a.count + a.missing + a.non_finite + b.count + b.missing + b.non_finite)
        fail("hist: merge lost values");
    if (ok_a && ok_b && ey_hist_merge(&a, &a, &b) != EY_OK) fail("hist: merge in place");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r;
    int32_t k;
    uint64_t calls = 0, engine_calls = 0;
    int inited;
    r.p = data;
    r.n = size;
    fb[0][0] = fb[1][0] = fb[2][0] = '\0'; /* nothing carries over from the previous input */
    make_spec(&r);
    inited = ey_window_init(&w, &spec, (int64_t)u16(&r)) == EY_OK;
    n_runs++;
    n_inited += inited;
    if (!inited && w.spec != NULL) fail("a failed init left a spec");
    while (r.n > 0) {
        unsigned op = u8(&r) % 8;
        switch (op) {
        case 0: case 1: do_observe(&r, &calls); break;
        case 2:
            if (u8(&r) >= 96) { /* else the same names again: a repeat adds up */
                name_of(&r, fb[0]);
                name_of(&r, fb[1]);
                name_of(&r, fb[2]);
            }
            (void)ey_window_add_fallback(&w, fb[0], fb[1], fb[2], u8(&r));
            break;
        case 3: {
            size_t n = u8(&r) % 70, i;
            double *v = n || u8(&r) & 1 ? malloc(n * sizeof(double)) : NULL;
            for (i = 0; i < n && v != NULL; i++) v[i] = f64(&r);
            (void)ey_window_add_values(&w, (int32_t)(u8(&r) % (MAX_SIG + 2)) - 1, v, n);
            free(v);
            break;
        }
        case 4: ey_window_add_dropped(&w, u8(&r)); break;
        case 5: do_encode(&r); break;
        case 6: do_hist(&r); break;
        default: break;
        }
    }
    do_encode(&r);
    if (inited) {
        for (k = 0; k <= spec.n_engines; k++) engine_calls += w.engine_calls[k];
        if (w.calls != calls || engine_calls != calls ||
            w.latency.count + w.latency.missing + w.latency.non_finite != calls)
            fail("counters do not add up");
    } else if (calls != 0) {
        fail("observe accepted a call on a window whose init failed");
    }
    for (k = 0; k < spec.n_signals; k++) free(dirs[k]);
    return 0;
}
