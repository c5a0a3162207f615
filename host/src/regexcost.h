/*
 * regexcost.h - how large a POSIX extended regex becomes once compiled,
 * checked before regcomp.
 *
 * glibc's regcomp unrolls every bounded repetition, copying the repeated
 * part once per count, so nested counts multiply: the 21 bytes
 * "((a{255}){255}){255}" ask for 16 million nodes and took over 2 GB and
 * half a minute to compile.  Patterns come from plugin.json schemas,
 * trigger conditions (also through the API) and filter steps, so one line
 * of configuration could stall or kill the daemon.  Both callers (schema.c,
 * triggers.c) refuse a pattern whose estimate is above
 * EVH_REGEX_MAX_EXPANSION (evh_limits.h) before compiling it.
 */
#ifndef EVH_REGEXCOST_H
#define EVH_REGEXCOST_H

/*
 * An upper estimate of the elements re unrolls to: every atom (a
 * character, an escape, a bracket expression) counts 1, a group the sum of
 * what it holds, and a repetition multiplies what it repeats ({m,n} by n,
 * {m,} by m + 1, + by 2).  Saturates just above EVH_REGEX_MAX_EXPANSION,
 * and is above it for groups nested deeper than the estimate follows.
 * Malformed patterns get some estimate; regcomp reports them.
 */
unsigned long regex_expansion(const char *re);

#endif
