/* Replays mobile_shims/testdata/vectors.txt (written by the Python implementation) against the
 * C library: every index, sketch state, merge, projection and the window's OTLP JSON.
 *
 *     test_vectors <testdata dir>
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeyard.h"

#define MAX_HISTS 64
#define MAX_TENSORS 8
#define TOK 256

static FILE *in;
static char dir[1024];
static int failures, checks;

static int tok(char *t)
{
    return fscanf(in, "%255s", t) == 1;
}

static long long num(void)
{
    char t[TOK];
    if (!tok(t)) {
        fprintf(stderr, "unexpected end of vectors\n");
        exit(2);
    }
    return strtoll(t, NULL, 10);
}

static double dbl(void)
{
    char t[TOK];
    unsigned long long bits;
    double v;
    if (!tok(t)) exit(2);
    bits = strtoull(t, NULL, 16);
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void str(char *dst)
{
    if (!tok(dst)) exit(2);
}

static void fail(const char *what, const char *name, double want, double got)
{
    if (failures < 40)
        fprintf(stderr, "FAIL %s %s: want %.17g got %.17g\n", what, name, want, got);
    failures++;
}

static void check_i(const char *what, const char *name, long long want, long long got)
{
    checks++;
    if (want != got) fail(what, name, (double)want, (double)got);
}

/* bit for bit, but NaN equals NaN whatever its sign and payload (ARM and x86-64 differ in
   the sign of the NaN an invalid operation gives) */
