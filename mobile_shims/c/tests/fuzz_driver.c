/* A standalone driver for tests/fuzz_window.c where libFuzzer is missing (gcc): replays the
 * files named on the command line (a directory: each file in it), then runs the target on
 * inputs drawn from a seeded xorshift64* generator (random bytes, or a corpus file with a few
 * bytes changed) until FUZZ_SECONDS (default 20) have passed or FUZZ_RUNS (default: no limit)
 * inputs have run. Built with AddressSanitizer and UBSan (-fno-sanitize-recover=all): a finding
 * aborts the process (nonzero exit) after the input is written to fuzz-crash-<seed>-<run>.bin
 * in FUZZ_CRASH_DIR (default: the current directory). Given files and neither FUZZ_SECONDS nor
 * FUZZ_RUNS, it only replays the files: `fuzz_window_san thatfile` reproduces a finding.
 *
 *     FUZZ_SECONDS=20 FUZZ_SEED=1 build/fuzz_window_san [corpus files or dirs]
 *
 * Prints "fuzz_window: N runs ... no finding" at the end. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_window_report(FILE *f);
void __sanitizer_set_death_callback(void (*callback)(void)); /* the sanitizers' runtime */

#define MAX_INPUT 16384
#define MAX_CORPUS 256

static uint8_t input[MAX_INPUT];
static size_t input_len;
static unsigned long long seed, run;
static const char *current_file;
static uint64_t rng_state;

static uint8_t *corpus[MAX_CORPUS];
static size_t corpus_len[MAX_CORPUS];
static int n_corpus;

static uint64_t next(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void on_death(void)
{
    char path[1200];
    const char *dir = getenv("FUZZ_CRASH_DIR");
    FILE *f;
    if (current_file != NULL) {
        fprintf(stderr, "fuzz_driver: finding on corpus file %s\n", current_file);
        return;
    }
    snprintf(path, sizeof path, "%s/fuzz-crash-%llu-%llu.bin", dir ? dir : ".", seed, run);
    f = fopen(path, "wb");
    if (f != NULL) {
        fwrite(input, 1, input_len, f);
        fclose(f);
    }
    fprintf(stderr, "fuzz_driver: finding at run %llu of seed %llu (%lu bytes), input written "
            "to %s\n", run, seed, (unsigned long)input_len, path);
}

static void on_abort(int sig) /* the target's own checks call abort() */
{
    on_death();
    signal(sig, SIG_DFL);
    raise(sig);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void add_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL) {
        fprintf(stderr, "fuzz_driver: cannot open %s\n", path);
        exit(2);
    }
    n = fread(input, 1, MAX_INPUT, f);
    fclose(f);
    current_file = path;
    input_len = n;
    LLVMFuzzerTestOneInput(input, n);
    current_file = NULL;
    if (n_corpus < MAX_CORPUS && (corpus[n_corpus] = malloc(n ? n : 1)) != NULL) {
        memcpy(corpus[n_corpus], input, n);
        corpus_len[n_corpus++] = n;
    }
}

static void add_path(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz_driver: no file %s\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    if ((d = opendir(path)) == NULL) exit(2);
    while ((e = readdir(d)) != NULL) {
        char sub[4096];
        if (e->d_name[0] == '.') continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (stat(sub, &st) == 0 && S_ISREG(st.st_mode)) add_file(sub);
    }
    closedir(d);
}

static void draw(void)
{
    uint64_t r = next();
    size_t i;
    if (n_corpus && r % 4 == 0) { /* a corpus file with a few bytes changed */
        int k = (int)((r >> 8) % (uint64_t)n_corpus), flips = 1 + (int)((r >> 20) % 8);
        input_len = corpus_len[k];
        memcpy(input, corpus[k], input_len);
        while (flips-- && input_len)
            input[next() % input_len] = (uint8_t)next();
        return;
    }
    r %= 100;
    input_len = (size_t)(next() % (r < 70 ? 512 : r < 95 ? 4096 : MAX_INPUT));
    for (i = 0; i < input_len; i += 8) {
        uint64_t v = next();
        size_t k;
        for (k = 0; k < 8 && i + k < input_len; k++) input[i + k] = (uint8_t)(v >> (8 * k));
    }
}

int main(int argc, char **argv)
{
    const char *s = getenv("FUZZ_SECONDS"), *n = getenv("FUZZ_RUNS"), *sd = getenv("FUZZ_SEED");
    double seconds = s != NULL ? atof(s) : 20.0, t0;
    unsigned long long max_runs = n != NULL ? strtoull(n, NULL, 10) : 0;
    int k;
    seed = sd != NULL ? strtoull(sd, NULL, 10) : 20240611ULL;
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1; /* never 0 */
    __sanitizer_set_death_callback(on_death);
    signal(SIGABRT, on_abort);
    t0 = now_s();
    for (k = 1; k < argc; k++) add_path(argv[k]);
    if (argc > 1 && s == NULL && n == NULL) seconds = 0; /* replay only */
    for (run = 0; max_runs == 0 || run < max_runs; run++) {
        if ((run & 63) == 0 && now_s() - t0 >= seconds) break;
        draw();
        LLVMFuzzerTestOneInput(input, input_len);
    }
    printf("fuzz_window: %llu runs (+%d corpus files) in %.1f s, seed %llu: no finding\n", run,
           n_corpus, now_s() - t0, seed);
    fuzz_window_report(stdout);
    for (k = 0; k < n_corpus; k++) free(corpus[k]);
    return 0;
}
