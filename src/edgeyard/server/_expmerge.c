/* The merge of exponential histograms given as parts, compiled: what the ingestion service's
 * group commit and compactor do for every signal of every window.
 *
 * `merge(parts)` returns `ExpHistogram.merge_parts(parts).to_parts()` (edgeyard/telemetry/
 * sketch.py): every nonzero bucket of every part brought to the finest scale of the parts, that
 * scale lowered until each side fits the smallest `max_size`, the counts added (exactly, in
 * int64), both sides trimmed, the totals added, `sum` added by the interpreter's own `sum` (so
 * that its rounding is the same whatever the Python version). It raises for anything it does
 * not take (not a tuple of the parts' layout, a negative count, a total past int64, an index
 * past int64, a `max_size` or `max_scale` the sketch refuses); the caller then merges with
 * numpy, which gives the same result or the sketch's own error (`server/partsmerge.py`).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define N_FIELDS 15
#define MIN_SIZE 2
#define MAX_SIZE 16384
#define MIN_MAX_SCALE (-10)
#define MAX_MAX_SCALE 20

static PyObject *builtin_sum;

/* floor(x / 2^s): numpy's >> on int64 */
static inline int64_t shr(int64_t x, int64_t s) {
    if (s >= 63) return x < 0 ? -1 : 0;
    return x >= 0 ? x >> s : ~((~x) >> s);
}

typedef struct {
    int64_t offset;
    const uint8_t *counts; /* little-endian: int64, or unsigned of `width` bytes (packed) */
    Py_ssize_t n;
    int64_t shift; /* part scale - merged scale (>= 0) */
    int width;     /* bytes per count: 8 (parts), or 1, 2, 4 (a packed window's) */
} Run;

static inline uint64_t load_le(const uint8_t *p, int width) {
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, (size_t)width);
#else
    for (int i = width - 1; i >= 0; i--) v = (v << 8) | p[i];
#endif
    return v;
}

static inline void store_le(uint8_t *p, uint64_t v, int width) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, (size_t)width);
#else
    for (int i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
#endif
}

static inline int64_t count_at(const Run *r, Py_ssize_t j) {
    switch (r->width) {
    case 1: return r->counts[j];
    case 2: return (int64_t)load_le(r->counts + 2 * j, 2);
    case 4: return (int64_t)load_le(r->counts + 4 * j, 4);
    default: return (int64_t)load_le(r->counts + 8 * j, 8);
    }
}

static int as_i64(PyObject *o, int64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "parts: an integer field is not an int");
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "parts: an integer field past int64");
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)v;
    return 0;
}

static int add_i64(int64_t *acc, int64_t v) {
    if (__builtin_add_overflow(*acc, v, acc)) {
        PyErr_SetString(PyExc_OverflowError, "merged total past int64");
        return -1;
    }
    return 0;
}

/* lowest scale change that fits [lo, hi] in max_size buckets (sketch.py's _scale_change) */
static int64_t scale_change(int64_t lo, int64_t hi, int64_t max_size) {
    int64_t change = 0;
    while ((__int128)hi - lo >= max_size) {
        hi = shr(hi, 1);
        lo = shr(lo, 1);
        change++;
    }
    return change;
}

/* One side: the nonzero buckets' range at the merged scale (has = 0 when none). Indices grow
 * with the position in a run and the floor shift keeps their order, so a run's first and last
 * nonzero buckets bound it. */
static int side_range(Run *runs, Py_ssize_t k, int64_t *lo, int64_t *hi, int *has) {
    *has = 0;
    for (Py_ssize_t r = 0; r < k; r++) {
        Py_ssize_t first = 0, last = runs[r].n - 1;
        while (first < runs[r].n && count_at(&runs[r], first) == 0) first++;
        if (first == runs[r].n) continue;
        while (count_at(&runs[r], last) == 0) last--;
        int64_t a, b;
        if (__builtin_add_overflow(runs[r].offset, (int64_t)first, &a) ||
            __builtin_add_overflow(runs[r].offset, (int64_t)last, &b)) {
            PyErr_SetString(PyExc_OverflowError, "parts: a bucket index past int64");
            return -1;
        }
        a = shr(a, runs[r].shift);
        b = shr(b, runs[r].shift);
        if (!*has || a < *lo) *lo = a;
        if (!*has || b > *hi) *hi = b;
        *has = 1;
    }
    return 0;
}

