/*
 * regexcost.c - what compiling a regex costs, estimated (see regexcost.h).
 */
#include "regexcost.h"

#include <ctype.h>
#include <stdlib.h>

#include "evh_limits.h"

#define CAP ((unsigned long)EVH_REGEX_MAX_EXPANSION + 1)
#define MAX_GROUPS 64 /* deeper nesting is refused: no real pattern needs it */

static unsigned long mul(unsigned long a, unsigned long b)
{
    return a && b > CAP / a ? CAP : (a * b > CAP ? CAP : a * b);
}

static unsigned long add(unsigned long a, unsigned long b)
{
    return a + b > CAP ? CAP : a + b;
}

/* The end of the bracket expression starting at p ('['); at its NUL when
 * unterminated. */
static const char *bracket_end(const char *p)
{
    p++;
    if (*p == '^')
        p++;
    if (*p == ']') /* a leading ']' is a member */
        p++;
    while (*p && *p != ']') {
        if (*p == '[' && (p[1] == ':' || p[1] == '=' || p[1] == '.')) {
            char kind = p[1];
            for (p += 2; *p && !(p[0] == kind && p[1] == ']'); p++)
                ;
            if (*p)
                p += 2;
            continue;
        }
        p++;
    }
    return p;
}

/* The count of "{m}", "{m,}", "{m,n}" or "{,n}" (glibc reads it as {0,n}:
 * the fuzzer's `((){255}){,255}`) at p, and its end in *end; 0 when p holds
 * no bound (glibc then reads '{' as a literal or refuses it). */
static unsigned long bound(const char *p, const char **end)
{
    if (*p != '{' || !(isdigit((unsigned char)p[1]) || p[1] == ','))
        return 0;
    char *q = (char *)p + 1;
    unsigned long m = isdigit((unsigned char)*q) ? strtoul(q, &q, 10) : 0, n = m;
    if (*q == ',') {
        q++;
        n = isdigit((unsigned char)*q) ? strtoul(q, &q, 10) : m + 1;
    }
    if (*q != '}')
        return 0;
    *end = q + 1;
    return (n > m ? n : m) ? (n > m ? n : m) : 1;
}

regex_cost regex_measure(const char *re)
{
    /* per open group: the elements so far and those of its last atom; the
     * deepest nesting of repetitions in it and that of its last atom */
    unsigned long total[MAX_GROUPS + 1] = {0}, last[MAX_GROUPS + 1] = {0};
    int deepest[MAX_GROUPS + 1] = {0}, last_depth[MAX_GROUPS + 1] = {0};
    int depth = 0;
    for (const char *p = re; *p;) {
        const char *end = p + 1;
        unsigned long times = 0;
        if (*p == '(') {
            if (depth == MAX_GROUPS)
                return (regex_cost){CAP, MAX_GROUPS};
            depth++;
            total[depth] = last[depth] = 0;
            deepest[depth] = last_depth[depth] = 0;
            p++;
            continue;
        }
        if (*p == ')' && depth > 0) {
            /* the group is a node of its own, so even "()" costs: glibc
             * overflowed its stack copying "((){255}){255}" */
            unsigned long group = add(total[depth], 1);
            int group_depth = deepest[depth--];
            total[depth] = add(total[depth], group);
            last[depth] = group;
            last_depth[depth] = group_depth;
            if (group_depth > deepest[depth])
                deepest[depth] = group_depth;
            p++;
            continue;
        }
        if (*p == '|') {
            total[depth] = add(total[depth], 1); /* the alternation node */
            last[depth] = 0;
            last_depth[depth] = 0;
            p++;
            continue;
        }
        if (*p == '*' || *p == '?')
            times = 1;
        else if (*p == '+')
            times = 2;
        else if (*p == '{')
            times = bound(p, &end);
        if (times) {
            /* the repeated atom now stands for `times` copies of itself,
             * one repetition deeper (also when stacked: "a+?") */
            unsigned long grown = mul(last[depth], times);
            total[depth] = add(total[depth], grown - last[depth]);
            last[depth] = grown;
            if (++last_depth[depth] > deepest[depth])
                deepest[depth] = last_depth[depth];
        } else {
            if (*p == '\\' && p[1])
                end = p + 2;
            else if (*p == '[')
                end = *bracket_end(p) ? bracket_end(p) + 1 : bracket_end(p);
            total[depth] = add(total[depth], 1);
            last[depth] = 1;
            last_depth[depth] = 0;
        }
        p = end;
    }
    while (depth > 0) { /* unbalanced: regcomp refuses it; count what is open */
        unsigned long group = add(total[depth], 1);
        int group_depth = deepest[depth--];
        total[depth] = add(total[depth], group);
        if (group_depth > deepest[depth])
            deepest[depth] = group_depth;
    }
    return (regex_cost){total[0], deepest[0]};
}

int regex_cost_ok(const char *re)
{
    regex_cost c = regex_measure(re);
    return c.elements <= EVH_REGEX_MAX_EXPANSION && c.repeat_depth <= EVH_REGEX_MAX_REPEAT_DEPTH;
}
