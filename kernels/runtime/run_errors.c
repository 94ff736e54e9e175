/* run_errors.c: see run_errors.h. */
#include "run_errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

_Noreturn void be_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bitedge-run: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_BAD_INPUT);
}

long be_parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) be_die("%s expects an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
    return v;
}

double be_parse_double(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) be_die("%s expects a number in [%g, %g], got '%s'", opt, lo, hi, s);
    return v;
}
