/* A telemetry window and the analytical projections (window.py, projections.py in C).
 *
 * Each projection adds in the order numpy does (pairwise sums over a row, the float32 channel
 * mean in float32), so mean, std, min, max, channel mean, length, output mean, random
 * projections (products summed pairwise, as projections.py does instead of a BLAS product),
 * a top-1 confidence without softmax and the predicted class equal Python's bit for bit, on
 * any machine. Not bit for bit (within 1e-12 relative): everything after a softmax or a log
 * (numpy's exp and log are its own SIMD code, picked by processor, not libm). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <string.h>

#include "edgeyard.h"
#include "internal.h"

#ifndef EY_MAX_BATCH
#define EY_MAX_BATCH 64 /* samples per sketch update; a bigger batch is added in chunks */
#endif

static size_t dtype_size(ey_dtype t)
{
    switch (t) {
    case EY_F32: case EY_I32: return 4;
    case EY_F64: case EY_I64: return 8;
    default: return 1;
    }
}

static double elem(const void *data, ey_dtype t, size_t i)
{
    switch (t) {
    case EY_F32: return (double)((const float *)data)[i];
    case EY_F64: return ((const double *)data)[i];
    case EY_I32: return (double)((const int32_t *)data)[i];
    case EY_I64: return (double)((const int64_t *)data)[i];
    default: return (double)((const uint8_t *)data)[i];
    }
}

static int64_t row_dim(const ey_tensor *t)
{
    int64_t d = 1;
    int32_t k;
    for (k = 1; k < t->ndim; k++) d *= t->shape[k];
    return d;
}

static const void *row_of(const ey_tensor *t, int64_t r, int64_t dim)
{
    return (const char *)t->data + (size_t)(r * dim) * dtype_size(t->dtype);
}

/* ---- cursors: a row's derived values, in order --------------------------------------------- */

static double next_value(ey_cursor *c)
{
    double x = elem(c->data, (ey_dtype)c->dtype, c->i++);
    return x;
}

static double next_square(ey_cursor *c) /* (x - mean)^2, as numpy's var: subtract, multiply */
{
    double x = elem(c->data, (ey_dtype)c->dtype, c->i++) - c->a;
    return x * x;
}

static double next_product(ey_cursor *c) /* x * direction, as numpy's multiply */
{
    double x = elem(c->data, (ey_dtype)c->dtype, c->i) * c->w[c->i];
    c->i++;
    return x;
}

static double next_exp(ey_cursor *c) /* exp(z - max) */
{
    return exp(elem(c->data, (ey_dtype)c->dtype, c->i++) - c->a);
}

static double prob(const ey_cursor *c, size_t i, int softmax)
{
    double z = elem(c->data, (ey_dtype)c->dtype, i);
    return softmax ? exp(z - c->a) / c->b : z;
}

static double next_plogp_soft(ey_cursor *c)
{
    double p = prob(c, c->i++, 1);
    return p * log(p < 1e-300 ? 1e-300 : p); /* np.clip keeps a NaN */
}

static double next_plogp(ey_cursor *c)
{
    double p = prob(c, c->i++, 0);
    return p * log(p < 1e-300 ? 1e-300 : p);
}

static double row_sum(const void *row, ey_dtype t, size_t n)
{
    ey_cursor c;
    if (t == EY_F64) return ey_pairwise_sum((const double *)row, n);
    c.data = row;
    c.i = 0;
    c.dtype = (int)t;
    c.next = next_value;
    return ey_pairwise_cursor(&c, n);
}

static double row_extreme(const void *row, ey_dtype t, size_t n, int want_max)
{
    double m = elem(row, t, 0);
    size_t i;
    if (isnan(m)) return m;
    for (i = 1; i < n; i++) {
        double x = elem(row, t, i);
        if (isnan(x)) return x;  /* numpy's min and max propagate NaN */
        if (want_max ? x > m : x < m) m = x;
    }
    return m;
}

