/*
 * spell.c - the nearest known name to a misspelt one (see spell.h).
 */
#include "spell.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "evh_limits.h"

/* One row of the distance table on the stack: ids, keys and event types
 * are at most EVH_ID_MAX_LEN bytes, and a longer word is no typo to fix. */
#define SPELL_MAX_LEN EVH_ID_MAX_LEN

size_t spell_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > SPELL_MAX_LEN || lb > SPELL_MAX_LEN)
        return SIZE_MAX;
    size_t row[SPELL_MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag_prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            size_t best = diag_prev + (same ? 0 : 1);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag_prev = up;
        }
    }
    return row[lb];
}

void spell_near_init(spell_near *n, const char *word)
{
    n->word = word;
    n->best = NULL;
    n->best_d = 3; /* more than 2 edits is another name, not a typo */
}

void spell_near_offer(spell_near *n, const char *candidate)
{
    if (!n->word || !candidate || !strcmp(n->word, candidate))
        return;
    size_t d = spell_distance(n->word, candidate);
    if (d < n->best_d && d < strlen(n->word)) {
        n->best = candidate;
        n->best_d = d;
    }
}

const char *spell_nearest(const char *word, const char *const *known, size_t count)
{
    spell_near n;
    spell_near_init(&n, word);
    for (size_t i = 0; i < count; i++)
        spell_near_offer(&n, known[i]);
    return n.best;
}
