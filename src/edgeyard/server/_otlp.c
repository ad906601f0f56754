/* The ingestion service's fast path for the OTLP bodies edgeyard's collectors send.
 *
 * `scan(body)` reads a serialized ExportMetricsServiceRequest straight from its wire format and
 * returns, per ResourceMetrics, what `decode.py` needs to build its `Upload`: the resource's
 * attributes, and each data point's name, attributes, values and times, with every check of
 * `decode.sketch_from_point` already made. It handles the common case only (delta exponential
 * histograms and delta monotonic integer sums, every point valid) and returns None for anything
 * else: a body that is not valid protobuf, an invalid or refused point, cumulative temporality,
 * explicit-bucket histograms, gauges, summaries, double-valued sums, flags, array / kvlist /
 * bytes attribute values, a singular message field given twice (protobuf merges those). The
 * caller then decodes the body with the protobuf runtime and the Python checks, which give
 * every reason; this module never decides that a body is wrong.
 *
 * Field numbers: opentelemetry/proto/{collector/metrics,metrics,resource,common}/v1 (OTLP 1.x).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_COUNT ((uint64_t)9007199254740991ULL) /* 2^53 - 1 */
#define MAX_TIME_NS ((uint64_t)INT64_MAX)
#define MIN_SCALE (-10)
#define MAX_SCALE 20
#define MAX_BUCKETS 16384
#define MAX_SIGNAL 300 /* characters of a metric name */

typedef struct {
    const uint8_t *p, *end;
} Rd;

/* Every reader returns 0 (read), BAIL (not the common case, or not valid protobuf: the Python
 * path decides) or ERR (a Python exception is set, e.g. out of memory). */
#define BAIL (-1)
#define ERR (-2)
#define TRY(x) do { int rc_ = (x); if (rc_) return rc_; } while (0)

static int varint(Rd *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return BAIL;
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1) return BAIL;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return BAIL;
}

static int fixed64(Rd *r, uint64_t *out) {
    if (r->end - r->p < 8) return BAIL;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | r->p[i];
    r->p += 8;
    *out = v;
    return 0;
}

static int f64(Rd *r, double *out) {
    uint64_t bits;
    TRY(fixed64(r, &bits));
    memcpy(out, &bits, 8);
    return 0;
}

static int tag(Rd *r, uint32_t *field, uint32_t *wire) {
    uint64_t t;
    if (varint(r, &t) || t > UINT32_MAX || (t >> 3) == 0) return BAIL;
    *field = (uint32_t)(t >> 3);
    *wire = (uint32_t)(t & 7);
    return 0;
}

/* the contents of a length-delimited field */
static int sub(Rd *r, Rd *out) {
    uint64_t n;
    if (varint(r, &n) || n > (uint64_t)(r->end - r->p)) return BAIL;
    out->p = r->p;
    out->end = r->p + n;
    r->p += n;
    return 0;
}

/* a field this module does not know: skipped, as protobuf skips unknown fields */
static int skip(Rd *r, uint32_t wire) {
    uint64_t v;
    Rd s;
    switch (wire) {
    case 0: return varint(r, &v);
    case 1: if (r->end - r->p < 8) return BAIL; r->p += 8; return 0;
    case 2: return sub(r, &s);
    case 5: if (r->end - r->p < 4) return BAIL; r->p += 4; return 0;
    default: return BAIL; /* groups: not in OTLP */
    }
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), as the protobuf
 * runtime checks every proto3 string field. */
static int utf8_ok(const uint8_t *s, const uint8_t *end) {
    while (s < end) {
        uint8_t c = *s;
        if (c < 0x80) { s++; continue; }
        int n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
        else return 0;
        if (end - s <= n) return 0;
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        s += n + 1;
    }
    return 1;
}