/* One side's merged counts at scale change `change` from the merged scale: (offset, bytes) */
static PyObject *side_counts(Run *runs, Py_ssize_t k, int64_t lo, int64_t hi, int64_t change,
                             int64_t *offset) {
    int64_t start = shr(lo, change), end = shr(hi, change);
    Py_ssize_t n = (Py_ssize_t)(end - start + 1);
    int64_t *acc = PyMem_Calloc((size_t)n, sizeof(int64_t));
    if (acc == NULL) return PyErr_NoMemory();
    int negative = 0, overflow = 0;
    for (Py_ssize_t r = 0; r < k; r++) {
        const Run *b = &runs[r];
        int64_t off = runs[r].offset;
        int64_t shift = runs[r].shift > 64 ? 64 : runs[r].shift + change;
        if (shift == 0) { /* the common case: one scale throughout */
            /* bucket j lands at acc[rel + j]; only acc's range holds nonzero buckets
             * (side_range), so a run's zeros beyond it are skipped */
            __int128 rel = (__int128)off - start;
            __int128 j0 = rel < 0 ? -rel : 0, j1 = (__int128)n - rel;
            if (j1 > runs[r].n) j1 = runs[r].n;
            for (__int128 j = j0; j < j1; j++) {
                int64_t c = count_at(b, (Py_ssize_t)j);
                int64_t *d = &acc[(Py_ssize_t)(rel + j)];
                negative |= c < 0;
                overflow |= __builtin_add_overflow(*d, c, d);
            }
            continue;
        }
        for (Py_ssize_t j = 0; j < runs[r].n; j++) {
            int64_t c = count_at(b, j);
            if (c == 0) continue;
            int64_t *d = &acc[shr(off + (int64_t)j, shift) - start];
            negative |= c < 0;
            overflow |= __builtin_add_overflow(*d, c, d);
        }
    }
    if (negative || overflow) {
        PyMem_Free(acc);
        PyErr_SetString(negative ? PyExc_ValueError : PyExc_OverflowError,
                        negative ? "parts: a negative bucket count"
                                 : "merged bucket count past int64");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 8);
    if (out != NULL) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(PyBytes_AS_STRING(out), acc, (size_t)n * 8);
#else
        uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t v = (uint64_t)acc[i];
            for (int s = 0; s < 8; s++) o[8 * i + s] = (uint8_t)(v >> (8 * s));
        }
#endif
    }
    PyMem_Free(acc);
    *offset = start;
    return out;
}

/* the item of `parts` chosen as Python's min (op Py_LT) or max (Py_GT) would */
static PyObject *extreme(PyObject *const *items, Py_ssize_t k, Py_ssize_t field, int op) {
    PyObject *best = PyTuple_GET_ITEM(items[0], field);
    for (Py_ssize_t i = 1; i < k; i++) {
        PyObject *x = PyTuple_GET_ITEM(items[i], field);
        int better = PyObject_RichCompareBool(x, best, op);
        if (better < 0) return NULL;
        if (better) best = x;
    }
    return Py_NewRef(best);
}

/* Both sides' merged counts (`runs`: the k positive runs, then the k negative ones, each
 * `shift` its part's scale): the limits checked, the shifts made relative to `scale`, the
 * scale lowered by *change until each side fits `max_size`; out[side] the counts' bytes,
 * offs[side] their offset. -1 with an exception set. */
