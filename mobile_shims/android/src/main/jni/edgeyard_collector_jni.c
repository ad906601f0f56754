/*
 * JNI glue: dev.edgeyard.mobile.NativeCollector -> the C telemetry collector (mobile_shims/c,
 * include/edgeyard.h: ey_window_*).
 *
 * Java parses release.json (TelemetrySpec.java) and hands over the spec as arrays; this file
 * copies all of it (signal specs, engine names, resource attributes, random-projection
 * directions, every string) into ONE malloc'd block next to the ey_window, so nothing Java owns
 * is kept after a call returns. The block is the handle; nativeClose frees it. No global state:
 * NativeCollector's methods are synchronized, which is the lock edgeyard.h asks of its caller.
 *
 * Strings travel as one byte[] of NUL-terminated UTF-8 strings (Java's own UTF-8, not JNI's
 * "modified UTF-8", which writes U+0000 and characters outside the BMP differently from what the
 * server and Python see). Every C error becomes a Java exception naming the function, the
 * EY_E_* code and its meaning; nothing here aborts the process.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <jni.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgeyard.h"

#define EY_JNI_MAX_TENSORS 16 /* inputs + outputs of one call */
#define EY_JNI_FIRST_BUFFER 65536

typedef struct ey_jni {
    ey_window window; /* first: the block is malloc'd, so it is aligned for it */
    ey_spec spec;
    /* then, each at a 16-byte aligned offset: ey_signal_spec[n_signals],
       const char *[n_engines], const char *[n_resource] keys, const char *[n_resource] values,
       double directions[], char strings[] */
} ey_jni;

static size_t align16(size_t n) { return (n + 15u) & ~(size_t)15u; }

static int64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void throw_class(JNIEnv *env, const char *cls, const char *msg)
{
    jclass c;
    if ((*env)->ExceptionCheck(env)) return; /* keep the first exception */
    c = (*env)->FindClass(env, cls);
    if (c != NULL) (*env)->ThrowNew(env, c, msg);
}

static void throw_arg(JNIEnv *env, const char *msg)
{
    throw_class(env, "java/lang/IllegalArgumentException", msg);
}

/* A Java exception for an ey_* return code: what failed, the code and what it means. */
static void throw_code(JNIEnv *env, const char *what, int rc)
{
    char msg[256];
    const char *name = "EY_E_?", *meaning = "unknown error code";
    const char *cls = "java/lang/IllegalArgumentException";
    switch (rc) {
    case EY_E_ARG:
        name = "EY_E_ARG";
        meaning = "an argument is out of range (NULL, size, index)";
        break;
    case EY_E_SPEC:
        name = "EY_E_SPEC";
        meaning = "the spec does not fit the compile-time bounds or is inconsistent";
        break;
    case EY_E_FULL:
        name = "EY_E_FULL";
        meaning = "a fixed table is full (fallback kinds)";
        cls = "java/lang/IllegalStateException";
        break;
    case EY_E_SHAPE:
        name = "EY_E_SHAPE";
        meaning = "a tensor's shape or dtype does not fit the signal";
        break;
    default:
        cls = "java/lang/IllegalStateException";
        break;
    }
    snprintf(msg, sizeof msg, "%s failed: %s (%d): %s", what, name, rc, meaning);
    throw_class(env, cls, msg);
}

static ey_jni *from_handle(JNIEnv *env, jlong handle)
{
    if (handle == 0) {
        throw_class(env, "java/lang/IllegalStateException", "the native collector is closed");
        return NULL;
    }
    return (ey_jni *)(intptr_t)handle;
}

/* Points out[0..n) at the n NUL-terminated strings of s[0..len): 0, or -1 when the blob does
   not hold exactly n of them. */
static int split_strings(char *s, size_t len, const char **out, size_t n)
{
    size_t k = 0, at = 0;
    while (at < len) {
        char *end = memchr(s + at, '\0', len - at);
        if (end == NULL || k == n) return -1;
        out[k++] = s + at;
        at = (size_t)(end - s) + 1;
    }
    return k == n ? 0 : -1;
}

static int int_array(JNIEnv *env, jintArray a, jint n, jint *out)
{
    if (a == NULL || (*env)->GetArrayLength(env, a) != n) return -1;
    if (n) (*env)->GetIntArrayRegion(env, a, 0, n, out);
    return (*env)->ExceptionCheck(env) ? -1 : 0;
}

