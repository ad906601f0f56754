/* Regression tests for inputs the window once mishandled (each found under ASan/UBSan):
   a negative class output, a class-output tensor with an empty row or too many dimensions,
   fallback names longer than EY_NAME_LEN (cut inside a UTF-8 character, and distinct
   names merged), signal and class names longer than the encoder's old 320-byte buffer (cut
   silently), a call no engine answered (engine -1, once refused and lost) and duplicate engine
   names. Built with the sanitizers by `make test`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeyard.h"

static int failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                            \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2
              : (*p & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0) return 0;
        p++;
        while (n--) {
            if ((*p & 0xC0) != 0x80) return 0;
            p++;
        }
    }
    return 1;
}

static ey_window w;

/* the window's OTLP JSON in a buffer of the size the encoder asks for (caller frees) */
static char *encode(const ey_window *win)
{
    size_t need = ey_window_encode_otlp_json(win, "u", NULL, 0), got;
    char *buf = malloc(need + 1);
    if (buf == NULL) return NULL;
    got = ey_window_encode_otlp_json(win, "u", buf, need + 1);
    CHECK(got == need && strlen(buf) == need);
    return buf;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (hay = strstr(hay, needle); hay != NULL; hay = strstr(hay + 1, needle)) n++;
    return n;
}

/* Names of any length are written whole: metric names were "edgeyard." + the name in a
   320-byte buffer, so a longer signal or class name was cut (and two such names merged). */
static void long_names(void)
{
    static const char *engines[] = {"onnx-fp32"};
    static char sig_a[1200], sig_b[1200], cls[700], metric[1300];
    static ey_signal_spec sigs[2];
    double v[3] = {1.5, 2.5, -4};
    ey_spec spec;
    char *json;
    memset(sig_a, 'a', 1000);
    strcpy(sig_a + 1000, ".tail-\xc3\xa9-\"q\"-a"); /* UTF-8 and a quote past byte 320 */
    strcpy(sig_b, sig_a);
    sig_b[strlen(sig_b) - 1] = 'b';  /* differs from sig_a only in its last byte */
    memset(cls, 'c', 600);
    cls[600] = '\0';
    memset(sigs, 0, sizeof sigs);
    sigs[0].name = sig_a;
    sigs[0].kind = EY_SIG_EXTERNAL;
    sigs[1].name = sig_b;
    sigs[1].kind = EY_SIG_EXTERNAL;
    memset(&spec, 0, sizeof spec);
    spec.signals = sigs;
    spec.n_signals = 2;
    spec.engines = engines;
    spec.n_engines = 1;
    spec.classes = 2;
    spec.class_name = cls;
    CHECK(ey_window_init(&w, &spec, 0) == EY_OK);
    CHECK(ey_window_add_values(&w, 0, v, 3) == EY_OK);
    CHECK(ey_window_add_values(&w, 1, v, 2) == EY_OK);
    w.classes[1] = 4;
    json = encode(&w);
    if (json == NULL) return;
    snprintf(metric, sizeof metric, "\"name\":\"edgeyard.%.1000s.tail-\xc3\xa9-\\\"q\\\"-a\"",
             sig_a);
    CHECK(count_of(json, metric) == 1);
    metric[strlen(metric) - 2] = 'b';
    CHECK(count_of(json, metric) == 1);
    snprintf(metric, sizeof metric, "\"name\":\"edgeyard.%s\"", cls);
    CHECK(count_of(json, metric) == 1);
    free(json);
}

/* engine -1 (every engine failed; what the Java wrapper passes) is recorded as Python records
   engine None: under the engine name "none" (calls, latency_ms, latency_ms.by_engine). */
static void engine_none(void)
{
    static const char *engines[] = {"tflite", "none", "cpu"};
    static const char *dup[] = {"cpu", "cpu"};
    ey_spec spec;
    char *json;
    memset(&spec, 0, sizeof spec);
    spec.engines = engines;
    spec.n_engines = 1;
    CHECK(ey_window_init(&w, &spec, 0) == EY_OK);
    CHECK(ey_window_observe(&w, NULL, 0, NULL, 0, EY_ENGINE_NONE, 0.002, 5) == EY_OK);
    CHECK(ey_window_observe(&w, NULL, 0, NULL, 0, 0, 0.001, 6) == EY_OK);
    CHECK(ey_window_observe(&w, NULL, 0, NULL, 0, -2, 0.001, 6) == EY_E_ARG);
    CHECK(ey_window_observe(&w, NULL, 0, NULL, 0, 1, 0.001, 6) == EY_E_ARG);
    CHECK(w.calls == 2 && w.latency.count == 2 && w.engine_calls[1] == 1);
    json = encode(&w);
    if (json != NULL) {
        const char *none = strstr(json, "{\"key\":\"engine\",\"value\":{\"stringValue\":\"none\"}}");
        const char *tfl = strstr(json, "{\"key\":\"engine\",\"value\":{\"stringValue\":\"tflite\"}}");
        CHECK(count_of(json, "\"stringValue\":\"none\"") == 2);  /* by_engine and calls */
        CHECK(none != NULL && tfl != NULL && none < tfl);  /* sorted by name, as Python does */
        free(json);
    }
    /* a spec engine named "none" is the same engine (Python counts by name) */
    spec.n_engines = 3;
    CHECK(ey_window_init(&w, &spec, 0) == EY_OK);
    CHECK(ey_window_observe(&w, NULL, 0, NULL, 0, EY_ENGINE_NONE, 0.002, 5) == EY_OK);
    CHECK(ey_window_observe(&w, NULL, 0, NULL, 0, 1, 0.002, 5) == EY_OK);
    CHECK(w.engine_calls[1] == 2 && w.engine_calls[3] == 0);
    json = encode(&w);
    if (json != NULL) {
        CHECK(count_of(json, "\"stringValue\":\"none\"") == 2);
        CHECK(count_of(json, "\"asInt\":\"2\",\"attributes\":[{\"key\":\"engine\"") == 1);
        free(json);
    }
    /* two engines of one name would be two series Python merges: refused */
    spec.engines = dup;
    spec.n_engines = 2;
    CHECK(ey_window_init(&w, &spec, 0) == EY_E_SPEC);
}