static int merged_sides(Run *runs, Py_ssize_t k, int64_t scale, int64_t max_size,
                        int64_t max_scale, PyObject *out[2], int64_t offs[2], int64_t *change) {
    out[0] = out[1] = NULL;
    offs[0] = offs[1] = 0;
    *change = 0;
    if (max_size < MIN_SIZE || max_size > MAX_SIZE) {
        PyErr_Format(PyExc_ValueError, "max_size must be in 2..16384 (got %lld)",
                     (long long)max_size);
        return -1;
    }
    if (max_scale < MIN_MAX_SCALE || max_scale > MAX_MAX_SCALE) {
        PyErr_Format(PyExc_ValueError, "max_scale must be in -10..20 (got %lld)",
                     (long long)max_scale);
        return -1;
    }
    for (Py_ssize_t i = 0; i < 2 * k; i++) {
        if (__builtin_sub_overflow(runs[i].shift, scale, &runs[i].shift)) {
            PyErr_SetString(PyExc_OverflowError, "parts: a scale past int64");
            return -1;
        }
    }
    int64_t lo[2] = {0, 0}, hi[2] = {0, 0};
    int has[2];
    for (int side = 0; side < 2; side++) {
        if (side_range(runs + side * k, k, &lo[side], &hi[side], &has[side])) return -1;
        if (has[side]) {
            int64_t ch = scale_change(lo[side], hi[side], max_size);
            if (ch > *change) *change = ch;
        }
    }
    for (int side = 0; side < 2; side++) {
        out[side] = has[side] ? side_counts(runs + side * k, k, lo[side], hi[side], *change,
                                            &offs[side])
                              : PyBytes_FromStringAndSize(NULL, 0);
        if (out[side] == NULL) {
            Py_CLEAR(out[0]);
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(merge_doc,
"merge(parts) -> parts\n\n"
"ExpHistogram.merge_parts(parts).to_parts(), compiled (see _expmerge.c); raises for anything\n"
"it does not take.");

static PyObject *merge(PyObject *Py_UNUSED(self), PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "merge: parts must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    PyObject *const *items = (PyObject *const *)PySequence_Fast_ITEMS(seq);
    PyObject *result = NULL, *sums = NULL, *total = NULL, *lo_obj = NULL, *hi_obj = NULL;
    PyObject *pos = NULL, *neg = NULL;
    Run *runs = NULL;
    if (k == 0) {
        PyErr_SetString(PyExc_ValueError, "merge: no parts");
        goto done;
    }
    runs = PyMem_Malloc(sizeof(Run) * (size_t)(2 * k));
    if (runs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t max_size = 0, max_scale = 0, scale = 0, zero = 0, count = 0, missing = 0, nonfin = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *t = items[i];
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != N_FIELDS) {
            PyErr_SetString(PyExc_TypeError, "merge: a part is not a 15-tuple");
            goto done;
        }
        int64_t size, mscale, s, z, c, m, nf;
        if (as_i64(PyTuple_GET_ITEM(t, 1), &size) || as_i64(PyTuple_GET_ITEM(t, 2), &mscale) ||
            as_i64(PyTuple_GET_ITEM(t, 3), &s) || as_i64(PyTuple_GET_ITEM(t, 8), &z) ||
            as_i64(PyTuple_GET_ITEM(t, 9), &c) || as_i64(PyTuple_GET_ITEM(t, 13), &m) ||
            as_i64(PyTuple_GET_ITEM(t, 14), &nf))
            goto done;
        if (i == 0) {
            max_size = size, max_scale = mscale, scale = s;
        } else {
            if (size < max_size) max_size = size;
            if (mscale > max_scale) max_scale = mscale;
            if (s < scale) scale = s;
        }
        if (add_i64(&zero, z) || add_i64(&count, c) || add_i64(&missing, m) ||
            add_i64(&nonfin, nf))
            goto done;
        for (int side = 0; side < 2; side++) {
            PyObject *off = PyTuple_GET_ITEM(t, 4 + 2 * side);
            PyObject *b = PyTuple_GET_ITEM(t, 5 + 2 * side);
            Run *r = &runs[side * k + i];
            if (!PyBytes_CheckExact(b) || PyBytes_GET_SIZE(b) % 8) {
                PyErr_SetString(PyExc_TypeError, "merge: counts are not int64 bytes");
                goto done;
            }
            if (as_i64(off, &r->offset)) goto done;
            r->counts = (const uint8_t *)PyBytes_AS_STRING(b);
            r->n = PyBytes_GET_SIZE(b) / 8;
            r->width = 8;
            r->shift = s; /* made relative below */
        }
    }
    PyObject *sides[2];
    int64_t offs[2], change;
    if (merged_sides(runs, k, scale, max_size, max_scale, sides, offs, &change)) goto done;
    pos = sides[0], neg = sides[1];
    sums = PyTuple_New(k);
    if (sums == NULL) goto done;
    for (Py_ssize_t i = 0; i < k; i++)
        PyTuple_SET_ITEM(sums, i, Py_NewRef(PyTuple_GET_ITEM(items[i], 10)));
    PyObject *s = PyObject_CallOneArg(builtin_sum, sums);
    if (s == NULL) goto done;
    total = PyNumber_Float(s);
    Py_DECREF(s);
    if (total == NULL) goto done;
    lo_obj = extreme(items, k, 11, Py_LT);
    if (lo_obj == NULL) goto done;
    hi_obj = extreme(items, k, 12, Py_GT);
    if (hi_obj == NULL) goto done;
    result = Py_BuildValue("(sLLLLOLOLLOOOLL)", "e", (long long)max_size, (long long)max_scale,
                           (long long)(scale - change), (long long)offs[0], pos,
                           (long long)offs[1], neg, (long long)zero, (long long)count, total,
                           lo_obj, hi_obj, (long long)missing, (long long)nonfin);
done:
    Py_XDECREF(pos);
    Py_XDECREF(neg);
    Py_XDECREF(sums);
    Py_XDECREF(total);
    Py_XDECREF(lo_obj);
    Py_XDECREF(hi_obj);
    PyMem_Free(runs);
    Py_DECREF(seq);
    return result;
}

/* --- a window's exponential histograms packed into one bytes object (spool records) ------
 *
 * `pack(parts_list)`: each part (the layout `merge` takes, "e" first) as a fixed head and its
 * counts in the narrowest unsigned width that holds the largest (1, 2, 4 or 8 bytes), all in
 * one bytes object: a spool record then holds a few kilobytes a window instead of tens (most
 * counts of a window are below 256), and the mover reads one object a window instead of a
 * tuple and a bytes object per signal. `unpack(blob)` gives the parts back exactly (counts as
 * int64 bytes); `merge_packed(blobs)` gives `[merge([unpack(b)[i] for b in blobs]) for i]`
 * without making them. Layout, little-endian: u8 version, u32 parts; per part i32 max_size,
 * i32 max_scale, i32 scale, u8 width, i64 positive offset, u32 positive buckets, i64 negative
 * offset, u32 negative buckets, i64 zero count, i64 count, f64 sum, f64 min, f64 max,
 * i64 missing, i64 non_finite, then the positive and the negative counts. */
#define PACK_VERSION 1
#define PACK_HEAD 5
#define PART_HEAD 93

typedef struct {
    int64_t size, max_scale, scale, zero, count, missing, nonfin;
    double sum, lo, hi;
    Run side[2];
} Packed;

static int exact_i64(PyObject *o, int64_t *out) {
    if (!PyLong_CheckExact(o)) {
        PyErr_SetString(PyExc_TypeError, "pack: an integer field is not an int");
        return -1;
    }
    return as_i64(o, out);
}

static int exact_f64(PyObject *o, double *out) {
    if (!PyFloat_CheckExact(o)) {
        PyErr_SetString(PyExc_TypeError, "pack: a float field is not a float");
        return -1;
    }
    *out = PyFloat_AS_DOUBLE(o);
    return 0;
}

static int fits_i32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* the part's fields, its counts' bytes and the width they pack to */
static int pack_fields(PyObject *t, Packed *p, PyObject **counts, int *width) {
    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != N_FIELDS ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(t, 0)) ||
        PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(t, 0), "e") != 0) {
        PyErr_SetString(PyExc_TypeError, "pack: a part is not an exponential histogram's");
        return -1;
    }
    if (exact_i64(PyTuple_GET_ITEM(t, 1), &p->size) ||
        exact_i64(PyTuple_GET_ITEM(t, 2), &p->max_scale) ||
        exact_i64(PyTuple_GET_ITEM(t, 3), &p->scale) ||
        exact_i64(PyTuple_GET_ITEM(t, 4), &p->side[0].offset) ||
        exact_i64(PyTuple_GET_ITEM(t, 6), &p->side[1].offset) ||
        exact_i64(PyTuple_GET_ITEM(t, 8), &p->zero) ||
        exact_i64(PyTuple_GET_ITEM(t, 9), &p->count) ||
        exact_f64(PyTuple_GET_ITEM(t, 10), &p->sum) ||
        exact_f64(PyTuple_GET_ITEM(t, 11), &p->lo) ||
        exact_f64(PyTuple_GET_ITEM(t, 12), &p->hi) ||
        exact_i64(PyTuple_GET_ITEM(t, 13), &p->missing) ||
        exact_i64(PyTuple_GET_ITEM(t, 14), &p->nonfin))
        return -1;
    if (!fits_i32(p->size) || !fits_i32(p->max_scale) || !fits_i32(p->scale)) {
        PyErr_SetString(PyExc_OverflowError, "pack: a size or scale past int32");
        return -1;
    }
    uint64_t top = 0;
    for (int side = 0; side < 2; side++) {
        PyObject *b = PyTuple_GET_ITEM(t, 5 + 2 * side);
        if (!PyBytes_CheckExact(b) || PyBytes_GET_SIZE(b) % 8 ||
            PyBytes_GET_SIZE(b) / 8 > (Py_ssize_t)UINT32_MAX) {
            PyErr_SetString(PyExc_TypeError, "pack: counts are not int64 bytes");
            return -1;
        }
        Run *r = &p->side[side];
        r->counts = (const uint8_t *)PyBytes_AS_STRING(b);
        r->n = PyBytes_GET_SIZE(b) / 8;
        r->width = 8;
        counts[side] = b;
        for (Py_ssize_t j = 0; j < r->n; j++) {
            int64_t c = count_at(r, j);
            if (c < 0) {
                PyErr_SetString(PyExc_ValueError, "pack: a negative bucket count");
                return -1;
            }
            if ((uint64_t)c > top) top = (uint64_t)c;
        }
    }
    *width = top <= 0xFF ? 1 : top <= 0xFFFF ? 2 : top <= 0xFFFFFFFFu ? 4 : 8;
    return 0;
}

