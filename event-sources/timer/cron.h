/* cron.h - the timer's 5-field cron expressions, in UTC.
 *
 *   minute hour day-of-month month day-of-week
 *   0-59   0-23 1-31         1-12  0-7 (0 and 7 are Sunday)
 *
 * Each field is a comma-separated list of `*`, `N`, `A-B`, each optionally
 * with a step `/S` (`*` + `/15` = every 15th; `A/S` means `A-max/S`).  Months
 * and weekdays also take English names (jan..dec, sun..sat, any case).  As in
 * Vixie cron, when both day-of-month and day-of-week are restricted (neither
 * starts with `*`), a day matches when EITHER matches ("0 0 1 * mon": the
 * 1st and every Monday); otherwise both must match.
 *
 * Plain C, no SDK dependency: the tests compile this file directly. */
#ifndef EVH_TIMER_CRON_H
#define EVH_TIMER_CRON_H

#include <stddef.h>
#include <stdint.h>

typedef struct cron_expr {
    uint64_t bits[5]; /* per field, bit N set when value N matches */
    int star[5];      /* the field starts with '*' */
} cron_expr;

/* Parse `text` into *out.  Returns 0, or -1 with a one-line reason in err,
 * e.g. "field 2 (hour): 25 is out of range 0-23".  An expression that can
 * never fire ("0 0 30 2 *") is refused too. */
int cron_parse(const char *text, cron_expr *out, char *err, size_t errlen);

/* The start of the first matching minute strictly after `after` (both in
 * seconds since the epoch, UTC), or -1 when none comes within 400 years
 * (a full Gregorian cycle: then none ever comes). */
int64_t cron_next(const cron_expr *c, int64_t after);

#endif