static int same_bits(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* ---- sketches ------------------------------------------------------------------------------ */

static ey_hist hists[MAX_HISTS];
static char hist_names[MAX_HISTS][TOK];
static int n_hists;

static ey_hist *find(const char *name)
{
    int k;
    for (k = 0; k < n_hists; k++)
        if (!strcmp(hist_names[k], name)) return &hists[k];
    fprintf(stderr, "no sketch %s\n", name);
    exit(2);
}

static ey_hist *fresh(const char *name)
{
    if (n_hists == MAX_HISTS) exit(2);
    strcpy(hist_names[n_hists], name);
    return &hists[n_hists++];
}

static void check_buckets(const char *name, const char *side, const ey_buckets *b)
{
    long long off = num(), len = num(), i;
    char what[TOK];
    snprintf(what, sizeof what, "%s.len", side);
    check_i(what, name, len, b->len);
    if (len) {
        snprintf(what, sizeof what, "%s.offset", side);
        check_i(what, name, off, b->offset);
    }
    for (i = 0; i < len; i++) {
        long long c = num();
        if (i < b->len) {
            snprintf(what, sizeof what, "%s.counts[%lld]", side, i);
            check_i(what, name, c, (long long)b->counts[i]);
        }
    }
}

static void check_state(void)
{
    char name[TOK];
    ey_hist *h;
    double sum, mn, mx;
    str(name);
    h = find(name);
    check_i("scale", name, num(), h->scale);
    check_i("reported_scale", name, num(), ey_hist_reported_scale(h));
    check_i("count", name, num(), (long long)h->count);
    check_i("zero_count", name, num(), (long long)h->zero_count);
    check_i("missing", name, num(), (long long)h->missing);
    check_i("non_finite", name, num(), (long long)h->non_finite);
    sum = dbl();
    mn = dbl();
    mx = dbl();
    checks += 3;
    if (!same_bits(sum, h->sum)) fail("sum", name, sum, h->sum);
    if (mn != h->min) fail("min", name, mn, h->min); /* == : numpy's sign of a 0 min varies */
    if (mx != h->max) fail("max", name, mx, h->max);
    check_buckets(name, "positive", &h->positive);
    check_buckets(name, "negative", &h->negative);
}

/* ---- windows ------------------------------------------------------------------------------- */

static char names[EY_MAX_SIGNALS + 8][TOK], engine_names[EY_MAX_ENGINES][TOK];
static char res_keys[16][TOK], res_vals[16][TOK], class_name[TOK];
static const char *engine_ptrs[EY_MAX_ENGINES], *key_ptrs[16], *val_ptrs[16];
static ey_signal_spec sigs[EY_MAX_SIGNALS];
static double *directions[EY_MAX_SIGNALS];
static ey_spec spec;
static ey_window window;
static ey_tensor tensors[MAX_TENSORS];
static void *tensor_data[MAX_TENSORS];
static int n_in, n_out;

static ey_signal_kind kind_of(const char *k)
{
    static const char *kinds[] = {"mean", "std", "min", "max", "channel_mean", "length",
                                  "random_projection", "top1_confidence", "entropy",
                                  "output_mean"};
    int i;
    for (i = 0; i < 10; i++)
        if (!strcmp(kinds[i], k)) return (ey_signal_kind)i;
    fprintf(stderr, "unknown kind %s\n", k);
    exit(2);
}

static void read_window(void)
{
    char name[TOK];
    int k, n;
    int64_t start;
    for (k = 0; k < spec.n_signals; k++) free(directions[k]);
    memset(&spec, 0, sizeof spec);
    str(name);
    start = num();
    spec.n_engines = (int32_t)num();
    for (k = 0; k < spec.n_engines; k++) {
        str(engine_names[k]);
        engine_ptrs[k] = engine_names[k];
    }
    spec.engines = engine_ptrs;
    spec.n_resource = (int32_t)num();
    for (k = 0; k < spec.n_resource; k++) {
        str(res_keys[k]);
        str(res_vals[k]);
        key_ptrs[k] = res_keys[k];
        val_ptrs[k] = res_vals[k];
    }
    spec.resource_keys = key_ptrs;
    spec.resource_values = val_ptrs;
    spec.classes = (int32_t)num();
    spec.class_output = (int32_t)num();
    str(class_name);
    spec.class_name = class_name;
    spec.max_size = (int32_t)num();
    spec.max_scale = (int32_t)num();
    n = (int)num();
    spec.n_signals = n;
    for (k = 0; k < n; k++) {
        char t[TOK];
        int64_t d;
        str(t); /* "sig" */
        str(names[k]);
        sigs[k].name = names[k];
        str(t);
        sigs[k].kind = kind_of(t);
        sigs[k].tensor = (int32_t)num();
        sigs[k].channel = (int32_t)num();
        sigs[k].softmax = (int32_t)num();
        sigs[k].dim = num();
        directions[k] = NULL;
        if (sigs[k].dim) {
            directions[k] = malloc((size_t)sigs[k].dim * sizeof(double));
            for (d = 0; d < sigs[k].dim; d++) directions[k][d] = dbl();
        }
        sigs[k].direction = directions[k];
    }
    spec.signals = sigs;
    check_i("window_init", name, EY_OK, ey_window_init(&window, &spec, start));
}

static void read_tensor(int k)
{
    char t[TOK];
    int64_t numel = 1, i;
    int d;
    ey_tensor *x = &tensors[k];
    str(t); /* "tensor" */
    str(t);
    x->dtype = !strcmp(t, "f32") ? EY_F32 : !strcmp(t, "f64") ? EY_F64 : !strcmp(t, "i32")
               ? EY_I32 : !strcmp(t, "i64") ? EY_I64 : EY_U8;
    x->ndim = (int32_t)num();
    for (d = 0; d < x->ndim; d++) numel *= x->shape[d] = num();
    free(tensor_data[k]);
    tensor_data[k] = malloc((size_t)numel * 8);
    for (i = 0; i < numel; i++) {
        double v = dbl();
        switch (x->dtype) {
        case EY_F32: ((float *)tensor_data[k])[i] = (float)v; break;
        case EY_F64: ((double *)tensor_data[k])[i] = v; break;
        case EY_I32: ((int32_t *)tensor_data[k])[i] = (int32_t)v; break;
        case EY_I64: ((int64_t *)tensor_data[k])[i] = (int64_t)v; break;
        default: ((uint8_t *)tensor_data[k])[i] = (uint8_t)v;
        }
    }
    x->data = tensor_data[k];
}

static void read_call(void)
{
    int32_t engine = (int32_t)num();
    double latency = dbl();
    int64_t now = num();
    int k;
    n_in = (int)num();
    n_out = (int)num();
    for (k = 0; k < n_in + n_out; k++) read_tensor(k);
    check_i("observe", "call", EY_OK,
            ey_window_observe(&window, n_in ? tensors : NULL, n_in,
                              n_out ? tensors + n_in : NULL, n_out, engine, latency, now));
}

static void check_projection(void)
{
    int sig = (int)num(), exact = (int)num(), batch = (int)num(), r;
    double got[TOK];
    int rc = ey_project(&sigs[sig], tensors, n_in, tensors + n_in, n_out, got, batch);
    check_i("project", sigs[sig].name, EY_OK, rc);
    for (r = 0; r < batch; r++) {
        double want = dbl();
        int ok = exact ? same_bits(want, got[r]) || (want == 0 && got[r] == 0)
                       : (isnan(want) && isnan(got[r])) || want == got[r] ||
                         fabs(want - got[r]) <= 1e-12 * (1 + fabs(want));
        checks++;
        if (!ok) fail(exact ? "projection (exact)" : "projection", sigs[sig].name, want, got[r]);
    }
}

static void check_encode(void)
{
    char upload[TOK], file[TOK], path[1400];
    size_t need, need2, n;
    char small[16], *buf, *want;
    FILE *f;
    str(upload);
    str(file);
    need = ey_window_encode_otlp_json(&window, upload, small, sizeof small);
    checks++;
    if (small[sizeof small - 1] != '\0') fail("truncated text is NUL-terminated", file, 0, 1);
    buf = malloc(need + 1);
    need2 = ey_window_encode_otlp_json(&window, upload, buf, need + 1);
    check_i("encode length", file, (long long)need, (long long)need2);
    check_i("encode strlen", file, (long long)need, (long long)strlen(buf));
    if (strcmp(file, "-") != 0) {
        snprintf(path, sizeof path, "%s/%s", dir, file);
        f = fopen(path, "rb");
        if (f == NULL) {
            fprintf(stderr, "cannot open %s\n", path);
            exit(2);
        }
        want = malloc(1 << 20);
        n = fread(want, 1, (1 << 20) - 1, f);
        fclose(f);
        while (n && (want[n - 1] == '\n')) n--;
        want[n] = '\0';
        checks++;
        if (strcmp(want, buf) != 0) {
            size_t i = 0;
            while (want[i] && want[i] == buf[i]) i++;
            fprintf(stderr, "FAIL encode %s differs at byte %lu:\n  want ...%.120s\n  got  ...%.120s\n",
                    file, (unsigned long)i, want + (i > 40 ? i - 40 : 0),
                    buf + (i > 40 ? i - 40 : 0));
            failures++;
        }
        free(want);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    char t[TOK], path[1400];
    int k;
    if (argc != 2) {
        fprintf(stderr, "usage: test_vectors <testdata dir>\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    snprintf(path, sizeof path, "%s/vectors.txt", dir);
    in = fopen(path, "r");
    if (in == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return 2;
    }
    while (tok(t)) {
        if (t[0] == '#') {
            int c;
            while ((c = fgetc(in)) != EOF && c != '\n') {}
        } else if (!strcmp(t, "index")) {
            int32_t scale = (int32_t)num();
            double v = dbl();
            long long want = num();
            char name[TOK];
            snprintf(name, sizeof name, "%a@%d", v, scale);
            check_i("index", name, want, ey_map_to_index(v, scale));
        } else if (!strcmp(t, "hist")) {
            char name[TOK];
            int32_t size, scale;
            str(name);
            size = (int32_t)num();
            scale = (int32_t)num();
            check_i("init", name, EY_OK, ey_hist_init(fresh(name), size, scale));
        } else if (!strcmp(t, "update")) {
            long long n = num(), i;
            double *v = malloc((size_t)(n ? n : 1) * sizeof(double));
            for (i = 0; i < n; i++) v[i] = dbl();
            ey_hist_update(&hists[n_hists - 1], v, (size_t)n);
            free(v);
        } else if (!strcmp(t, "merge")) {
            char name[TOK], a[TOK], b[TOK];
            str(name);
            str(a);
            str(b);
            check_i("merge", name, EY_OK, ey_hist_merge(fresh(name), find(a), find(b)));
        } else if (!strcmp(t, "state")) {
            check_state();
        } else if (!strcmp(t, "window")) {
            read_window();
        } else if (!strcmp(t, "call")) {
            read_call();
        } else if (!strcmp(t, "proj")) {
            check_projection();
        } else if (!strcmp(t, "fallback")) {
            char e[TOK], kind[TOK], reason[TOK];
            str(e);
            str(kind);
            str(reason);
            check_i("fallback", e, EY_OK,
                    ey_window_add_fallback(&window, e, kind, reason, (uint64_t)num()));
        } else if (!strcmp(t, "dropped")) {
            ey_window_add_dropped(&window, (uint64_t)num());
        } else if (!strcmp(t, "encode")) {
            check_encode();
        } else {
            fprintf(stderr, "unknown record %s\n", t);
            return 2;
        }
    }
    fclose(in);
    for (k = 0; k < MAX_TENSORS; k++) free(tensor_data[k]);
    for (k = 0; k < spec.n_signals; k++) free(directions[k]);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
