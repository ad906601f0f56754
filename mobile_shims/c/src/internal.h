/* Shared between the library's own files; not part of the API. */
#ifndef EDGEYARD_INTERNAL_H
#define EDGEYARD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* A sequence produced element by element, strictly in order (pairwise sums of derived values
   without a scratch buffer). */
typedef struct ey_cursor {
    const void *data;
    size_t i;
    double (*next)(struct ey_cursor *c);
    double a, b;  /* per-use parameters (a row's mean, max, total) */
    const double *w; /* a random projection's direction */
    int dtype;
} ey_cursor;

int64_t ey_shr(int64_t x, int s);
double ey_pairwise_cursor(ey_cursor *c, size_t n);

#endif