static uint8_t *put(uint8_t *o, uint64_t v, int width) {
    store_le(o, v, width);
    return o + width;
}

static uint8_t *put_f64(uint8_t *o, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    return put(o, v, 8);
}

PyDoc_STRVAR(pack_doc,
"pack(parts_list) -> bytes\n\n"
"Exponential histograms' parts packed into one bytes object, their counts narrowed (see\n"
"_expmerge.c); raises for a part of another layout or a negative count.");

static PyObject *pack(PyObject *Py_UNUSED(self), PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "pack: parts must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    PyObject *const *items = (PyObject *const *)PySequence_Fast_ITEMS(seq);
    PyObject *out = NULL;
    Packed *parts = PyMem_Malloc(sizeof(Packed) * (size_t)(k ? k : 1));
    int *widths = PyMem_Malloc(sizeof(int) * (size_t)(k ? k : 1));
    if (parts == NULL || widths == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (k > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "pack: too many parts");
        goto done;
    }
    Py_ssize_t total = PACK_HEAD;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *counts[2];
        if (pack_fields(items[i], &parts[i], counts, &widths[i])) goto done;
        total += PART_HEAD + (parts[i].side[0].n + parts[i].side[1].n) * widths[i];
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) goto done;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    o = put(o, PACK_VERSION, 1);
    o = put(o, (uint64_t)k, 4);
    for (Py_ssize_t i = 0; i < k; i++) {
        Packed *p = &parts[i];
        int w = widths[i];
        o = put(o, (uint64_t)(uint32_t)(int32_t)p->size, 4);
        o = put(o, (uint64_t)(uint32_t)(int32_t)p->max_scale, 4);
        o = put(o, (uint64_t)(uint32_t)(int32_t)p->scale, 4);
        o = put(o, (uint64_t)w, 1);
        o = put(o, (uint64_t)p->side[0].offset, 8);
        o = put(o, (uint64_t)p->side[0].n, 4);
        o = put(o, (uint64_t)p->side[1].offset, 8);
        o = put(o, (uint64_t)p->side[1].n, 4);
        o = put(o, (uint64_t)p->zero, 8);
        o = put(o, (uint64_t)p->count, 8);
        o = put_f64(o, p->sum);
        o = put_f64(o, p->lo);
        o = put_f64(o, p->hi);
        o = put(o, (uint64_t)p->missing, 8);
        o = put(o, (uint64_t)p->nonfin, 8);
        for (int side = 0; side < 2; side++) {
            const Run *r = &p->side[side];
            /* one loop per width: stores of a size known at compile time */
            switch (w) {
            case 1:
                for (Py_ssize_t j = 0; j < r->n; j++) o[j] = (uint8_t)count_at(r, j);
                break;
            case 2:
                for (Py_ssize_t j = 0; j < r->n; j++)
                    store_le(o + 2 * j, (uint64_t)count_at(r, j), 2);
                break;
            case 4:
                for (Py_ssize_t j = 0; j < r->n; j++)
                    store_le(o + 4 * j, (uint64_t)count_at(r, j), 4);
                break;
            default:
                memcpy(o, r->counts, (size_t)r->n * 8); /* int64 already */
            }
            o += r->n * w;
        }
    }