/* a string field read as text (out != NULL) or only checked */
static int text(Rd *r, uint32_t wire, PyObject **out) {
    Rd s;
    if (wire != 2) return BAIL;
    TRY(sub(r, &s));
    if (!utf8_ok(s.p, s.end)) return BAIL;
    if (!out) return 0;
    PyObject *t = PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, NULL);
    if (!t) return ERR;
    Py_XSETREF(*out, t); /* a singular field given twice: the last one wins */
    return 0;
}

static int number(Rd *r, uint32_t wire, uint64_t *out) {
    return wire == 0 ? varint(r, out) : BAIL;
}

/* An AnyValue as `decode._value` gives it (None when no value is set). */
static int any_value(Rd *r, PyObject **out) {
    uint32_t f, w;
    uint64_t u;
    double d;
    while (r->p < r->end) {
        TRY(tag(r, &f, &w));
        PyObject *next = NULL;
        switch (f) {
        case 1: TRY(text(r, w, &next)); break;
        case 2: TRY(number(r, w, &u)); next = PyBool_FromLong(u != 0); break;
        case 3:
            TRY(number(r, w, &u));
            if (!(next = PyLong_FromLongLong((long long)(int64_t)u))) return ERR;
            break;
        case 4:
            if (w != 1) return BAIL;
            TRY(f64(r, &d));
            if (!(next = PyFloat_FromDouble(d))) return ERR;
            break;
        case 5: case 6: case 7: case 8: return BAIL; /* array, kvlist, bytes, strindex */
        default: TRY(skip(r, w)); continue;
        }
        Py_XSETREF(*out, next); /* a oneof: the last one given wins */
    }
    return 0;
}

/* a KeyValue appended to `pairs` as (key, value); pairs NULL: only checked */
static int key_value(Rd *r, uint32_t wire, PyObject *pairs) {
    Rd s;
    if (wire != 2) return BAIL;
    TRY(sub(r, &s));
    PyObject *key = NULL, *val = NULL;
    int given = 0, rc = 0;
    uint32_t f, w;
    while (!rc && s.p < s.end) {
        if ((rc = tag(&s, &f, &w))) break;
        Rd v;
        if (f == 1) {
            rc = text(&s, w, &key);
        } else if (f == 2) {
            if (w != 2 || given++) rc = BAIL; /* a message given twice: protobuf merges them */
            else if (!(rc = sub(&s, &v))) rc = any_value(&v, &val);
        } else if (f == 3) {
            rc = BAIL; /* key_strindex (profiles' string tables) */
        } else {
            rc = skip(&s, w);
        }
    }
    if (!rc && pairs) {
        if (!key && !(key = PyUnicode_FromStringAndSize("", 0))) rc = ERR;
        if (!rc && !val) val = Py_NewRef(Py_None);
        PyObject *t = rc ? NULL : PyTuple_Pack(2, key, val);
        if (!rc && (!t || PyList_Append(pairs, t))) rc = ERR;
        Py_XDECREF(t);
    }
    Py_XDECREF(key);
    Py_XDECREF(val);
    return rc;
}

typedef struct {
    int64_t offset;
    Rd counts; /* one packed run of uint64 varints, as every encoder writes them */
    int given, runs;
} Side;

static int zigzag32(uint64_t u, int64_t *out) {
    if (u > UINT32_MAX) return BAIL;
    *out = (int32_t)(uint32_t)((u >> 1) ^ (~(u & 1) + 1));
    return 0;
}

static int side(Rd *r, uint32_t wire, Side *b) {
    Rd s;
    uint32_t f, w;
    uint64_t u;
    if (wire != 2 || b->given++) return BAIL;
    TRY(sub(r, &s));
    while (s.p < s.end) {
        TRY(tag(&s, &f, &w));
        if (f == 1) {
            TRY(number(&s, w, &u));
            TRY(zigzag32(u, &b->offset));
        } else if (f == 2) {
            if (w != 2 || b->runs++) return BAIL; /* unpacked counts: the Python path */
            TRY(sub(&s, &b->counts));
        } else {
            TRY(skip(&s, w));
        }
    }
    return 0;
}