int main(void)
{
    static const char *engines[] = {"onnx-fp32"};
    float x[2 * 3] = {0, 1, 2, 3, 4, 5};
    float y[2 * 4] = {0};
    ey_spec spec;
    ey_tensor in, out;
    char a[80], b[80];
    int k;

    memset(&spec, 0, sizeof spec);
    spec.engines = engines;
    spec.n_engines = 1;
    spec.classes = 4;
    spec.class_output = -1;
    CHECK(ey_window_init(&w, &spec, 0) == EY_E_SPEC);  /* once: observe read outputs[-1] */
    spec.class_output = 0;
    CHECK(ey_window_init(&w, &spec, 0) == EY_OK);

    memset(&in, 0, sizeof in);
    in.data = x;
    in.dtype = EY_F32;
    in.ndim = 2;
    in.shape[0] = 2;
    in.shape[1] = 3;
    memset(&out, 0, sizeof out);
    out.data = y;
    out.dtype = EY_F32;
    out.ndim = 2;
    out.shape[0] = 2;
    out.shape[1] = 0;  /* an empty row: argmax read past the buffer */
    CHECK(ey_window_observe(&w, &in, 1, &out, 1, 0, 0.001, 1) == EY_E_SHAPE);
    out.ndim = EY_MAX_DIMS + 1;  /* more dimensions than shape[] holds */
    CHECK(ey_window_observe(&w, &in, 1, &out, 1, 0, 0.001, 1) == EY_E_SHAPE);
    out.ndim = 2;
    out.shape[1] = -4;
    CHECK(ey_window_observe(&w, &in, 1, &out, 1, 0, 0.001, 1) == EY_E_SHAPE);
    out.shape[1] = 4;
    CHECK(ey_window_observe(&w, &in, 1, &out, 1, 0, 0.001, 1) == EY_OK);
    CHECK(w.calls == 1 && w.classes[0] == 2);

    /* 37 ASCII bytes, then "é" (2 bytes) across where a long name is cut (38 bytes are kept,
       then "~" and a hash), then tails that differ only past the cut */
    memset(a, 'r', 37);
    strcpy(a + 37, "\xc3\xa9 timed out after 2.5 s, then again");
    strcpy(b, a);
    b[strlen(b) - 3] = '9';
    CHECK(ey_window_add_fallback(&w, "onnx-fp32", "error", a, 1) == EY_OK);
    CHECK(ey_window_add_fallback(&w, "onnx-fp32", "error", b, 1) == EY_OK);
    CHECK(ey_window_add_fallback(&w, "onnx-fp32", "error", a, 1) == EY_OK);
    CHECK(w.n_fallbacks == 2);  /* the two reasons stay apart; the repeat adds up */
    CHECK(w.fallbacks[0].count == 2 && w.fallbacks[1].count == 1);
    for (k = 0; k < w.n_fallbacks; k++) {
        CHECK(strlen(w.fallbacks[k].reason) <= EY_NAME_LEN - 1);
        CHECK(valid_utf8(w.fallbacks[k].reason));
        CHECK(strncmp(w.fallbacks[k].reason, a, 37) == 0 && w.fallbacks[k].reason[37] == '~');
    }
    CHECK(strcmp(w.fallbacks[0].reason, w.fallbacks[1].reason) != 0);
    /* a short name is kept as it is */
    CHECK(ey_window_add_fallback(&w, "onnx-fp32", "slow", "p99 over budget", 1) == EY_OK);
    CHECK(strcmp(w.fallbacks[2].reason, "p99 over budget") == 0);

    long_names();
    engine_none();

    printf("%d guard checks failed\n", failures);
    return failures != 0;
}