JNIEXPORT jlong JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeOpen(
        JNIEnv *env, jclass cls, jbyteArray strings, jintArray kinds, jintArray tensors,
        jintArray channels, jintArray softmax, jobjectArray directions, jint classes,
        jint class_output, jint max_size, jint max_scale, jint n_engines, jint n_resource)
{
    jint n_sig, k, *ints = NULL;
    jsize n_bytes;
    size_t n_dirs = 0, n_strings, off_sigs, off_eng, off_keys, off_vals, off_dirs, off_str, total;
    const char **names = NULL;
    char *block = NULL, *text;
    ey_jni *h;
    ey_signal_spec *sigs;
    double *dirs;
    int rc;
    (void)cls;

    if (strings == NULL || kinds == NULL || directions == NULL) {
        throw_arg(env, "nativeOpen: a spec array is null");
        return 0;
    }
    n_sig = (*env)->GetArrayLength(env, kinds);
    n_bytes = (*env)->GetArrayLength(env, strings);
    if (n_sig < 0 || n_sig > EY_MAX_SIGNALS || n_engines < 1 || n_engines > EY_MAX_ENGINES ||
        n_resource < 0 || n_resource > 64 ||
        (*env)->GetArrayLength(env, directions) != n_sig) {
        char msg[200];
        snprintf(msg, sizeof msg, "nativeOpen: %d signals (at most %d), %d engines (1..%d), "
                 "%d resource attributes: the release does not fit this build of the C core",
                 (int)n_sig, EY_MAX_SIGNALS, (int)n_engines, EY_MAX_ENGINES, (int)n_resource);
        throw_arg(env, msg);
        return 0;
    }
    for (k = 0; k < n_sig; k++) {
        jdoubleArray d = (jdoubleArray)(*env)->GetObjectArrayElement(env, directions, k);
        if (d != NULL) {
            n_dirs += (size_t)(*env)->GetArrayLength(env, d);
            (*env)->DeleteLocalRef(env, d);
        }
    }
    /* the strings: one name per signal, the class name, the engines, keys and values */
    n_strings = (size_t)n_sig + 1 + (size_t)n_engines + 2 * (size_t)n_resource;
    off_sigs = align16(sizeof(ey_jni));
    off_eng = off_sigs + align16(sizeof(ey_signal_spec) * (size_t)n_sig);
    off_keys = off_eng + align16(sizeof(char *) * (size_t)n_engines);
    off_vals = off_keys + align16(sizeof(char *) * (size_t)n_resource);
    off_dirs = off_vals + align16(sizeof(char *) * (size_t)n_resource);
    off_str = off_dirs + align16(sizeof(double) * n_dirs);
    total = off_str + (size_t)n_bytes + 1;
    block = calloc(1, total);
    names = malloc(sizeof(char *) * n_strings);
    ints = malloc(sizeof(jint) * 4 * (size_t)(n_sig ? n_sig : 1));
    if (block == NULL || names == NULL || ints == NULL) {
        throw_class(env, "java/lang/OutOfMemoryError", "nativeOpen: no memory for the collector");
        goto fail;
    }
    h = (ey_jni *)block;
    sigs = (ey_signal_spec *)(block + off_sigs);
    dirs = (double *)(block + off_dirs);
    text = block + off_str;
    (*env)->GetByteArrayRegion(env, strings, 0, n_bytes, (jbyte *)text);
    if (split_strings(text, (size_t)n_bytes, names, n_strings) != 0) {
        throw_arg(env, "nativeOpen: the strings blob does not hold one NUL-terminated string "
                       "per signal, class name, engine and resource key and value");
        goto fail;
    }
    if (int_array(env, kinds, n_sig, ints) || int_array(env, tensors, n_sig, ints + n_sig) ||
        int_array(env, channels, n_sig, ints + 2 * n_sig) ||
        int_array(env, softmax, n_sig, ints + 3 * n_sig)) {
        throw_arg(env, "nativeOpen: kinds, tensors, channels and softmax must each have one "
                       "entry per signal");
        goto fail;
    }
    n_dirs = 0;
    for (k = 0; k < n_sig; k++) {
        jdoubleArray d = (jdoubleArray)(*env)->GetObjectArrayElement(env, directions, k);
        jint kind = ints[k];
        if (kind < EY_SIG_MEAN || kind > EY_SIG_EXTERNAL) kind = EY_SIG_EXTERNAL;
        sigs[k].name = names[k];
        sigs[k].kind = (ey_signal_kind)kind;
        sigs[k].tensor = ints[n_sig + k];
        sigs[k].channel = ints[2 * n_sig + k];
        sigs[k].softmax = ints[3 * n_sig + k];
        if (d != NULL) {
            jsize dim = (*env)->GetArrayLength(env, d);
            (*env)->GetDoubleArrayRegion(env, d, 0, dim, dirs + n_dirs);
            (*env)->DeleteLocalRef(env, d);
            sigs[k].direction = dirs + n_dirs;
            sigs[k].dim = dim;
            n_dirs += (size_t)dim;
        } else if (kind == EY_SIG_RANDOM_PROJECTION) {
            throw_arg(env, "nativeOpen: a random_projection signal without its direction");
            goto fail;
        }
    }
    {
        const char **eng = (const char **)(void *)(block + off_eng);
        const char **keys = (const char **)(void *)(block + off_keys);
        const char **vals = (const char **)(void *)(block + off_vals);
        size_t at = (size_t)n_sig + 1;
        for (k = 0; k < n_engines; k++) eng[k] = names[at++];
        for (k = 0; k < n_resource; k++) keys[k] = names[at++];
        for (k = 0; k < n_resource; k++) vals[k] = names[at++];
        h->spec.signals = sigs;
        h->spec.n_signals = n_sig;
        h->spec.classes = classes;
        h->spec.class_output = class_output;
        h->spec.class_name = names[n_sig][0] ? names[n_sig] : NULL;
        h->spec.max_size = max_size;
        h->spec.max_scale = max_scale;
        h->spec.engines = eng;
        h->spec.n_engines = n_engines;
        h->spec.resource_keys = keys;
        h->spec.resource_values = vals;
        h->spec.n_resource = n_resource;
    }
    if ((*env)->ExceptionCheck(env)) goto fail;
    rc = ey_window_init(&h->window, &h->spec, now_ns());
    if (rc != EY_OK) {
        throw_code(env, "ey_window_init", rc);
        goto fail;
    }
    free(names);
    free(ints);
    return (jlong)(intptr_t)block;
fail:
    free(block);
    free(names);
    free(ints);
    return 0;
}