static double project_row(const ey_signal_spec *s, const ey_tensor *t, int64_t r)
{
    int64_t dim = row_dim(t);
    const void *row = row_of(t, r, dim);
    size_t n = (size_t)dim, i;
    ey_cursor c;
    c.data = row;
    c.i = 0;
    c.dtype = (int)t->dtype;
    c.w = NULL;
    switch (s->kind) {
    case EY_SIG_MEAN:
    case EY_SIG_OUTPUT_MEAN:
        return row_sum(row, t->dtype, n) / (double)dim;
    case EY_SIG_STD:
        c.a = row_sum(row, t->dtype, n) / (double)dim;
        c.next = next_square;
        return sqrt(ey_pairwise_cursor(&c, n) / (double)dim);
    case EY_SIG_MIN:
        return row_extreme(row, t->dtype, n, 0);
    case EY_SIG_MAX:
        return row_extreme(row, t->dtype, n, 1);
    case EY_SIG_CHANNEL_MEAN: {
        int64_t plane = dim / t->shape[1];
        const char *p = (const char *)row + (size_t)(s->channel * plane) * dtype_size(t->dtype);
        if (t->dtype == EY_F32) /* numpy sums float32 in float32, divides by an intp */
            return (double)(float)((double)ey_pairwise_sum_f32((const float *)p, (size_t)plane)
                                   / (double)plane);
        return row_sum(p, t->dtype, (size_t)plane) / (double)plane;
    }
    case EY_SIG_LENGTH: {
        double k = 0;
        for (i = 0; i < n; i++) k += elem(row, t->dtype, i) != 0;
        return k;
    }
    case EY_SIG_RANDOM_PROJECTION:
        c.w = s->direction;
        c.next = next_product;
        return ey_pairwise_cursor(&c, n);
    case EY_SIG_TOP1_CONFIDENCE:
    case EY_SIG_ENTROPY:
        if (s->softmax) {
            c.a = row_extreme(row, t->dtype, n, 1);
            c.next = next_exp;
            c.b = ey_pairwise_cursor(&c, n);
        }
        if (s->kind == EY_SIG_TOP1_CONFIDENCE) {
            double m = prob(&c, 0, s->softmax);
            if (isnan(m)) return m;
            for (i = 1; i < n; i++) {
                double p = prob(&c, i, s->softmax);
                if (isnan(p)) return p;
                if (p > m) m = p;
            }
            return m;
        }
        c.i = 0;
        c.next = s->softmax ? next_plogp_soft : next_plogp;
        return -ey_pairwise_cursor(&c, n);
    default:
        return NAN;
    }
}

static int is_output_kind(ey_signal_kind k)
{
    return k == EY_SIG_TOP1_CONFIDENCE || k == EY_SIG_ENTROPY || k == EY_SIG_OUTPUT_MEAN;
}

static const ey_tensor *signal_tensor(const ey_signal_spec *s, const ey_tensor *inputs,
                                      int32_t n_inputs, const ey_tensor *outputs,
                                      int32_t n_outputs)
{
    const ey_tensor *t;
    if (s->kind == EY_SIG_EXTERNAL) return NULL;
    if (is_output_kind(s->kind)) {
        if (outputs == NULL || s->tensor < 0 || s->tensor >= n_outputs) return NULL;
        t = &outputs[s->tensor];
    } else {
        if (inputs == NULL || s->tensor < 0 || s->tensor >= n_inputs) return NULL;
        t = &inputs[s->tensor];
    }
    return t->data != NULL && t->ndim >= 1 && t->ndim <= EY_MAX_DIMS ? t : NULL;
}

/* A tensor the window can read: 1..EY_MAX_DIMS dimensions, none negative, data present, each
   row (everything after the batch) at least one value, and a byte size that fits in int64
   (the offsets below are computed in int64: a shape whose product overflows was undefined
   behaviour before it was read). */
static int tensor_ok(const ey_tensor *t)
{
    int32_t k;
    int64_t n = 8; /* the largest dtype's bytes */
    if (t->data == NULL || t->ndim < 1 || t->ndim > EY_MAX_DIMS) return 0;
    for (k = 0; k < t->ndim; k++) {
        if (t->shape[k] < 0) return 0;
        if (t->shape[k] > 0 && n > INT64_MAX / t->shape[k]) return 0;
        n *= t->shape[k] ? t->shape[k] : 1;
    }
    return row_dim(t) >= 1;
}

static int check_shape(const ey_signal_spec *s, const ey_tensor *t)
{
    int64_t dim;
    if (!tensor_ok(t)) return EY_E_SHAPE;
    dim = row_dim(t);
    if (s->kind == EY_SIG_CHANNEL_MEAN &&
        (t->ndim != 4 || s->channel < 0 || s->channel >= t->shape[1]))
        return EY_E_SHAPE;
    if (s->kind == EY_SIG_RANDOM_PROJECTION && (s->direction == NULL || s->dim != dim))
        return EY_E_SHAPE;
    return EY_OK;
}

