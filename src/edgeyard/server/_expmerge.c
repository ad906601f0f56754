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
    const uint8_t *counts; /* little-endian int64 */
    Py_ssize_t n;
    int64_t shift; /* part scale - merged scale (>= 0) */
} Run;

static inline int64_t count_at(const uint8_t *b, Py_ssize_t j) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    int64_t v;
    memcpy(&v, b + 8 * j, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[8 * j + i];
    return (int64_t)v;
#endif
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
        while (first < runs[r].n && count_at(runs[r].counts, first) == 0) first++;
        if (first == runs[r].n) continue;
        while (count_at(runs[r].counts, last) == 0) last--;
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
        const uint8_t *b = runs[r].counts;
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
            r->shift = s; /* made relative below */
        }
    }
    if (max_size < MIN_SIZE || max_size > MAX_SIZE) {
        PyErr_Format(PyExc_ValueError, "max_size must be in 2..16384 (got %lld)",
                     (long long)max_size);
        goto done;
    }
    if (max_scale < MIN_MAX_SCALE || max_scale > MAX_MAX_SCALE) {
        PyErr_Format(PyExc_ValueError, "max_scale must be in -10..20 (got %lld)",
                     (long long)max_scale);
        goto done;
    }
    for (Py_ssize_t i = 0; i < 2 * k; i++) {
        if (__builtin_sub_overflow(runs[i].shift, scale, &runs[i].shift)) {
            PyErr_SetString(PyExc_OverflowError, "parts: a scale past int64");
            goto done;
        }
    }
    int64_t lo[2] = {0, 0}, hi[2] = {0, 0}, change = 0;
    int has[2];
    for (int side = 0; side < 2; side++) {
        if (side_range(runs + side * k, k, &lo[side], &hi[side], &has[side])) goto done;
        if (has[side]) {
            int64_t ch = scale_change(lo[side], hi[side], max_size);
            if (ch > change) change = ch;
        }
    }
    int64_t offs[2] = {0, 0};
    PyObject **outs[2] = {&pos, &neg};
    for (int side = 0; side < 2; side++) {
        if (!has[side]) {
            *outs[side] = PyBytes_FromStringAndSize(NULL, 0);
        } else {
            *outs[side] = side_counts(runs + side * k, k, lo[side], hi[side], change,
                                      &offs[side]);
        }
        if (*outs[side] == NULL) goto done;
    }
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

static PyMethodDef methods[] = {
    {"merge", merge, METH_O, merge_doc},
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