done:
    PyMem_Free(parts);
    PyMem_Free(widths);
    Py_DECREF(seq);
    return out;
}

static int truncated(void) {
    PyErr_SetString(PyExc_ValueError, "packed: cut short, or not a packed window");
    return -1;
}

/* the head of a packed blob: its number of parts, the cursor after the head */
static int read_head(PyObject *blob, const uint8_t **at, const uint8_t **end, Py_ssize_t *k) {
    if (!PyBytes_CheckExact(blob)) {
        PyErr_SetString(PyExc_TypeError, "packed: not bytes");
        return -1;
    }
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(blob);
    *end = p + PyBytes_GET_SIZE(blob);
    if (PyBytes_GET_SIZE(blob) < PACK_HEAD) return truncated();
    if (p[0] != PACK_VERSION) {
        PyErr_Format(PyExc_ValueError, "packed: layout %d, this server reads %d", p[0],
                     PACK_VERSION);
        return -1;
    }
    uint64_t parts = load_le(p + 1, 4);
    if (parts > (uint64_t)(PyBytes_GET_SIZE(blob) - PACK_HEAD) / PART_HEAD) return truncated();
    *k = (Py_ssize_t)parts; /* bounded by the blob's size: no wrap, whatever Py_ssize_t */
    *at = p + PACK_HEAD;
    return 0;
}