int ey_project(const ey_signal_spec *s, const ey_tensor *inputs, int32_t n_inputs,
               const ey_tensor *outputs, int32_t n_outputs, double *out, int64_t batch)
{
    const ey_tensor *t;
    int64_t r;
    int rc;
    if (s == NULL || out == NULL) return EY_E_ARG;
    t = signal_tensor(s, inputs, n_inputs, outputs, n_outputs);
    if (t == NULL) return EY_E_ARG;
    if ((rc = check_shape(s, t)) != EY_OK) return rc;
    if (t->shape[0] < batch) return EY_E_SHAPE;
    for (r = 0; r < batch; r++) out[r] = project_row(s, t, r);
    return EY_OK;
}

/* ---- the window ---------------------------------------------------------------------------- */

int ey_window_init(ey_window *w, const ey_spec *spec, int64_t start_ns)
{
    int32_t max_size, max_scale, k;
    if (w == NULL) return EY_E_ARG;
    /* w->spec stays NULL until the end: a window whose init failed refuses every call
       (EY_E_ARG) instead of going on with its previous spec or half of this one */
    memset(w, 0, sizeof *w);
    if (spec == NULL) return EY_E_ARG;
    if (spec->n_signals < 0 || spec->n_signals > EY_MAX_SIGNALS || spec->classes < 0 ||
        spec->classes > EY_MAX_CLASSES || (spec->classes && spec->class_output < 0) ||
        spec->n_engines < 1 ||
        spec->n_engines > EY_MAX_ENGINES || (spec->n_signals && spec->signals == NULL) ||
        spec->engines == NULL || (spec->n_resource && (spec->resource_keys == NULL ||
                                                       spec->resource_values == NULL)))
        return EY_E_SPEC;
    max_size = spec->max_size ? spec->max_size : 160;
    max_scale = spec->max_size ? spec->max_scale : 20; /* max_size 0: both defaults */
    w->start_ns = w->end_ns = start_ns;
    for (k = 0; k < spec->n_signals; k++)
        if (spec->signals[k].name == NULL ||
            ey_hist_init(&w->signals[k], max_size, max_scale) != EY_OK)
            return EY_E_SPEC;
    w->none_slot = spec->n_engines;
    for (k = 0; k < spec->n_engines; k++) {
        int32_t j;
        if (spec->engines[k] == NULL) return EY_E_SPEC;
        for (j = 0; j < k; j++) /* Python counts calls by name: two slots would not merge */
            if (!strcmp(spec->engines[j], spec->engines[k])) return EY_E_SPEC;
        if (!strcmp(spec->engines[k], EY_ENGINE_NONE_NAME)) w->none_slot = k;
    }
    for (k = 0; k <= spec->n_engines; k++)
        if (ey_hist_init(&w->engine_latency[k], max_size, max_scale) != EY_OK) return EY_E_SPEC;
    if (ey_hist_init(&w->latency, max_size, max_scale) != EY_OK) return EY_E_SPEC;
    w->spec = spec;
    return EY_OK;
}

static int argmax_row(const ey_tensor *t, int64_t r)
{
    int64_t dim = row_dim(t), i, best = 0;
    const void *row = row_of(t, r, dim);
    double m = elem(row, t->dtype, 0);
    if (isnan(m)) return 0;
    for (i = 1; i < dim; i++) {
        double x = elem(row, t->dtype, (size_t)i);
        if (isnan(x)) return (int)i;  /* numpy's argmax: the first NaN */
        if (x > m) {
            m = x;
            best = i;
        }
    }
    return (int)best;
}