/* the bucket indices finite doubles can have at `scale` (decode.index_range) */
static void index_range(int scale, int64_t *lo, int64_t *hi) {
    if (scale >= 0) {
        *lo = -(int64_t)1075 * ((int64_t)1 << scale);
        *hi = ((int64_t)1024 << scale) - 1;
    } else {
        *lo = -((1075 + ((int64_t)1 << -scale) - 1) >> -scale); /* floor(-1075 / 2^-scale) */
        *hi = 1023 >> -scale;
    }
}

/* One side's counts trimmed of empty buckets at both ends, as little-endian int64 bytes (what
 * `ExpHistogram.to_parts` holds), its first index and its total. */
static int side_counts(const Side *b, int scale, PyObject **bytes, int64_t *offset,
                       uint64_t *total) {
    Rd r = b->counts;
    Py_ssize_t n = 0, first = -1, last = -1;
    uint64_t v;
    *total = 0;
    *offset = 0;
    while (r.p < r.end) {
        if (varint(&r, &v) || v > MAX_COUNT || ++n > MAX_BUCKETS) return BAIL;
        if (v) {
            if (first < 0) first = n - 1;
            last = n - 1;
            *total += v;
            if (*total > MAX_COUNT) return BAIL; /* more than any valid count */
        }
    }
    if (first < 0) {
        *bytes = PyBytes_FromStringAndSize("", 0);
        return *bytes ? 0 : ERR;
    }
    int64_t lo, hi;
    index_range(scale, &lo, &hi);
    *offset = b->offset + first;
    if (*offset < lo || *offset + (last - first) > hi) return BAIL;
    *bytes = PyBytes_FromStringAndSize(NULL, (last - first + 1) * 8);
    if (!*bytes) return ERR;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(*bytes);
    r = b->counts;
    for (Py_ssize_t i = 0; i <= last; i++) {
        varint(&r, &v);
        if (i < first) continue;
        for (int k = 0; k < 8; k++) *out++ = (uint8_t)(v >> (8 * k));
    }
    return 0;
}

typedef struct {
    uint64_t start, time, count, zero, value;
    int64_t scale;
    double sum, lo, hi, zero_threshold;
    int has_sum, has_min, has_max;
    Side pos, neg;
} Point;

static int time_fields(Rd *r, uint32_t f, uint32_t w, Point *p, int *done) {
    *done = 1;
    if (f == 2 || f == 3) {
        if (w != 1) return BAIL;
        return fixed64(r, f == 2 ? &p->start : &p->time);
    }
    *done = 0;
    return 0;
}

static int histogram_fields(Rd *r, Point *p, PyObject *attrs) {
    uint32_t f, w;
    uint64_t u;
    int done;
    while (r->p < r->end) {
        TRY(tag(r, &f, &w));
        TRY(time_fields(r, f, w, p, &done));
        if (done) continue;
        switch (f) {
        case 1: TRY(key_value(r, w, attrs)); break;
        case 4: if (w != 1) return BAIL; TRY(fixed64(r, &p->count)); break;
        case 5: if (w != 1) return BAIL; TRY(f64(r, &p->sum)); p->has_sum = 1; break;
        case 6: TRY(number(r, w, &u)); TRY(zigzag32(u, &p->scale)); break;
        case 7: if (w != 1) return BAIL; TRY(fixed64(r, &p->zero)); break;
        case 8: TRY(side(r, w, &p->pos)); break;
        case 9: TRY(side(r, w, &p->neg)); break;
        case 10: TRY(number(r, w, &u)); if (u) return BAIL; break; /* flags */
        case 11: return BAIL; /* exemplars */
        case 12: if (w != 1) return BAIL; TRY(f64(r, &p->lo)); p->has_min = 1; break;
        case 13: if (w != 1) return BAIL; TRY(f64(r, &p->hi)); p->has_max = 1; break;
        case 14: if (w != 1) return BAIL; TRY(f64(r, &p->zero_threshold)); break;
        default: TRY(skip(r, w));
        }
    }
    return 0;
}