static int64_t i32_at(const uint8_t *p) { return (int32_t)(uint32_t)load_le(p, 4); }

static int64_t i64_at(const uint8_t *p) { return (int64_t)load_le(p, 8); }

static double f64_at(const uint8_t *p) {
    uint64_t v = load_le(p, 8);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* one part at *at (its counts pointed to, not copied); *at moves past it */
static int read_part(const uint8_t **at, const uint8_t *end, Packed *p) {
    const uint8_t *q = *at;
    if (end - q < PART_HEAD) return truncated();
    int w = q[12];
    if (w != 1 && w != 2 && w != 4 && w != 8) {
        PyErr_Format(PyExc_ValueError, "packed: counts of width %d", w);
        return -1;
    }
    p->size = i32_at(q), p->max_scale = i32_at(q + 4), p->scale = i32_at(q + 8);
    uint64_t n[2] = {load_le(q + 21, 4), load_le(q + 33, 4)};
    p->side[0].offset = i64_at(q + 13);
    p->side[1].offset = i64_at(q + 25);
    p->zero = i64_at(q + 37), p->count = i64_at(q + 45);
    p->sum = f64_at(q + 53), p->lo = f64_at(q + 61), p->hi = f64_at(q + 69);
    p->missing = i64_at(q + 77), p->nonfin = i64_at(q + 85);
    q += PART_HEAD;
    for (int side = 0; side < 2; side++) {
        Run *r = &p->side[side];
        if (n[side] > (uint64_t)(end - q) / (uint64_t)w) return truncated();
        r->n = (Py_ssize_t)n[side]; /* bounded by the bytes left: no wrap */
        r->counts = q;
        r->width = w;
        q += r->n * w;
    }
    *at = q;
    return 0;
}

/* a run's counts as little-endian int64 bytes */
static PyObject *wide_counts(const Run *r) {
    PyObject *b = PyBytes_FromStringAndSize(NULL, r->n * 8);
    if (b == NULL) return NULL;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(b);
    for (Py_ssize_t j = 0; j < r->n; j++) store_le(o + 8 * j, (uint64_t)count_at(r, j), 8);
    return b;
}

PyDoc_STRVAR(unpack_doc,
"unpack(blob) -> list of parts\n\n"
"The parts `pack` was given, exactly; raises for bytes that are not a packed window.");

static PyObject *unpack(PyObject *Py_UNUSED(self), PyObject *blob) {
    const uint8_t *at, *end;
    Py_ssize_t k;
    if (read_head(blob, &at, &end, &k)) return NULL;
    PyObject *out = PyList_New(k);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < k; i++) {
        Packed p;
        if (read_part(&at, end, &p)) goto fail;
        PyObject *pos = wide_counts(&p.side[0]);
        PyObject *neg = pos ? wide_counts(&p.side[1]) : NULL;
        if (neg == NULL) {
            Py_XDECREF(pos);
            goto fail;
        }
        PyObject *t = Py_BuildValue("(sLLLLNLNLLdddLL)", "e", (long long)p.size,
                                    (long long)p.max_scale, (long long)p.scale,
                                    (long long)p.side[0].offset, pos,
                                    (long long)p.side[1].offset, neg, (long long)p.zero,
                                    (long long)p.count, p.sum, p.lo, p.hi,
                                    (long long)p.missing, (long long)p.nonfin);
        if (t == NULL) goto fail;
        PyList_SET_ITEM(out, i, t);
    }
    if (at != end) {
        PyErr_SetString(PyExc_ValueError, "packed: bytes past its last part");
        goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* `merge`'s result for parts given as packed ones */
static PyObject *merge_parts_of(Packed *parts, Py_ssize_t k, Run *runs) {
    int64_t max_size = 0, max_scale = 0, scale = 0, zero = 0, count = 0, missing = 0, nonfin = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        Packed *p = &parts[i];
        if (i == 0) {
            max_size = p->size, max_scale = p->max_scale, scale = p->scale;
        } else {
            if (p->size < max_size) max_size = p->size;
            if (p->max_scale > max_scale) max_scale = p->max_scale;
            if (p->scale < scale) scale = p->scale;
        }
        if (add_i64(&zero, p->zero) || add_i64(&count, p->count) ||
            add_i64(&missing, p->missing) || add_i64(&nonfin, p->nonfin))
            return NULL;
        for (int side = 0; side < 2; side++) {
            runs[side * k + i] = p->side[side];
            runs[side * k + i].shift = p->scale;
        }
    }
    PyObject *out[2], *sums = NULL, *total = NULL, *result = NULL;
    int64_t offs[2], change;
    if (merged_sides(runs, k, scale, max_size, max_scale, out, offs, &change)) return NULL;
    sums = PyTuple_New(k);
    if (sums == NULL) goto done;
    double low = parts[0].lo, high = parts[0].hi;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *f = PyFloat_FromDouble(parts[i].sum);
        if (f == NULL) goto done;
        PyTuple_SET_ITEM(sums, i, f);
        if (parts[i].lo < low) low = parts[i].lo; /* as Python's min and max compare */
        if (parts[i].hi > high) high = parts[i].hi;
    }
    PyObject *s = PyObject_CallOneArg(builtin_sum, sums);
    if (s == NULL) goto done;
    total = PyNumber_Float(s);
    Py_DECREF(s);
    if (total == NULL) goto done;
    result = Py_BuildValue("(sLLLLOLOLLOddLL)", "e", (long long)max_size, (long long)max_scale,
                           (long long)(scale - change), (long long)offs[0], out[0],
                           (long long)offs[1], out[1], (long long)zero, (long long)count, total,
                           low, high, (long long)missing, (long long)nonfin);
done:
    Py_XDECREF(out[0]);
    Py_XDECREF(out[1]);
    Py_XDECREF(sums);
    Py_XDECREF(total);
    return result;
}