int ey_window_observe(ey_window *w, const ey_tensor *inputs, int32_t n_inputs,
                      const ey_tensor *outputs, int32_t n_outputs, int32_t engine,
                      double latency_s, int64_t now_ns)
{
    const ey_spec *spec;
    double lat_ms, vals[EY_MAX_BATCH];
    int32_t k;
    int rc;
    if (w == NULL || w->spec == NULL) return EY_E_ARG;
    spec = w->spec;
    if (engine == EY_ENGINE_NONE) engine = w->none_slot; /* Collector._add: None -> "none" */
    else if (engine < 0 || engine >= spec->n_engines) return EY_E_ARG;
    if (outputs == NULL) n_outputs = 0;
    if (inputs != NULL && n_inputs > 0) {
        int64_t batch = inputs[0].shape[0], r0;
        /* check everything first: a call is added whole or not at all */
        for (k = 0; k < spec->n_signals; k++) {
            const ey_signal_spec *s = &spec->signals[k];
            const ey_tensor *t;
            if (s->kind == EY_SIG_EXTERNAL) continue;
            if (is_output_kind(s->kind) && n_outputs == 0) continue;
            t = signal_tensor(s, inputs, n_inputs, outputs, n_outputs);
            if (t == NULL) return EY_E_ARG;
            if ((rc = check_shape(s, t)) != EY_OK || t->shape[0] != batch) return EY_E_SHAPE;
        }
        if (spec->classes && n_outputs > spec->class_output &&
            (!tensor_ok(&outputs[spec->class_output]) ||
             outputs[spec->class_output].shape[0] != batch))
            return EY_E_SHAPE;
        for (k = 0; k < spec->n_signals; k++) {
            const ey_signal_spec *s = &spec->signals[k];
            const ey_tensor *t;
            if (s->kind == EY_SIG_EXTERNAL || (is_output_kind(s->kind) && n_outputs == 0))
                continue;
            t = signal_tensor(s, inputs, n_inputs, outputs, n_outputs);
            for (r0 = 0; r0 < batch; r0 += EY_MAX_BATCH) {
                int64_t r, m = batch - r0 < EY_MAX_BATCH ? batch - r0 : EY_MAX_BATCH;
                for (r = 0; r < m; r++) vals[r] = project_row(s, t, r0 + r);
                ey_hist_update(&w->signals[k], vals, (size_t)m);
            }
        }
        if (spec->classes && n_outputs > spec->class_output) {
            const ey_tensor *t = &outputs[spec->class_output];
            int64_t r;
            for (r = 0; r < batch; r++) {
                int c = argmax_row(t, r);
                w->classes[c < spec->classes ? c : spec->classes - 1]++;
            }
        }
        w->sampled++;
    }
    lat_ms = latency_s * 1e3;
    ey_hist_update(&w->latency, &lat_ms, 1);
    ey_hist_update(&w->engine_latency[engine], &lat_ms, 1);
    w->engine_calls[engine]++;
    w->calls++;
    w->end_ns = now_ns;
    return EY_OK;
}

int ey_window_add_values(ey_window *w, int32_t signal, const double *values, size_t n)
{
    if (w == NULL || w->spec == NULL || signal < 0 || signal >= w->spec->n_signals ||
        (values == NULL && n))
        return EY_E_ARG;
    ey_hist_update(&w->signals[signal], values, n);
    return EY_OK;
}

/* A name that fits EY_NAME_LEN as is is copied. A longer one keeps its head, cut at a UTF-8
   character boundary (the server refuses text that is not UTF-8), then "~" and 8 hex digits
   of a hash (FNV-1a) of the whole name, so that long names differing only in their tails stay
   apart. */
static void copy_name(char *dst, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(src), keep = EY_NAME_LEN - 1 - 9, i;
    uint32_t h = 2166136261u;
    if (n <= EY_NAME_LEN - 1) {
        memcpy(dst, src, n + 1);
        return;
    }
    while (keep > 0 && ((unsigned char)src[keep] & 0xC0) == 0x80) keep--;
    for (i = 0; i < n; i++) h = (h ^ (unsigned char)src[i]) * 16777619u;
    memcpy(dst, src, keep);
    dst[keep] = '~';
    for (i = 0; i < 8; i++) dst[keep + 1 + i] = hex[(h >> (28 - 4 * i)) & 0xF];
    dst[keep + 9] = '\0';
}

int ey_window_add_fallback(ey_window *w, const char *engine, const char *kind,
                           const char *reason, uint64_t n)
{
    int32_t k;
    ey_fallback f;
    if (w == NULL || engine == NULL || kind == NULL || reason == NULL) return EY_E_ARG;
    memset(&f, 0, sizeof f);
    copy_name(f.engine, engine);
    copy_name(f.kind, kind);
    copy_name(f.reason, reason);
    for (k = 0; k < w->n_fallbacks; k++) {
        ey_fallback *g = &w->fallbacks[k];
        if (!strcmp(g->engine, f.engine) && !strcmp(g->kind, f.kind) &&
            !strcmp(g->reason, f.reason)) {
            g->count += n;
            return EY_OK;
        }
    }
    if (w->n_fallbacks == EY_MAX_FALLBACKS) return EY_E_FULL;
    f.count = n;
    w->fallbacks[w->n_fallbacks++] = f;
    return EY_OK;
}

void ey_window_add_dropped(ey_window *w, uint64_t n)
{
    if (w != NULL) w->dropped += n;
}