/* An ExponentialHistogramDataPoint -> ("h", name, attrs, parts, start, time), with the checks
 * of `decode.sketch_from_point` and `decode._check_time`. */
static int histogram_point(Rd *r, PyObject *name, PyObject *points) {
    Point p = {0};
    PyObject *attrs = PyList_New(0), *pb = NULL, *nb = NULL;
    if (!attrs) return ERR;
    int64_t p_off, n_off;
    uint64_t p_total, n_total;
    int rc = histogram_fields(r, &p, attrs);
    if (!rc && (p.start > MAX_TIME_NS || p.time > MAX_TIME_NS || p.scale < MIN_SCALE ||
                p.scale > MAX_SCALE || p.count > MAX_COUNT || p.zero > MAX_COUNT))
        rc = BAIL;
    if (!rc) rc = side_counts(&p.pos, (int)p.scale, &pb, &p_off, &p_total);
    if (!rc) rc = side_counts(&p.neg, (int)p.scale, &nb, &n_off, &n_total);
    if (!rc && (p_total + n_total + p.zero != p.count || (p.zero && p.zero_threshold != 0) ||
                (p.has_sum && !isfinite(p.sum))))
        rc = BAIL;
    if (!rc && p.count && (!p.has_min || !p.has_max || !isfinite(p.lo) || !isfinite(p.hi) ||
                           p.lo > p.hi))
        rc = BAIL;
    if (rc) {
        Py_DECREF(attrs);
        Py_XDECREF(pb);
        Py_XDECREF(nb);
        return rc;
    }
    if (!p.has_sum) p.sum = NAN;
    if (!p.count) {
        p.lo = INFINITY;
        p.hi = -INFINITY;
    }
    Py_ssize_t np_ = PyBytes_GET_SIZE(pb) / 8, nn = PyBytes_GET_SIZE(nb) / 8;
    Py_ssize_t size = np_ > nn ? np_ : nn;
    if (size < 160) size = 160;
    /* N steals pb and nb (also when building fails) */
    PyObject *parts = Py_BuildValue(
        "(sniiLNLNKKdddii)", "e", size, MAX_SCALE, (int)p.scale, (long long)p_off, pb,
        (long long)n_off, nb, (unsigned long long)p.zero, (unsigned long long)p.count, p.sum,
        p.lo, p.hi, 0, 0);
    if (!parts) {
        Py_DECREF(attrs);
        return ERR;
    }
    PyObject *item = Py_BuildValue("(sONNKK)", "h", name, attrs, parts,
                                   (unsigned long long)p.start, (unsigned long long)p.time);
    if (!item) return ERR;
    rc = PyList_Append(points, item) ? ERR : 0;
    Py_DECREF(item);
    return rc;
}

static int sum_fields(Rd *r, Point *p, PyObject *attrs) {
    uint32_t f, w;
    uint64_t u;
    int done;
    while (r->p < r->end) {
        TRY(tag(r, &f, &w));
        TRY(time_fields(r, f, w, p, &done));
        if (done) continue;
        switch (f) {
        case 4: return BAIL; /* as_double */
        case 5: return BAIL; /* exemplars */
        case 6: if (w != 1) return BAIL; TRY(fixed64(r, &p->value)); break; /* sfixed64 */
        case 7: TRY(key_value(r, w, attrs)); break;
        case 8: TRY(number(r, w, &u)); if (u) return BAIL; break; /* flags */
        default: TRY(skip(r, w));
        }
    }
    return 0;
}