PyDoc_STRVAR(merge_packed_doc,
"merge_packed(blobs) -> list of parts\n\n"
"[merge([unpack(b)[i] for b in blobs]) for i in range(parts)], without making the parts:\n"
"the blobs hold the same number of parts; raises as unpack and merge do.");

static PyObject *merge_packed(PyObject *Py_UNUSED(self), PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "merge_packed: blobs must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    PyObject *const *items = (PyObject *const *)PySequence_Fast_ITEMS(seq);
    PyObject *result = NULL, *out = NULL;
    const uint8_t **at = NULL, **end = NULL;
    Packed *parts = NULL;
    Run *runs = NULL;
    Py_ssize_t n = 0;
    if (k == 0) {
        PyErr_SetString(PyExc_ValueError, "merge_packed: no blobs");
        goto done;
    }
    at = PyMem_Malloc(sizeof(*at) * (size_t)k);
    end = PyMem_Malloc(sizeof(*end) * (size_t)k);
    parts = PyMem_Malloc(sizeof(Packed) * (size_t)k);
    runs = PyMem_Malloc(sizeof(Run) * (size_t)(2 * k));
    if (at == NULL || end == NULL || parts == NULL || runs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t r = 0; r < k; r++) {
        Py_ssize_t nr;
        if (read_head(items[r], &at[r], &end[r], &nr)) goto done;
        if (r == 0) {
            n = nr;
        } else if (nr != n) {
            PyErr_SetString(PyExc_ValueError, "merge_packed: blobs of different parts");
            goto done;
        }
    }
    out = PyList_New(n);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t r = 0; r < k; r++)
            if (read_part(&at[r], end[r], &parts[r])) goto done;
        PyObject *m = merge_parts_of(parts, k, runs);
        if (m == NULL) goto done;
        PyList_SET_ITEM(out, i, m);
    }
    for (Py_ssize_t r = 0; r < k; r++) {
        if (at[r] != end[r]) {
            PyErr_SetString(PyExc_ValueError, "packed: bytes past its last part");
            goto done;
        }
    }
    result = out;
    out = NULL;
done:
    Py_XDECREF(out);
    PyMem_Free(at);
    PyMem_Free(end);
    PyMem_Free(parts);
    PyMem_Free(runs);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"merge", merge, METH_O, merge_doc},
    {"pack", pack, METH_O, pack_doc},
    {"unpack", unpack, METH_O, unpack_doc},
    {"merge_packed", merge_packed, METH_O, merge_packed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_expmerge",
    "Exponential histograms merged from their parts (see _expmerge.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__expmerge(void) {
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    if (builtins == NULL) return NULL;
    builtin_sum = PyDict_GetItemString(builtins, "sum");
    if (builtin_sum == NULL) {
        PyErr_SetString(PyExc_ImportError, "no builtin sum");
        return NULL;
    }
    Py_INCREF(builtin_sum);
    return PyModule_Create(&module);
}
