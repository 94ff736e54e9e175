/* run_errors.h: the one-line errors and option parsers shared by bitedge-run's commands (main.c) and its server
 * (server.c): bad input prints "bitedge-run: error: ..." and exits 2, never a crash. */
#ifndef BITEDGE_RUN_ERRORS_H
#define BITEDGE_RUN_ERRORS_H

#define EXIT_BAD_INPUT 2

/* Prints the message as one error line and exits EXIT_BAD_INPUT. */
_Noreturn void be_die(const char *fmt, ...);

/* The value of option opt as an integer / a number in [lo, hi], or be_die naming the option. */
long be_parse_long(const char *opt, const char *s, long lo, long hi);
double be_parse_double(const char *opt, const char *s, double lo, double hi);

#endif
