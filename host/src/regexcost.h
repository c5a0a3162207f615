/*
 * regexcost.h - how large a POSIX extended regex becomes once compiled,
 * checked before regcomp.
 *
 * glibc's regcomp unrolls every bounded repetition, copying the repeated
 * part once per count, so nested counts multiply: the 21 bytes
 * "((a{255}){255}){255}" ask for 16 million nodes and took over 2 GB and
 * half a minute to compile.  Patterns come from plugin.json schemas,
 * trigger conditions (also through the API) and filter steps, so one line
 * of configuration could stall or kill the daemon.  Nested repetitions cost
 * more than their size: glibc's epsilon closures grow exponentially with
 * them, so "a????????????????+++++" (22 bytes, a fuzz_schema find) did not
 * compile within 20 s.  Both callers (schema.c, triggers.c) refuse a
 * pattern over either limit before compiling it.
 */
#ifndef EVH_REGEXCOST_H
#define EVH_REGEXCOST_H

/* What compiling a regex costs, estimated. */
typedef struct regex_cost {
    /* Elements it unrolls to: every atom (a character, an escape, a bracket
     * expression), a group and an alternation count 1, a group also what
     * it holds, and a
     * repetition multiplies what it repeats ({m,n} by n, {m,} by m + 1, +
     * by 2).  Saturates just above EVH_REGEX_MAX_EXPANSION. */
    unsigned long elements;
    /* How deep repetitions nest, through groups ("((a?)+)*" is 3) or
     * stacked ("a?+" is 2, which POSIX leaves undefined anyway). */
    int repeat_depth;
} regex_cost;

/* Malformed patterns get some estimate; regcomp reports them.  Groups
 * nested deeper than the estimate follows are over both limits. */
regex_cost regex_measure(const char *re);

/* 1 when re is within EVH_REGEX_MAX_EXPANSION and
 * EVH_REGEX_MAX_REPEAT_DEPTH (evh_limits.h), so that regcomp may be called. */
int regex_cost_ok(const char *re);

#endif
