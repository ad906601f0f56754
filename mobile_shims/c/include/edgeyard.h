/*
 * edgeyard telemetry in C99: the exponential-histogram sketch, a telemetry window with the
 * release's analytical projections, and its OTLP/JSON encoding. No dependencies beyond libc and
 * libm; no allocation: every object is a fixed-size struct the caller places (static, stack or
 * one malloc of its own). No global state; not thread-safe per object (one window per thread,
 * or a lock of the app's around it).
 *
 * Bit-for-bit contract with the Python package (src/edgeyard/telemetry/sketch.py): for the same
 * values given in the same batches, ey_hist_update gives the same scale, bucket offsets and
 * counts, zero/missing/non-finite counts, count, sum (numpy's pairwise summation), min and max
 * (up to the sign of a zero), and ey_hist_merge the same merge. Bucket indices at positive
 * scales use libm's log(), as opentelemetry-sdk does: a libm that is not correctly rounded near
 * a bucket boundary (rare) can move a value by one bucket.
 *
 * Memory bound (defaults; each macro may be set at compile time, -DEY_MAX_SIGNALS=...):
 *   sizeof(ey_hist)   ~= 2 * EY_SKETCH_CAPACITY * 8 + 96 bytes      (160: ~2.6 KB)
 *   sizeof(ey_window) ~= (EY_MAX_SIGNALS + 2 + EY_MAX_ENGINES) * sizeof(ey_hist)
 *                        + EY_MAX_CLASSES * 8 + EY_MAX_FALLBACKS * 3 * EY_NAME_LEN  (195,992 bytes on x86-64)
 * The projections use no scratch memory beyond a few doubles on the stack.
 */
#ifndef EDGEYARD_H
#define EDGEYARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef EY_SKETCH_CAPACITY
#define EY_SKETCH_CAPACITY 160 /* buckets per sign; a sketch's max_size is at most this */
#endif
#ifndef EY_MAX_SIGNALS
#define EY_MAX_SIGNALS 64
#endif
#ifndef EY_MAX_ENGINES
#define EY_MAX_ENGINES 4
#endif
#ifndef EY_MAX_CLASSES
#define EY_MAX_CLASSES 1024
#endif
#ifndef EY_MAX_FALLBACKS
#define EY_MAX_FALLBACKS 8
#endif
#define EY_NAME_LEN 48
#define EY_MAX_DIMS 8
/* observe()'s engine for a call that no engine answered (every engine failed): recorded, as
   the Python collector records engine None, under the engine name "none" (in latency_ms, in
   latency_ms.by_engine and in calls, sorted by name with the others; a spec engine named
   "none" is the same engine). */
#define EY_ENGINE_NONE (-1)
#define EY_ENGINE_NONE_NAME "none"

enum {
    EY_OK = 0,
    EY_E_ARG = -1,   /* an argument is out of range (NULL, size, index) */
    EY_E_SPEC = -2,  /* the spec does not fit the compile-time bounds or is inconsistent */
    EY_E_FULL = -3,  /* a fixed table is full (fallback kinds) */
    EY_E_SHAPE = -4  /* a tensor's shape or dtype does not fit the signal */
};

/* ---- the sketch --------------------------------------------------------------------------- */

typedef struct ey_buckets {
    int64_t offset;  /* index of counts[0] */
    int32_t len;     /* 0: empty; the first and last counts are never 0 */
    uint64_t counts[EY_SKETCH_CAPACITY];
} ey_buckets;

typedef struct ey_hist {
    int32_t max_size, max_scale, scale;
    ey_buckets positive, negative;
    uint64_t zero_count, count;  /* count: finite values, zeros included */
    uint64_t missing, non_finite;  /* NaN; +-Inf (never in the buckets) */
    double sum, min, max;  /* min = +Inf, max = -Inf while count is 0 */
} ey_hist;

/* max_size in 2..EY_SKETCH_CAPACITY (Python default 160), max_scale in -10..20 (default 20). */
int ey_hist_init(ey_hist *h, int32_t max_size, int32_t max_scale);
/* One batch, as ExpHistogram.update(values): the batch's sum is numpy's pairwise sum. */
void ey_hist_update(ey_hist *h, const double *values, size_t n);
/* out = merge(a, b) (ExpHistogram.merge); out may be a or b. */
int ey_hist_merge(ey_hist *out, const ey_hist *a, const ey_hist *b);
/* The scale as exported: 0 while only zeros were seen. */
int32_t ey_hist_reported_scale(const ey_hist *h);
/* opentelemetry-sdk's bucket index of a positive finite value at `scale`. */
int64_t ey_map_to_index(double value, int32_t scale);
/* numpy's float64 / float32 pairwise sum (the order np.sum adds a contiguous row in). */
double ey_pairwise_sum(const double *a, size_t n);
float ey_pairwise_sum_f32(const float *a, size_t n);

/* ---- the window ---------------------------------------------------------------------------- */

