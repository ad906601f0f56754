/* Feeds calls through a C telemetry window and prints the window as OTLP/JSON.
 *
 *     window_demo MODEL RELEASE PROFILE DEVICE_ID UPLOAD_ID START_NS < calls
 *
 * stdin: one call per line, "<latency_s> <x>" (decimal or C99 hex floats): a model with one float64 input of shape [1, 1]
 * (the signals input.x.mean/std/min/max, the latency, engine "c-demo"). The end time is
 * START_NS + 1 ms per call. */
#include <stdio.h>
#include <stdlib.h>

#include "edgeyard.h"

static ey_window window; /* ~200 KB: static, not on the stack */

int main(int argc, char **argv)
{
    static const ey_signal_spec signals[] = {
        {"input.x.mean", EY_SIG_MEAN, 0, 0, 0, NULL, 0},
        {"input.x.std", EY_SIG_STD, 0, 0, 0, NULL, 0},
        {"input.x.min", EY_SIG_MIN, 0, 0, 0, NULL, 0},
        {"input.x.max", EY_SIG_MAX, 0, 0, 0, NULL, 0},
    };
    static const char *engines[] = {"c-demo"};
    const char *keys[] = {"service.name", "edgeyard.model", "edgeyard.release",
                          "edgeyard.profile", "edgeyard.device_id"};
    const char *values[5];
    ey_spec spec = {0};
    ey_tensor x = {0};
    double latency, v;
    int64_t start, calls = 0;
    size_t need;
    char *buf;
    if (argc != 7) {
        fprintf(stderr, "usage: window_demo MODEL RELEASE PROFILE DEVICE_ID UPLOAD_ID START_NS "
                        "< calls\n");
        return 2;
    }
    values[0] = "edgeyard-device";
    values[1] = argv[1];
    values[2] = argv[2];
    values[3] = argv[3];
    values[4] = argv[4];
    start = strtoll(argv[6], NULL, 10);
    spec.signals = signals;
    spec.n_signals = 4;
    spec.engines = engines;
    spec.n_engines = 1;
    spec.resource_keys = keys;
    spec.resource_values = values;
    spec.n_resource = 5;
    if (ey_window_init(&window, &spec, start) != EY_OK) return 1;
    x.data = &v;
    x.dtype = EY_F64;
    x.ndim = 2;
    x.shape[0] = x.shape[1] = 1;
    for (;;) {
        int got = scanf("%lf %lf", &latency, &v);
        if (got == EOF) break;
        if (got != 2) {
            fprintf(stderr, "window_demo: line %lld is not \"<latency_s> <x>\"\n",
                    (long long)calls + 1);
            return 2;
        }
        calls++;
        if (ey_window_observe(&window, &x, 1, NULL, 0, 0, latency, start + calls * 1000000)
            != EY_OK)
            return 1;
    }
    need = ey_window_encode_otlp_json(&window, argv[5], NULL, 0);
    buf = malloc(need + 1);
    if (buf == NULL) return 1;
    ey_window_encode_otlp_json(&window, argv[5], buf, need + 1);
    puts(buf);
    free(buf);
    return 0;
}
