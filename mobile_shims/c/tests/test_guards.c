/* Regression tests for inputs the window once mishandled (each found under ASan/UBSan):
   a negative class output, a class-output tensor with an empty row or too many dimensions,
   and fallback names longer than EY_NAME_LEN (cut inside a UTF-8 character, and distinct
   names merged). Built with the sanitizers by `make test`. */
#include <stdio.h>
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

    printf("%d guard checks failed\n", failures);
    return failures != 0;
}