typedef enum ey_signal_kind {
    EY_SIG_MEAN, EY_SIG_STD, EY_SIG_MIN, EY_SIG_MAX, EY_SIG_CHANNEL_MEAN, EY_SIG_LENGTH,
    EY_SIG_RANDOM_PROJECTION, EY_SIG_TOP1_CONFIDENCE, EY_SIG_ENTROPY, EY_SIG_OUTPUT_MEAN,
    EY_SIG_EXTERNAL  /* values the app computes itself (ey_window_add_values) */
} ey_signal_kind;

/* One entry of the manifest's telemetry.projections.signals (projections.py). */
typedef struct ey_signal_spec {
    const char *name;          /* as in the manifest, e.g. "input.x.mean" (no "edgeyard.");
                                  any length: the encoder writes the whole name */
    ey_signal_kind kind;
    int32_t tensor;            /* the "input" index, or the "output" index for output kinds */
    int32_t channel;           /* channel_mean */
    int32_t softmax;           /* top1_confidence / entropy: 1 when activation is "softmax" */
    const double *direction;   /* random_projection: `dim` values, already scaled by
                                  1/sqrt(dim) (numpy's seeded draw, shipped as data) */
    int64_t dim;
} ey_signal_spec;

typedef struct ey_spec {
    const ey_signal_spec *signals;
    int32_t n_signals;           /* <= EY_MAX_SIGNALS */
    int32_t classes;             /* classes.count, 0 for none; <= EY_MAX_CLASSES */
    int32_t class_output;        /* classes.output */
    const char *class_name;      /* classes.name (NULL: "output.class") */
    int32_t max_size, max_scale; /* sketch (0: 160 and 20) */
    const char *const *engines;  /* engine names, distinct; observe() takes an index into
                                    them (or EY_ENGINE_NONE) */
    int32_t n_engines;           /* 1..EY_MAX_ENGINES */
    const char *const *resource_keys;   /* resource attributes (string values), in order */
    const char *const *resource_values;
    int32_t n_resource;
} ey_spec;

typedef enum ey_dtype { EY_F32, EY_F64, EY_I32, EY_I64, EY_U8 } ey_dtype;

typedef struct ey_tensor {
    const void *data;  /* C-contiguous */
    ey_dtype dtype;
    int32_t ndim;      /* >= 1; shape[0] is the batch */
    int64_t shape[EY_MAX_DIMS];
} ey_tensor;

typedef struct ey_fallback {
    char engine[EY_NAME_LEN], kind[EY_NAME_LEN], reason[EY_NAME_LEN];
    uint64_t count;
} ey_fallback;

typedef struct ey_window {
    const ey_spec *spec;  /* borrowed: must outlive the window */
    int64_t start_ns, end_ns;
    ey_hist signals[EY_MAX_SIGNALS];
    ey_hist latency;  /* "latency_ms" */
    /* per engine; slot none_slot holds the calls no engine answered ("none"): n_engines, or
       the index of a spec engine named "none" */
    ey_hist engine_latency[EY_MAX_ENGINES + 1];
    uint64_t engine_calls[EY_MAX_ENGINES + 1];
    int32_t none_slot;
    uint64_t classes[EY_MAX_CLASSES];
    ey_fallback fallbacks[EY_MAX_FALLBACKS];
    int32_t n_fallbacks;
    uint64_t calls, sampled, dropped;
} ey_window;

int ey_window_init(ey_window *w, const ey_spec *spec, int64_t start_ns);
/* One call (Collector._add for one call): inputs/outputs are the call's tensors with the batch
   first (n_inputs 0 or inputs NULL: a call not sampled, only counters and latency; outputs may
   be absent alone, as for a call every engine failed). engine: an index into spec->engines, or
   EY_ENGINE_NONE when no engine answered. latency_s in seconds (stored in ms, as the Python
   collector does). */
int ey_window_observe(ey_window *w, const ey_tensor *inputs, int32_t n_inputs,
                      const ey_tensor *outputs, int32_t n_outputs, int32_t engine,
                      double latency_s, int64_t now_ns);
/* The per-sample values of one signal for a batch (what observe computes), into out[batch]. */
int ey_project(const ey_signal_spec *s, const ey_tensor *inputs, int32_t n_inputs,
               const ey_tensor *outputs, int32_t n_outputs, double *out, int64_t batch);
/* Values of a signal computed elsewhere (any kind; one sketch update). */
int ey_window_add_values(ey_window *w, int32_t signal, const double *values, size_t n);
int ey_window_add_fallback(ey_window *w, const char *engine, const char *kind,
                           const char *reason, uint64_t n);
void ey_window_add_dropped(ey_window *w, uint64_t n);

/* The window as an OTLP/JSON ExportMetricsServiceRequest (one ResourceMetrics), the resource
   attributes followed by edgeyard.upload_id = upload_id (e.g. 32 random hex digits). Writes at
   most cap bytes (NUL-terminated when cap > 0) and returns the length the whole text needs
   without its NUL: when that is >= cap, call again with a buffer of at least return + 1. */
size_t ey_window_encode_otlp_json(const ey_window *w, const char *upload_id, char *buf,
                                  size_t cap);

#ifdef __cplusplus
}
#endif
#endif