/* A NumberDataPoint of a monotonic delta sum -> ("s", name, attrs, value, start, time) */
static int sum_point(Rd *r, PyObject *name, PyObject *points) {
    Point p = {0};
    PyObject *attrs = PyList_New(0);
    if (!attrs) return ERR;
    int rc = sum_fields(r, &p, attrs);
    if (!rc && (p.start > MAX_TIME_NS || p.time > MAX_TIME_NS || p.value > (uint64_t)INT64_MAX))
        rc = BAIL; /* a negative as_int is refused by the Python path */
    if (rc) {
        Py_DECREF(attrs);
        return rc;
    }
    PyObject *item = Py_BuildValue("(sONKKK)", "s", name, attrs, (unsigned long long)p.value,
                                   (unsigned long long)p.start, (unsigned long long)p.time);
    if (!item) return ERR;
    rc = PyList_Append(points, item) ? ERR : 0;
    Py_DECREF(item);
    return rc;
}

/* An ExponentialHistogram or a Sum: its points, once its temporality (and, for sums,
 * monotonicity) is known: those fields may come after the points on the wire. */
static int data(Rd body, PyObject *name, int is_sum, PyObject *points) {
    uint64_t temporality = 0, monotonic = 0;
    Rd r = body;
    uint32_t f, w;
    while (r.p < r.end) {
        TRY(tag(&r, &f, &w));
        if (f == 2) TRY(number(&r, w, &temporality));
        else if (f == 3 && is_sum) TRY(number(&r, w, &monotonic));
        else if (f == 1 && w != 2) return BAIL;
        else TRY(skip(&r, w));
    }
    if (temporality != 1 || (is_sum && !monotonic)) return BAIL; /* DELTA, monotonic */
    r = body;
    while (r.p < r.end) {
        TRY(tag(&r, &f, &w));
        Rd s;
        if (f == 1) {
            TRY(sub(&r, &s));
            TRY(is_sum ? sum_point(&s, name, points) : histogram_point(&s, name, points));
        } else {
            TRY(skip(&r, w));
        }
    }
    return 0;
}

/* Storable as a signal: at most MAX_SIGNAL characters, no NUL (`decode._metric`). */
static int name_ok(PyObject *name) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    return n <= MAX_SIGNAL && PyUnicode_FindChar(name, 0, 0, n, 1) == -1;
}

static int metric_fields(Rd *r, PyObject **name, Rd *body, int *kind) {
    uint32_t f, w;
    while (r->p < r->end) {
        TRY(tag(r, &f, &w));
        switch (f) {
        case 1: TRY(text(r, w, name)); break;
        case 2: case 3: TRY(text(r, w, NULL)); break; /* description, unit */
        case 7: case 10: /* sum, exponential histogram */
            if (w != 2 || *kind) return BAIL; /* two data fields: protobuf merges or replaces */
            TRY(sub(r, body));
            *kind = (int)f;
            break;
        case 5: case 9: case 11: case 12: return BAIL; /* gauge, histogram, summary, metadata */
        default: TRY(skip(r, w));
        }
    }
    return 0;
}

static int metric(Rd *r, uint32_t wire, PyObject *points) {
    Rd s, body = {0};
    PyObject *name = NULL;
    int kind = 0;
    if (wire != 2) return BAIL;
    TRY(sub(r, &s));
    int rc = metric_fields(&s, &name, &body, &kind);
    if (!rc && !name && !(name = PyUnicode_FromStringAndSize("", 0))) rc = ERR;
    if (!rc && kind) rc = name_ok(name) ? data(body, name, kind == 7, points) : BAIL;
    Py_XDECREF(name);
    return rc; /* no data: nothing stored, nothing refused */
}

