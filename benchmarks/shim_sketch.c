/* The C sketch and window (mobile_shims/c) timed: see benchmarks/shim_sketch.py (the runner).
 *
 *     shim_sketch VALUES.f64 REPEATS WINDOW_OUT.json
 *
 * Prints one JSON object: values/s of ey_hist_update on the whole array in one batch and one
 * value per call (median of REPEATS after one warm-up pass), the per-call cost of
 * ey_window_observe, and the bytes of one window of 10,000 calls (written to WINDOW_OUT). */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "edgeyard.h"

#define DIM 16
#define CALLS 10000

static ey_hist hist;
static ey_window window;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    static const ey_signal_spec signals[] = {
        {"input.x.mean", EY_SIG_MEAN, 0, 0, 0, NULL, 0},
        {"input.x.std", EY_SIG_STD, 0, 0, 0, NULL, 0},
        {"input.x.min", EY_SIG_MIN, 0, 0, 0, NULL, 0},
        {"input.x.max", EY_SIG_MAX, 0, 0, 0, NULL, 0},
        {"output.y.mean", EY_SIG_OUTPUT_MEAN, 0, 0, 0, NULL, 0},
    };
    static const char *engines[] = {"onnx-fp32"};
    static const char *keys[] = {"service.name", "edgeyard.model", "edgeyard.release"};
    static const char *vals[] = {"edgeyard-device", "bench", "1.0"};
    FILE *f;
    long n;
    double *v, batch[64], single[64], observe[64], t0;
    int repeats, r;
    long i;
    ey_spec spec = {0};
    ey_tensor x = {0}, y = {0};
    size_t bytes;
    char *buf;
    if (argc != 4) return 2;
    f = fopen(argv[1], "rb");
    if (f == NULL) return 2;
    fseek(f, 0, SEEK_END);
    n = ftell(f) / 8;
    fseek(f, 0, SEEK_SET);
    v = malloc((size_t)n * 8);
    if (v == NULL || fread(v, 8, (size_t)n, f) != (size_t)n) return 2;
    fclose(f);
    repeats = atoi(argv[2]);
    if (repeats < 1 || repeats > 64 || n < (long)CALLS * DIM) return 2;
    for (r = -1; r < repeats; r++) { /* r = -1: warm-up */
        ey_hist_init(&hist, 160, 20);
        t0 = now();
        ey_hist_update(&hist, v, (size_t)n);
        if (r >= 0) batch[r] = (double)n / (now() - t0);
        ey_hist_init(&hist, 160, 20);
        t0 = now();
        for (i = 0; i < n; i++) ey_hist_update(&hist, v + i, 1);
        if (r >= 0) single[r] = (double)n / (now() - t0);
    }
    spec.signals = signals;
    spec.n_signals = 5;
    spec.engines = engines;
    spec.n_engines = 1;
    spec.resource_keys = keys;
    spec.resource_values = vals;
    spec.n_resource = 3;
    x.dtype = y.dtype = EY_F64;
    x.ndim = y.ndim = 2;
    x.shape[0] = y.shape[0] = 1;
    x.shape[1] = DIM;
    y.shape[1] = 1;
    for (r = -1; r < repeats; r++) {
        ey_window_init(&window, &spec, 1700000000000000000LL);
        t0 = now();
        for (i = 0; i < CALLS; i++) {
            x.data = v + i * DIM;
            y.data = v + i;
            ey_window_observe(&window, &x, 1, &y, 1, 0, 1e-3 * (1.0 + 0.01 * (double)(i % 97)),
                              1700000000000000000LL + i * 1000000LL);
        }
        if (r >= 0) observe[r] = (now() - t0) / CALLS;
    }
    bytes = ey_window_encode_otlp_json(&window, "0123456789abcdef0123456789abcdef", NULL, 0);
    buf = malloc(bytes + 1);
    ey_window_encode_otlp_json(&window, "0123456789abcdef0123456789abcdef", buf, bytes + 1);
    f = fopen(argv[3], "wb");
    if (f == NULL) return 2;
    fwrite(buf, 1, bytes, f);
    fclose(f);
    printf("{\"batch_values_per_s\": %.6g, \"single_values_per_s\": %.6g, "
           "\"observe_s_per_call\": %.6g, \"window_json_bytes\": %lu, \"window_calls\": %d, "
           "\"window_signals\": %d, \"sizeof_window\": %lu, \"sizeof_hist\": %lu}\n",
           median(batch, repeats), median(single, repeats), median(observe, repeats),
           (unsigned long)bytes, CALLS, 5 + 1, (unsigned long)sizeof(ey_window),
           (unsigned long)sizeof(ey_hist));
    free(buf);
    free(v);
    return 0;
}