/* One call's tensors: local references and shapes first (JNI calls), then the arrays' memory
   under GetPrimitiveArrayCritical (no copy, no JNI call until released). */
typedef struct tensors {
    jfloatArray arrays[EY_JNI_MAX_TENSORS];
    ey_tensor t[EY_JNI_MAX_TENSORS];
    jint n, pinned;
} tensors;

static int collect(JNIEnv *env, jobjectArray data, jobjectArray shapes, tensors *ts,
                   const char *what)
{
    jint n, k;
    char msg[200];
    if (data == NULL) return 0;
    n = (*env)->GetArrayLength(env, data);
    if (shapes == NULL || (*env)->GetArrayLength(env, shapes) != n ||
        ts->n + n > EY_JNI_MAX_TENSORS) {
        snprintf(msg, sizeof msg, "nativeRecord: %d %s with %s shapes (at most %d tensors)",
                 (int)n, what, shapes == NULL ? "no" : "another number of", EY_JNI_MAX_TENSORS);
        throw_arg(env, msg);
        return -1;
    }
    for (k = 0; k < n; k++) {
        jfloatArray a = (jfloatArray)(*env)->GetObjectArrayElement(env, data, k);
        jlongArray s = (jlongArray)(*env)->GetObjectArrayElement(env, shapes, k);
        ey_tensor *t = &ts->t[ts->n];
        jsize ndim = s == NULL ? 0 : (*env)->GetArrayLength(env, s);
        jsize len = a == NULL ? -1 : (*env)->GetArrayLength(env, a);
        int64_t elems = 1;
        jint d;
        if (a == NULL || ndim < 1 || ndim > EY_MAX_DIMS) {
            snprintf(msg, sizeof msg, "nativeRecord: %s %d is %s", what, (int)k,
                     a == NULL ? "null" : "given a shape of no or more than EY_MAX_DIMS dims");
            throw_arg(env, msg);
            return -1;
        }
        (*env)->GetLongArrayRegion(env, s, 0, ndim, (jlong *)t->shape);
        (*env)->DeleteLocalRef(env, s);
        for (d = 0; d < ndim; d++) {
            if (t->shape[d] < 0 || (t->shape[d] > 0 && elems > INT32_MAX / t->shape[d])) {
                elems = -1;
                break;
            }
            elems *= t->shape[d];
        }
        if (elems != len) { /* the C core would read past the array */
            snprintf(msg, sizeof msg, "nativeRecord: %s %d holds %d floats; its shape says %lld",
                     what, (int)k, (int)len, (long long)elems);
            throw_arg(env, msg);
            return -1;
        }
        t->dtype = EY_F32;
        t->ndim = ndim;
        ts->arrays[ts->n++] = a;
    }
    return 0;
}

static void unpin(JNIEnv *env, tensors *ts)
{
    while (ts->pinned > 0) {
        ts->pinned--;
        (*env)->ReleasePrimitiveArrayCritical(env, ts->arrays[ts->pinned],
                                              (void *)ts->t[ts->pinned].data, JNI_ABORT);
    }
}