/* an InstrumentationScope: only checked (its name and version matter to cumulative points) */
static int scope(Rd *r, uint32_t wire) {
    Rd s;
    uint32_t f, w;
    uint64_t u;
    if (wire != 2) return BAIL;
    TRY(sub(r, &s));
    while (s.p < s.end) {
        TRY(tag(&s, &f, &w));
        switch (f) {
        case 1: case 2: TRY(text(&s, w, NULL)); break;
        case 3: TRY(key_value(&s, w, NULL)); break;
        case 4: TRY(number(&s, w, &u)); break;
        default: TRY(skip(&s, w));
        }
    }
    return 0;
}

static int scope_metrics(Rd *r, uint32_t wire, PyObject *points) {
    Rd s;
    uint32_t f, w;
    if (wire != 2) return BAIL;
    TRY(sub(r, &s));
    while (s.p < s.end) {
        TRY(tag(&s, &f, &w));
        switch (f) {
        case 1: TRY(scope(&s, w)); break;
        case 2: TRY(metric(&s, w, points)); break;
        case 3: TRY(text(&s, w, NULL)); break; /* schema_url */
        default: TRY(skip(&s, w));
        }
    }
    return 0;
}

static int resource(Rd *r, uint32_t wire, PyObject *attrs) {
    Rd s;
    uint32_t f, w;
    uint64_t u;
    if (wire != 2) return BAIL;
    TRY(sub(r, &s));
    while (s.p < s.end) {
        TRY(tag(&s, &f, &w));
        switch (f) {
        case 1: TRY(key_value(&s, w, attrs)); break;
        case 2: TRY(number(&s, w, &u)); break; /* dropped_attributes_count */
        case 3: return BAIL; /* entity_refs */
        default: TRY(skip(&s, w));
        }
    }
    return 0;
}

static int resource_metrics_fields(Rd *r, PyObject *attrs, PyObject *points) {
    uint32_t f, w;
    int given = 0;
    while (r->p < r->end) {
        TRY(tag(r, &f, &w));
        switch (f) {
        case 1: if (given++) return BAIL; TRY(resource(r, w, attrs)); break;
        case 2: TRY(scope_metrics(r, w, points)); break;
        case 3: TRY(text(r, w, NULL)); break; /* schema_url */
        default: TRY(skip(r, w));
        }
    }
    return 0;
}

/* a ResourceMetrics appended to `out` as (attribute pairs, points) */
static int resource_metrics(Rd *r, uint32_t wire, PyObject *out) {
    Rd s;
    if (wire != 2) return BAIL;
    TRY(sub(r, &s));
    PyObject *attrs = PyList_New(0), *points = PyList_New(0);
    int rc = attrs && points ? resource_metrics_fields(&s, attrs, points) : ERR;
    PyObject *t = rc ? NULL : PyTuple_Pack(2, attrs, points);
    if (!rc && (!t || PyList_Append(out, t))) rc = ERR;
    Py_XDECREF(t);
    Py_XDECREF(attrs);
    Py_XDECREF(points);
    return rc;
}

PyDoc_STRVAR(scan_doc,
"scan(body) -> list[tuple[list, list]] | None\n\n"
"An ExportMetricsServiceRequest's resources: (resource attributes as (key, value) pairs,\n"
"points), each point (\"h\", name, attribute pairs, ExpHistogram parts, start_ns, time_ns)\n"
"or (\"s\", name, attribute pairs, value, start_ns, time_ns). None: not the common case\n"
"(see the module's comment): decode the body the general way.");

static PyObject *scan(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)) return NULL;
    Rd r = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    PyObject *out = PyList_New(0);
    int rc = out ? 0 : ERR;
    uint32_t f, w;
    while (!rc && r.p < r.end) {
        if (!(rc = tag(&r, &f, &w)))
            rc = f == 1 ? resource_metrics(&r, w, out) : skip(&r, w);
    }
    PyBuffer_Release(&view);
    if (rc) {
        Py_XDECREF(out);
        if (rc == ERR) return NULL;
        Py_RETURN_NONE;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlp",
    "The common case of OTLP metrics bodies read from the wire (see _otlp.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp(void) { return PyModule_Create(&module); }
