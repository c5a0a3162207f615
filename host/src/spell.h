/*
 * spell.h - "did you mean": the known name nearest to a misspelt one, for
 * error messages (plugin.json keys, host.yaml keys, a trigger's source,
 * event type and workflow).  One edit distance for all of them, so a typo
 * gets the same help wherever it is made.
 */
#ifndef EVH_SPELL_H
#define EVH_SPELL_H

#include <stddef.h>

/* Levenshtein distance, ignoring ASCII case: "my-Timer" is a typo of
 * "my-timer" (distance 0), not a different name.  SIZE_MAX when either is
 * longer than EVH_ID_MAX_LEN bytes (evh_limits.h), which no id, key or
 * event type worth suggesting is. */
size_t spell_distance(const char *a, const char *b);

/* The nearest candidate so far.  Candidates are offered one at a time, so
 * callers walk whatever holds their names (an array, the registry, a
 * workflow set) without first copying them into a list. */
typedef struct spell_near {
    const char *word; /* the unknown name; borrowed */
    const char *best; /* the offered candidate kept, borrowed; NULL when none is close */
    size_t best_d;
} spell_near;

/* word is borrowed for as long as n is used. */
void spell_near_init(spell_near *n, const char *word);

/* Keep candidate (borrowed: it must outlive the use of n->best) when it is
 * nearer than every earlier one and close enough to be a typo: at most 2
 * edits, and fewer edits than word has characters (else "x" would suggest
 * "id").  The first of equally near candidates stays; a candidate equal to
 * word is never kept (it would not be unknown). */
void spell_near_offer(spell_near *n, const char *candidate);

/* The nearest of known[0..count) to word by the rule above, or NULL. */
const char *spell_nearest(const char *word, const char *const *known, size_t count);

#endif
