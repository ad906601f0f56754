/* A window as OTLP/JSON (otlp.py's ResourceMetrics, in the protobuf JSON mapping the server's
 * json_format.Parse reads: lowerCamelCase names, 64-bit integers as strings, enums as numbers).
 * The text is canonical (fixed field order, shortest of %.15g/%.16g/%.17g that reads back
 * exactly) so that mobile_shims/testdata can hold the expected bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeyard.h"

#define DELTA 1 /* AGGREGATION_TEMPORALITY_DELTA */

typedef struct out {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

static void put_u64(out *o, uint64_t v) /* "123": fixed64 / uint64 are JSON strings */
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "\"%llu\"", (unsigned long long)v);
    put(o, tmp, (size_t)n);
}

static void put_i64(out *o, int64_t v, int quoted)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, quoted ? "\"%lld\"" : "%lld", (long long)v);
    put(o, tmp, (size_t)n);
}

static void put_double(out *o, double v)
{
    char tmp[40];
    int p, n = 0;
    if (isnan(v)) {
        puts_(o, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        puts_(o, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    for (p = 15; p <= 17; p++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", p, v);
        if (strtod(tmp, NULL) == v) break;
    }
    put(o, tmp, (size_t)n);
}

static void put_str_body(out *o, const char *s) /* json.dumps(s, ensure_ascii=False)[1:-1] */
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        switch (c) {
        case '"': puts_(o, "\\\""); break;
        case '\\': puts_(o, "\\\\"); break;
        case '\n': puts_(o, "\\n"); break;
        case '\r': puts_(o, "\\r"); break;
        case '\t': puts_(o, "\\t"); break;
        case '\b': puts_(o, "\\b"); break;
        case '\f': puts_(o, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                puts_(o, esc);
            } else {
                put(o, (const char *)&c, 1);
            }
        }
    }
}

static void put_str(out *o, const char *s) /* as Python's json.dumps(s, ensure_ascii=False) */
{
    put(o, "\"", 1);
    put_str_body(o, s);
    put(o, "\"", 1);
}

static void put_kv_str(out *o, const char *k, const char *v)
{
    puts_(o, "{\"key\":");
    put_str(o, k);
    puts_(o, ",\"value\":{\"stringValue\":");
    put_str(o, v);
    puts_(o, "}}");
}

static void put_times(out *o, const ey_window *w)
{
    puts_(o, "\"startTimeUnixNano\":");
    put_u64(o, (uint64_t)w->start_ns);
    puts_(o, ",\"timeUnixNano\":");
    put_u64(o, (uint64_t)(w->end_ns > w->start_ns ? w->end_ns : w->start_ns));
}

static void put_buckets(out *o, const ey_buckets *b)
{
    int32_t i;
    puts_(o, "{\"offset\":");
    put_i64(o, b->len ? b->offset : 0, 0);
    puts_(o, ",\"bucketCounts\":[");
    for (i = 0; i < b->len; i++) {
        if (i) put(o, ",", 1);
        put_u64(o, b->counts[i]);
    }
    puts_(o, "]}");
}

static void put_point(out *o, const ey_window *w, const ey_hist *h, const char *engine)
{
    puts_(o, "{");
    put_times(o, w);
    puts_(o, ",\"count\":");
    put_u64(o, h->count);
    puts_(o, ",\"sum\":");
    put_double(o, h->sum);
    puts_(o, ",\"scale\":");
    put_i64(o, ey_hist_reported_scale(h), 0);
    puts_(o, ",\"zeroCount\":");
    put_u64(o, h->zero_count);
    puts_(o, ",\"positive\":");
    put_buckets(o, &h->positive);
    puts_(o, ",\"negative\":");
    put_buckets(o, &h->negative);
    if (h->count) {
        puts_(o, ",\"min\":");
        put_double(o, h->min);
        puts_(o, ",\"max\":");
        put_double(o, h->max);
    }
    if (engine != NULL) {
        puts_(o, ",\"attributes\":[");
        put_kv_str(o, "engine", engine);
        puts_(o, "]");
    }
    puts_(o, "}");
}

/* name: "edgeyard." + name, written whole whatever its length (no intermediate buffer) */
static void begin_metric(out *o, int *first, const char *name, const char *unit)
{
    if (!*first) put(o, ",", 1);
    *first = 0;
    puts_(o, "{\"name\":\"edgeyard.");
    put_str_body(o, name);
    put(o, "\"", 1);
    if (unit != NULL) {
        puts_(o, ",\"unit\":");
        put_str(o, unit);
    }
}

static void put_histogram(out *o, int *first, const ey_window *w, const char *signal,
                          const ey_hist *h, int is_latency)
{
    if (h->count == 0 && h->missing == 0 && h->non_finite == 0) return;
    begin_metric(o, first, signal, is_latency ? "ms" : "1");
    puts_(o, ",\"exponentialHistogram\":{\"dataPoints\":[");
    put_point(o, w, h, NULL);
    puts_(o, "],\"aggregationTemporality\":1}}");
    if (h->missing || h->non_finite) {
        int any = 0;
        begin_metric(o, first, "invalid_values", NULL);
        puts_(o, ",\"sum\":{\"dataPoints\":[");
        if (h->missing) {
            puts_(o, "{");
            put_times(o, w);
            puts_(o, ",\"asInt\":");
            put_i64(o, (int64_t)h->missing, 1);
            puts_(o, ",\"attributes\":[");
            put_kv_str(o, "signal", signal);
            puts_(o, ",");
            put_kv_str(o, "kind", "missing");
            puts_(o, "]}");
            any = 1;
        }
        if (h->non_finite) {
            if (any) put(o, ",", 1);
            puts_(o, "{");
            put_times(o, w);
            puts_(o, ",\"asInt\":");
            put_i64(o, (int64_t)h->non_finite, 1);
            puts_(o, ",\"attributes\":[");
            put_kv_str(o, "signal", signal);
            puts_(o, ",");
            put_kv_str(o, "kind", "non_finite");
            puts_(o, "]}");
        }
        puts_(o, "],\"aggregationTemporality\":1,\"isMonotonic\":true}}");
    }
}

/* A counter metric: one data point per row with n > 0; rows' attributes written by attr(). */
typedef void (*attr_fn)(out *o, const ey_window *w, int32_t row);

static void put_counter(out *o, int *first, const ey_window *w, const char *name,
                        const uint64_t *values, const int32_t *rows, int32_t n, attr_fn attr)
{
    int32_t k;
    int any = 0;
    for (k = 0; k < n; k++) {
        if (!values[rows[k]]) continue;
        if (!any) {
            begin_metric(o, first, name, NULL);
            puts_(o, ",\"sum\":{\"dataPoints\":[");
        } else {
            put(o, ",", 1);
        }
        any = 1;
        puts_(o, "{");
        put_times(o, w);
        puts_(o, ",\"asInt\":");
        put_i64(o, (int64_t)values[rows[k]], 1);
        puts_(o, ",\"attributes\":[");
        if (attr != NULL) attr(o, w, rows[k]);
        puts_(o, "]}");
    }
    if (any) puts_(o, "],\"aggregationTemporality\":1,\"isMonotonic\":true}}");
}

static void class_attr(out *o, const ey_window *w, int32_t row)
{
    (void)w;
    puts_(o, "{\"key\":\"class\",\"value\":{\"intValue\":");
    put_i64(o, row, 1);
    puts_(o, "}}");
}

/* engine slot k's name: spec->engines[k], or "none" for the calls no engine answered */
static const char *engine_name(const ey_window *w, int32_t k)
{
    return k < w->spec->n_engines ? w->spec->engines[k] : EY_ENGINE_NONE_NAME;
}

static void engine_attr(out *o, const ey_window *w, int32_t row)
{
    put_kv_str(o, "engine", engine_name(w, row));
}

static void fallback_attr(out *o, const ey_window *w, int32_t row)
{
    const ey_fallback *f = &w->fallbacks[row];
    put_kv_str(o, "engine", f->engine);
    put(o, ",", 1);
    put_kv_str(o, "kind", f->kind);
    put(o, ",", 1);
    put_kv_str(o, "reason", f->reason);
}

static int fallback_cmp(const ey_fallback *a, const ey_fallback *b)
{
    int c = strcmp(a->engine, b->engine);
    if (c == 0) c = strcmp(a->kind, b->kind);
    return c ? c : strcmp(a->reason, b->reason);
}

size_t ey_window_encode_otlp_json(const ey_window *w, const char *upload_id, char *buf,
                                  size_t cap)
{
    out o;
    const ey_spec *spec;
    int32_t k, j, n_slots, order[EY_MAX_ENGINES + 1], frows[EY_MAX_FALLBACKS];
    int32_t crows[EY_MAX_CLASSES];
    uint64_t fvalues[EY_MAX_FALLBACKS], single[2];
    int first = 1;
    o.buf = buf;
    o.cap = buf == NULL ? 0 : cap;
    o.len = 0;
    if (w == NULL || w->spec == NULL) return 0;
    spec = w->spec;
    puts_(&o, "{\"resourceMetrics\":[{\"resource\":{\"attributes\":[");
    for (k = 0; k < spec->n_resource; k++) {
        put_kv_str(&o, spec->resource_keys[k], spec->resource_values[k]);
        put(&o, ",", 1);
    }
    put_kv_str(&o, "edgeyard.upload_id", upload_id != NULL ? upload_id : "");
    puts_(&o, "]},\"scopeMetrics\":[{\"scope\":{\"name\":\"edgeyard.telemetry\",\"version\":"
              "\"1\"},\"metrics\":[");
    for (k = 0; k < spec->n_signals; k++)
        put_histogram(&o, &first, w, spec->signals[k].name, &w->signals[k], 0);
    put_histogram(&o, &first, w, "latency_ms", &w->latency, 1);
    /* the spec's engines, and "none" unless a spec engine has that name, sorted by name
       (Python sorts str by code point: strcmp on UTF-8 agrees) */
    n_slots = spec->n_engines + (w->none_slot == spec->n_engines);
    for (k = 0; k < n_slots; k++) {
        int32_t v = k;
        for (j = k; j > 0 && strcmp(engine_name(w, order[j - 1]), engine_name(w, v)) > 0; j--)
            order[j] = order[j - 1];
        order[j] = v;
    }
    {
        int any = 0;
        for (k = 0; k < n_slots; k++) {
            const ey_hist *h = &w->engine_latency[order[k]];
            if (!w->engine_calls[order[k]] || !h->count) continue;
            if (!any) {
                begin_metric(&o, &first, "latency_ms.by_engine", "ms");
                puts_(&o, ",\"exponentialHistogram\":{\"dataPoints\":[");
            } else {
                put(&o, ",", 1);
            }
            any = 1;
            put_point(&o, w, h, engine_name(w, order[k]));
        }
        if (any) puts_(&o, "],\"aggregationTemporality\":1}}");
    }
    for (k = 0; k < spec->classes; k++) crows[k] = k;
    put_counter(&o, &first, w, spec->class_name ? spec->class_name : "output.class", w->classes,
                crows, spec->classes, class_attr);
    put_counter(&o, &first, w, "calls", w->engine_calls, order, n_slots, engine_attr);
    for (k = 0; k < w->n_fallbacks; k++) {
        int32_t v = k;
        fvalues[k] = w->fallbacks[k].count;
        for (j = k; j > 0 && fallback_cmp(&w->fallbacks[frows[j - 1]], &w->fallbacks[v]) > 0;
             j--)
            frows[j] = frows[j - 1];
        frows[j] = v;
    }
    put_counter(&o, &first, w, "fallbacks", fvalues, frows, w->n_fallbacks, fallback_attr);
    single[0] = w->dropped;
    single[1] = w->sampled;
    crows[0] = 0;
    put_counter(&o, &first, w, "telemetry.dropped", &single[0], crows, 1, NULL);
    put_counter(&o, &first, w, "telemetry.sampled", &single[1], crows, 1, NULL);
    puts_(&o, "]}]}]}");
    if (o.cap) buf[o.len < o.cap ? o.len : o.cap - 1] = '\0';
    return o.len;
}