JNIEXPORT void JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeRecord(
        JNIEnv *env, jclass cls, jlong handle, jobjectArray inputs, jobjectArray input_shapes,
        jobjectArray outputs, jobjectArray output_shapes, jint engine, jdouble latency_s,
        jint n_fallbacks, jbyteArray fallbacks)
{
    tensors ts;
    jint n_in, k;
    int rc;
    ey_jni *h = from_handle(env, handle);
    (void)cls;
    if (h == NULL) return;
    ts.n = ts.pinned = 0;
    if (collect(env, inputs, input_shapes, &ts, "input") != 0) goto done;
    n_in = ts.n;
    if (collect(env, outputs, output_shapes, &ts, "output") != 0) goto done;
    for (k = 0; k < ts.n; k++) {
        ts.t[k].data = (*env)->GetPrimitiveArrayCritical(env, ts.arrays[k], NULL);
        if (ts.t[k].data == NULL) {
            unpin(env, &ts);
            throw_class(env, "java/lang/OutOfMemoryError", "nativeRecord: cannot pin a tensor");
            goto done;
        }
        ts.pinned++;
    }
    rc = ey_window_observe(&h->window, n_in ? ts.t : NULL, n_in,
                           ts.n > n_in ? ts.t + n_in : NULL, ts.n - n_in, engine, latency_s,
                           now_ns());
    unpin(env, &ts);
    if (rc != EY_OK) {
        throw_code(env, "ey_window_observe", rc);
        goto done;
    }
    if (n_fallbacks > 0) {
        jsize len = fallbacks == NULL ? 0 : (*env)->GetArrayLength(env, fallbacks);
        char *text = malloc((size_t)len + 1);
        const char **f = malloc(sizeof(char *) * 3 * (size_t)n_fallbacks);
        if (text == NULL || f == NULL) {
            throw_class(env, "java/lang/OutOfMemoryError", "nativeRecord: no memory");
        } else {
            (*env)->GetByteArrayRegion(env, fallbacks, 0, len, (jbyte *)text);
            if (split_strings(text, (size_t)len, f, 3 * (size_t)n_fallbacks) != 0) {
                throw_arg(env, "nativeRecord: the fallbacks blob does not hold engine, kind and "
                               "reason (NUL-terminated) per fallback");
            } else {
                for (k = 0; k < n_fallbacks; k++) {
                    rc = ey_window_add_fallback(&h->window, f[3 * k], f[3 * k + 1],
                                                f[3 * k + 2], 1);
                    if (rc != EY_OK) {
                        throw_code(env, "ey_window_add_fallback", rc);
                        break;
                    }
                }
            }
        }
        free(text);
        free((void *)f);
    }
done:
    for (k = 0; k < ts.n; k++) (*env)->DeleteLocalRef(env, ts.arrays[k]);
}

JNIEXPORT void JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeAddDropped(JNIEnv *env, jclass cls, jlong handle,
                                                          jlong n)
{
    ey_jni *h = from_handle(env, handle);
    (void)cls;
    if (h != NULL && n > 0) ey_window_add_dropped(&h->window, (uint64_t)n);
}

/* The window as OTLP/JSON UTF-8 bytes; a new window starts (even when this throws: a window
   that cannot be encoded is not kept to fail again). */
JNIEXPORT jbyteArray JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeTakeWindow(JNIEnv *env, jclass cls, jlong handle,
                                                          jstring upload_id)
{
    const char *id;
    char *buf = NULL;
    size_t cap = EY_JNI_FIRST_BUFFER, need;
    jbyteArray out = NULL;
    int rc;
    ey_jni *h = from_handle(env, handle);
    (void)cls;
    if (h == NULL) return NULL;
    if (upload_id == NULL) {
        throw_arg(env, "nativeTakeWindow: the upload id is null");
        return NULL;
    }
    id = (*env)->GetStringUTFChars(env, upload_id, NULL);
    if (id == NULL) return NULL; /* OutOfMemoryError pending */
    for (;;) { /* like snprintf: grow to what it says it needs */
        char *grown = realloc(buf, cap);
        if (grown == NULL) {
            throw_class(env, "java/lang/OutOfMemoryError", "nativeTakeWindow: no memory");
            goto done;
        }
        buf = grown;
        need = ey_window_encode_otlp_json(&h->window, id, buf, cap);
        if (need < cap) break;
        cap = need + 1;
    }
    if (need > INT32_MAX) {
        throw_class(env, "java/lang/IllegalStateException", "nativeTakeWindow: window too big");
        goto done;
    }
    out = (*env)->NewByteArray(env, (jsize)need);
    if (out != NULL) (*env)->SetByteArrayRegion(env, out, 0, (jsize)need, (const jbyte *)buf);
done:
    (*env)->ReleaseStringUTFChars(env, upload_id, id);
    free(buf);
    rc = ey_window_init(&h->window, &h->spec, now_ns());
    if (rc != EY_OK) throw_code(env, "ey_window_init", rc); /* cannot happen: it worked once */
    return out;
}

JNIEXPORT void JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeClose(JNIEnv *env, jclass cls, jlong handle)
{
    (void)env;
    (void)cls;
    free((void *)(intptr_t)handle);
}
