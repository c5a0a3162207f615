/* cron.c - parse 5-field cron expressions and find the next matching minute
 * (see cron.h).  Calendar arithmetic is done on day numbers, in UTC, without
 * timegm or the TZ environment. */
#include "cron.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW };

static const struct {
    const char *name;
    int min, max;
    const char *names; /* 3-letter names of min, min+1, ...; or NULL */
} fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},
    {"month", 1, 12, "janfebmaraprmayjunjulaugsepoctnovdec"},
    {"day-of-week", 0, 7, "sunmontuewedthufrisat"},
};

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* One value at *p (a number or a name) into *v; advances *p. */
static int parse_value(int f, const char **p, int *v, char *err, size_t errlen)
{
    const char *s = *p;
    if (*s >= '0' && *s <= '9') {
        size_t len = strspn(s, "0123456789");
        if (len > 4)
            return fail(err, errlen, "field %d (%s): %.*s is out of range %d-%d", f + 1,
                        fields[f].name, (int)len, s, fields[f].min, fields[f].max);
        *v = 0;
        for (; len; len--, s++)
            *v = *v * 10 + (*s - '0');
        *p = s;
        return 0;
    }
    const char *names = fields[f].names;
    for (int i = 0; names && names[3 * i]; i++) {
        if (lower(s[0]) == names[3 * i] && lower(s[1]) == names[3 * i + 1] &&
            lower(s[2]) == names[3 * i + 2]) {
            *p = s + 3;
            *v = fields[f].min + i;
            return 0;
        }
    }
    int len = (int)strcspn(s, ",-/ \t\n\r\f\v");
    return fail(err, errlen, "field %d (%s): '%.*s' is not a number%s", f + 1, fields[f].name, len,
                s,
                f == F_MONTH ? " or a month name (jan-dec)"
                : f == F_DOW ? " or a weekday name (sun-sat)"
                             : "");
}

static int check_range(int f, int v, char *err, size_t errlen)
{
    if (v < fields[f].min || v > fields[f].max)
        return fail(err, errlen, "field %d (%s): %d is out of range %d-%d", f + 1, fields[f].name,
                    v, fields[f].min, fields[f].max);
    return 0;
}

/* One comma-separated item: * | N | A-B, each with an optional /S. */
static int parse_item(int f, const char *s, const char *end, uint64_t *bits, char *err,
                      size_t errlen)
{
    int lo = fields[f].min, hi = fields[f].max, step = 1;
    if (s == end)
        return fail(err, errlen, "field %d (%s): empty list item", f + 1, fields[f].name);
    if (*s == '*') {
        s++;
    } else {
        if (parse_value(f, &s, &lo, err, errlen) || check_range(f, lo, err, errlen))
            return -1;
        hi = lo;
        if (*s == '-') {
            s++;
            if (parse_value(f, &s, &hi, err, errlen) || check_range(f, hi, err, errlen))
                return -1;
            if (hi < lo)
                return fail(err, errlen, "field %d (%s): range %d-%d is reversed", f + 1,
                            fields[f].name, lo, hi);
        } else if (*s == '/') {
            hi = fields[f].max; /* "A/S": from A to the end */
        }
    }
    if (*s == '/') {
        s++;
        if (*s < '0' || *s > '9')
            return fail(err, errlen, "field %d (%s): a step must be a number", f + 1,
                        fields[f].name);
        if (parse_value(f, &s, &step, err, errlen))
            return -1;
        if (step < 1 || step > fields[f].max)
            return fail(err, errlen, "field %d (%s): step %d is out of range 1-%d", f + 1,
                        fields[f].name, step, fields[f].max);
    }
    if (s != end)
        return fail(err, errlen, "field %d (%s): unexpected '%.*s'", f + 1, fields[f].name,
                    (int)(end - s), s);
    for (int v = lo; v <= hi; v += step)
        *bits |= (uint64_t)1 << (f == F_DOW && v == 7 ? 0 : v);
    return 0;
}

int cron_parse(const char *text, cron_expr *out, char *err, size_t errlen)
{
    static const char *const space = " \t\n\r\f\v";
    memset(out, 0, sizeof *out);
    const char *p = text ? text : "";
    int n = 0;
    for (p += strspn(p, space); *p; p += strspn(p, space), n++) {
        const char *end = p + strcspn(p, space);
        if (n < 5) {
            out->star[n] = *p == '*';
            for (const char *item = p;; item++) {
                const char *comma = memchr(item, ',', (size_t)(end - item));
                const char *stop = comma ? comma : end;
                if (parse_item(n, item, stop, &out->bits[n], err, errlen))
                    return -1;
                if (!comma)
                    break;
                item = comma;
            }
        }
        p = end;
    }
    if (n != 5)
        return fail(err, errlen,
                    "expected 5 fields (minute hour day-of-month month day-of-week), got %d", n);
    if (cron_next(out, 0) < 0)
        return fail(err, errlen, "never matches: no selected month has the selected day-of-month");
    return 0;
}

/* Days since 1970-01-01 -> civil date (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int *year, int *month, int *day)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (*month <= 2));
}

static int has(const cron_expr *c, int f, int v)
{
    return (int)((c->bits[f] >> v) & 1);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t cron_next(const cron_expr *c, int64_t after)
{
    int64_t start = floor_div(after, 60) + 1; /* minutes since the epoch */
    int64_t day0 = floor_div(start, 1440);
    int first_minute = (int)(start - day0 * 1440);
    for (int64_t day = day0; day <= day0 + 146097; day++) {
        int year, month, dom;
        civil_from_days(day, &year, &month, &dom);
        int dow = (int)((day % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
        int dom_ok = has(c, F_DOM, dom), dow_ok = has(c, F_DOW, dow);
        int day_ok = c->star[F_DOM] || c->star[F_DOW] ? dom_ok && dow_ok : dom_ok || dow_ok;
        if (!has(c, F_MONTH, month) || !day_ok)
            continue;
        for (int m = day == day0 ? first_minute : 0; m < 1440; m++)
            if (has(c, F_HOUR, m / 60) && has(c, F_MINUTE, m % 60))
                return (day * 1440 + m) * 60;
    }
    return -1;
}
