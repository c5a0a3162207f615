/*
 * yamldoc.c - YAML text -> cJSON tree with positions (see yamldoc.h).
 *
 * Built from libyaml's event stream rather than its document loader: the
 * loader expands nothing, keeps no key positions and has no limits, while
 * events let us type scalars, count nodes and stop an alias bomb early.
 * libyaml's parser itself keeps explicit stacks, so deep input cannot
 * overflow the C stack; our own recursion (copying aliased nodes) is bounded
 * by EVH_JSON_MAX_DEPTH.
 */
#include "yamldoc.h"

#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "jsonutil.h"
#include "evh_limits.h"

/* ---- node -> position map (open addressing, never shrinks) ------------- */

typedef struct pos_entry {
    const cJSON *node; /* NULL: free slot */
    int line, column;
    int key_line, key_column; /* 0 unless the node is a mapping value */
    int substituted;
} pos_entry;

typedef struct posmap {
    pos_entry *slots;
    size_t cap, count;
} posmap;

struct yamldoc {
    cJSON *root;
    cJSON *discard; /* values of duplicate keys: kept so anchors stay valid */
    posmap pos;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static pos_entry *posmap_slot(const posmap *m, const cJSON *node)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)mix64((uint64_t)(uintptr_t)node) & mask;
    while (m->slots[i].node && m->slots[i].node != node)
        i = (i + 1) & mask;
    return &m->slots[i];
}

static int posmap_grow(posmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 256;
    pos_entry *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) {
        m->slots = old;
        return -1;
    }
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].node)
            *posmap_slot(m, old[i].node) = old[i];
    free(old);
    return 0;
}

/* The entry for node, created (zeroed) when new; NULL on out-of-memory. */
static pos_entry *posmap_put(posmap *m, const cJSON *node)
{
    if ((m->count + 1) * 2 > m->cap && posmap_grow(m) != 0)
        return NULL;
    pos_entry *e = posmap_slot(m, node);
    if (!e->node) {
        memset(e, 0, sizeof *e);
        e->node = node;
        m->count++;
    }
    return e;
}

static const pos_entry *posmap_get(const posmap *m, const cJSON *node)
{
    if (!m->cap || !node)
        return NULL;
    const pos_entry *e = posmap_slot(m, node);
    return e->node ? e : NULL;
}

/* ---- (owner, name) -> value map: duplicate keys and anchors ------------ */

typedef struct name_entry {
    char *name; /* owned; NULL: free slot */
    const void *owner;
    uint64_t hash;
    int line;          /* duplicate keys: where the first one was */
    const cJSON *node; /* anchors: the anchored node and its size */
    size_t nodes;
    int height;
} name_entry;

typedef struct namemap {
    name_entry *slots;
    size_t cap, count;
} namemap;

static uint64_t name_hash(const void *owner, const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h ^ mix64((uint64_t)(uintptr_t)owner);
}

static name_entry *namemap_slot(const namemap *m, const void *owner, const char *name, uint64_t h)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)h & mask;
    while (m->slots[i].name && !(m->slots[i].hash == h && m->slots[i].owner == owner &&
                                 strcmp(m->slots[i].name, name) == 0))
        i = (i + 1) & mask;
    return &m->slots[i];
}

static int namemap_grow(namemap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    name_entry *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) {
        m->slots = old;
        return -1;
    }
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].name)
            *namemap_slot(m, old[i].owner, old[i].name, old[i].hash) = old[i];
    free(old);
    return 0;
}

static name_entry *namemap_get(const namemap *m, const void *owner, const char *name)
{
    if (!m->cap)
        return NULL;
    name_entry *e = namemap_slot(m, owner, name, name_hash(owner, name));
    return e->name ? e : NULL;
}

/* The entry for (owner, name), created when new (check ->node / ->line to
 * tell); NULL on out-of-memory. */
static name_entry *namemap_put(namemap *m, const void *owner, const char *name)
{
    if ((m->count + 1) * 2 > m->cap && namemap_grow(m) != 0)
        return NULL;
    uint64_t h = name_hash(owner, name);
    name_entry *e = namemap_slot(m, owner, name, h);
    if (!e->name) {
        e->name = strdup(name);
        if (!e->name)
            return NULL;
        e->owner = owner;
        e->hash = h;
        m->count++;
    }
    return e;
}

static void namemap_free(namemap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].name);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- the builder: events -> tree --------------------------------------- */

typedef struct frame {
    cJSON *node;
    int is_map;
    char *key; /* mapping: the key waiting for its value (owned) */
    int key_line, key_column;
    size_t nodes; /* in this subtree, itself included */
    int height;   /* mappings/sequences on the longest path down, itself included */
    char *anchor; /* registered when the node is complete (owned) */
} frame;

typedef struct builder {
    yamldoc *y;
    diag *d;
    const char *text; /* the input, for locating reader errors and tabs */
    size_t len;
    int subst_env;
    frame stack[EVH_JSON_MAX_DEPTH];
    int depth;
    namemap keys;    /* (mapping, key) -> line of the first occurrence */
    namemap anchors; /* (NULL, name) -> anchored node */
    size_t total;    /* nodes created, copies included */
    int documents;
    int errors;
    int fatal; /* stop reading events */
} builder;

static int mark_line(yaml_mark_t m)
{
    return m.line < INT32_MAX ? (int)m.line + 1 : INT32_MAX;
}

static int mark_column(yaml_mark_t m)
{
    return m.column < INT32_MAX ? (int)m.column + 1 : INT32_MAX;
}

static void problem(builder *b, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(builder *b, int line, int column, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    diag_add_at(b->d, line, column, "%s", msg ? msg : "out of memory");
    free(msg);
    b->errors++;
}

static void out_of_memory(builder *b)
{
    diag_add(b->d, "", "out of memory while reading YAML");
    b->errors++;
    b->fatal = 1;
}

static frame *top(builder *b)
{
    return b->depth ? &b->stack[b->depth - 1] : NULL;
}

/* True when the next node read is a mapping key rather than a value. */
static int expecting_key(builder *b)
{
    frame *f = top(b);
    return f && f->is_map && !f->key;
}

/* Count n new nodes; alias names the alias that copies them, if any. */
static int count_nodes(builder *b, size_t n, yaml_mark_t at, const char *alias)
{
    if (n > YAMLDOC_MAX_NODES - b->total) {
        if (alias)
            problem(b, mark_line(at), mark_column(at),
                    "alias '*%s' expands the document past %d nodes (aliases nested too deep?)",
                    alias, YAMLDOC_MAX_NODES);
        else
            problem(b, mark_line(at), mark_column(at), "document has more than %d nodes",
                    YAMLDOC_MAX_NODES);
        b->fatal = 1;
        return -1;
    }
    b->total += n;
    return 0;
}

static pos_entry *record_pos(builder *b, const cJSON *node, int line, int column)
{
    pos_entry *e = posmap_put(&b->y->pos, node);
    if (!e) {
        out_of_memory(b);
        return NULL;
    }
    e->line = line;
    e->column = column;
    return e;
}

/* Link node under the open mapping/sequence (or make it the root).  Takes
 * node; on failure it is freed. */
static int attach(builder *b, cJSON *node)
{
    frame *f = top(b);
    if (!f) {
        b->y->root = node;
        return 0;
    }
    if (!f->is_map) {
        if (cJSON_AddItemToArray(f->node, node))
            return 0;
        cJSON_Delete(node);
        out_of_memory(b);
        return -1;
    }
    char *key = f->key;
    f->key = NULL;
    name_entry *seen = namemap_put(&b->keys, f->node, key);
    pos_entry *e = seen ? posmap_put(&b->y->pos, node) : NULL;
    if (!e) {
        free(key);
        cJSON_Delete(node);
        out_of_memory(b);
        return -1;
    }
    e->key_line = f->key_line;
    e->key_column = f->key_column;
    int ok;
    if (seen->line) {
        problem(b, f->key_line, f->key_column, "duplicate key '%s' (first at line %d)", key,
                seen->line);
        ok = cJSON_AddItemToArray(b->y->discard, node);
    } else {
        seen->line = f->key_line;
        ok = cJSON_AddItemToObject(f->node, key, node);
    }
    free(key);
    if (!ok) {
        cJSON_Delete(node);
        out_of_memory(b);
        return -1;
    }
    return 0;
}

/* A complete child of `nodes` nodes and `height` levels joins the open one. */
static void account(builder *b, size_t nodes, int height)
{
    frame *f = top(b);
    if (!f)
        return;
    f->nodes += nodes;
    if (height + 1 > f->height)
        f->height = height + 1;
}

static void remember_anchor(builder *b, const char *anchor, const cJSON *node, size_t nodes,
                            int height)
{
    if (!anchor)
        return;
    name_entry *e = namemap_put(&b->anchors, NULL, anchor);
    if (!e) {
        out_of_memory(b);
        return;
    }
    /* a later anchor of the same name replaces the earlier one (YAML spec) */
    e->node = node;
    e->nodes = nodes;
    e->height = height;
}

/* ---- scalars ------------------------------------------------------------ */

static int word_in(const char *v, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(v, *words) == 0)
            return 1;
    return 0;
}

static int is_digit_in_base(char c, int base)
{
    if (c >= '0' && c <= '9')
        return c - '0' < base;
    if (base == 16)
        return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    return 0;
}

/* YAML 1.2 core int: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+.  Returns 1 when
 * v is one; *too_big when it does not fit a double exactly. */
static int core_int(const char *v, double *out, int *too_big)
{
    const char *p = v;
    int base = 10, neg = 0;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'o')) {
        base = p[1] == 'x' ? 16 : 8;
        p += 2;
    } else if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (!*p)
        return 0;
    for (const char *q = p; *q; q++)
        if (!is_digit_in_base(*q, base))
            return 0;
    /* digits only: strtoull cannot meet a sign, space or prefix here */
    errno = 0;
    unsigned long long u = strtoull(p, NULL, base);
    if (errno == ERANGE || u > (1ULL << 53)) {
        *too_big = 1;
        return 1;
    }
    *out = neg ? -(double)u : (double)u;
    return 1;
}

static size_t skip_digits(const char **p)
{
    size_t n = 0;
    while (**p >= '0' && **p <= '9') {
        (*p)++;
        n++;
    }
    return n;
}

/* YAML 1.2 core float without .inf/.nan:
 * [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static int core_float(const char *v)
{
    const char *p = v;
    if (*p == '-' || *p == '+')
        p++;
    size_t whole = skip_digits(&p);
    if (*p == '.') {
        p++;
        if (!skip_digits(&p) && !whole)
            return 0;
    } else if (!whole) {
        return 0;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!skip_digits(&p))
            return 0;
    }
    return *p == '\0';
}

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};

/* Type a plain scalar by the core schema.  NULL with *why set when it looks
 * like a number that JSON cannot hold; NULL without *why on out-of-memory. */
static cJSON *resolve_plain(const char *v, const char **why)
{
    double num = 0;
    int too_big = 0;
    *why = NULL;
    if (word_in(v, null_words))
        return cJSON_CreateNull();
    if (word_in(v, true_words))
        return cJSON_CreateTrue();
    if (word_in(v, false_words))
        return cJSON_CreateFalse();
    if (core_int(v, &num, &too_big)) {
        if (too_big) {
            *why = "integer is too large for a JSON number (beyond 2^53); quote it to keep "
                   "it as text";
            return NULL;
        }
        return cJSON_CreateNumber(num);
    }
    if (core_float(v)) {
        num = strtod(v, NULL);
        if (!(num >= -DBL_MAX && num <= DBL_MAX)) { /* overflowed to infinity */
            *why = "number is out of range; quote it to keep it as text";
            return NULL;
        }
        return cJSON_CreateNumber(num);
    }
    return cJSON_CreateString(v);
}

/* A tag as written, for messages: "!!" + tag_rest() for core tags
 * ("tag:yaml.org,2002:int" -> "!!int"), the whole tag otherwise. */
static const char core_prefix[] = "tag:yaml.org,2002:";

static const char *tag_bang(const char *tag)
{
    return strncmp(tag, core_prefix, sizeof core_prefix - 1) == 0 ? "!!" : "";
}

static const char *tag_rest(const char *tag)
{
    return *tag_bang(tag) ? tag + sizeof core_prefix - 1 : tag;
}

static int tag_is(const char *tag, const char *core)
{
    return tag && strcmp(tag, core) == 0;
}

/* A scalar with an explicit tag: only the core ones, checked against the
 * text. */
static cJSON *resolve_tagged(builder *b, const char *tag, const char *v, yaml_mark_t at)
{
    if (strcmp(tag, "!") == 0 || tag_is(tag, YAML_STR_TAG))
        return cJSON_CreateString(v);
    int want = tag_is(tag, YAML_NULL_TAG)                                 ? cJSON_NULL
               : tag_is(tag, YAML_BOOL_TAG)                               ? cJSON_True | cJSON_False
               : tag_is(tag, YAML_INT_TAG) || tag_is(tag, YAML_FLOAT_TAG) ? cJSON_Number
                                                                          : 0;
    if (!want) {
        problem(b, mark_line(at), mark_column(at), "unsupported tag '%s%s'", tag_bang(tag),
                tag_rest(tag));
        return NULL;
    }
    const char *why = NULL;
    cJSON *node = resolve_plain(v, &why);
    /* resolve_plain keeps numbers within 2^53 or finite; the cast is safe
     * after the range check (and libm stays out of the link) */
    int integral = cJSON_IsNumber(node) && node->valuedouble >= -9007199254740992.0 &&
                   node->valuedouble <= 9007199254740992.0 &&
                   node->valuedouble == (double)(long long)node->valuedouble;
    if (node && (node->type & want) && (integral || !tag_is(tag, YAML_INT_TAG)))
        return node;
    cJSON_Delete(node);
    if (why || node)
        problem(b, mark_line(at), mark_column(at), "value is not a valid %s%s", tag_bang(tag),
                tag_rest(tag));
    else
        out_of_memory(b);
    return NULL;
}

/* ---- ${NAME} substitution ----------------------------------------------- */

static size_t utf8_chars(const char *s, size_t n)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            chars++;
    return chars;
}

/* Where byte `off` of a scalar's value was written.  Exact for one-line
 * scalars without escapes (the width of the source equals the value's, plus
 * two quotes when quoted); otherwise the scalar's start. */
static void value_offset_pos(const yaml_event_t *ev, size_t off, int *line, int *column)
{
    yaml_mark_t s = ev->start_mark, e = ev->end_mark;
    const char *v = (const char *)ev->data.scalar.value;
    size_t chars = utf8_chars(v, ev->data.scalar.length);
    yaml_scalar_style_t style = ev->data.scalar.style;
    size_t quotes =
        style == YAML_SINGLE_QUOTED_SCALAR_STYLE || style == YAML_DOUBLE_QUOTED_SCALAR_STYLE ? 1
                                                                                             : 0;
    *line = mark_line(s);
    *column = mark_column(s);
    if (s.line != e.line || e.column < s.column ||
        (quotes == 0 && style != YAML_PLAIN_SCALAR_STYLE))
        return;
    if (e.column - s.column == chars + 2 * quotes)
        *column += (int)(quotes + utf8_chars(v, off));
}

static int is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Length of a well-formed "${NAME}" at v (n bytes left), 0 when malformed. */
static size_t reference_len(const char *v, size_t n)
{
    size_t j = 2;
    if (j >= n || !is_name_start(v[j]))
        return 0;
    while (j < n && is_name_char(v[j]))
        j++;
    return j < n && v[j] == '}' ? j + 1 : 0;
}

/* The value with ${NAME} replaced and $${ unescaped (malloc), or NULL after
 * adding the problems.  *used is set when a variable was substituted.  The
 * substituted text itself never reaches a message. */
static char *substitute(builder *b, const yaml_event_t *ev, int *used)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, size = 0;
    char *out = NULL;
    int line, column, bad = 0;
    FILE *f = open_memstream(&out, &size);
    if (!f) {
        out_of_memory(b);
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        size_t ref = n - i >= 2 && v[i] == '$' && v[i + 1] == '{' ? reference_len(v + i, n - i) : 0;
        if (n - i >= 3 && memcmp(v + i, "$${", 3) == 0) {
            fputs("${", f);
            i += 3;
        } else if (n - i >= 2 && v[i] == '$' && v[i + 1] == '{' && !ref) {
            value_offset_pos(ev, i, &line, &column);
            problem(b, line, column,
                    "malformed '${': write ${NAME} (letters, digits, '_') or '$${' for a "
                    "literal '${'");
            bad = 1;
            i += 2;
        } else if (ref) {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(ref - 3), v + i + 2);
            const char *val = ref - 3 < sizeof name ? getenv(name) : NULL;
            if (!val) {
                value_offset_pos(ev, i, &line, &column);
                problem(b, line, column, "environment variable '%s' is not set", name);
                bad = 1;
            } else {
                fputs(val, f);
                *used = 1;
            }
            i += ref;
        } else {
            fputc(v[i], f);
            i++;
        }
    }
    if (fclose(f) != 0 || !out) {
        free(out);
        out_of_memory(b);
        return NULL;
    }
    if (bad) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- events --------------------------------------------------------------- */

static int has_reference(const yaml_event_t *ev)
{
    return memmem(ev->data.scalar.value, ev->data.scalar.length, "${", 2) != NULL;
}

/* The value of a scalar event; NULL after adding a problem (or on OOM). */
static cJSON *scalar_value(builder *b, const yaml_event_t *ev, int *substituted)
{
    const char *v = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    yaml_mark_t at = ev->start_mark;
    if (b->subst_env && has_reference(ev)) {
        if (tag && strcmp(tag, "!") != 0 && !tag_is(tag, YAML_STR_TAG)) {
            problem(b, mark_line(at), mark_column(at),
                    "a value with ${...} is always a string; remove the tag '%s%s'", tag_bang(tag),
                    tag_rest(tag));
            return NULL;
        }
        char *text = substitute(b, ev, substituted);
        cJSON *node = text ? cJSON_CreateString(text) : NULL;
        free(text);
        return node;
    }
    if (tag)
        return resolve_tagged(b, tag, v, at);
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return cJSON_CreateString(v);
    const char *why = NULL;
    cJSON *node = resolve_plain(v, &why);
    if (why)
        problem(b, mark_line(at), mark_column(at), "%s", why);
    return node;
}

static void on_key(builder *b, const yaml_event_t *ev)
{
    frame *f = top(b);
    const char *v = (const char *)ev->data.scalar.value;
    f->key_line = mark_line(ev->start_mark);
    f->key_column = mark_column(ev->start_mark);
    if (ev->data.scalar.anchor)
        problem(b, f->key_line, f->key_column, "anchors on mapping keys are not supported");
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(v, "<<") == 0)
        problem(b, f->key_line, f->key_column,
                "merge keys ('<<') are not supported; write the keys out or alias the whole "
                "mapping");
    f->key = strdup(v);
    if (!f->key)
        out_of_memory(b);
}

static void on_scalar(builder *b, const yaml_event_t *ev)
{
    int has_nul = strlen((const char *)ev->data.scalar.value) != ev->data.scalar.length;
    int errors = b->errors;
    int line = mark_line(ev->start_mark), column = mark_column(ev->start_mark);
    if (has_nul)
        problem(b, line, column, "text may not contain NUL characters");
    if (expecting_key(b)) {
        on_key(b, ev);
        return;
    }
    int plain_empty = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                      ev->data.scalar.length == 0 && !ev->data.scalar.tag;
    if (plain_empty && !top(b))
        return; /* a lone "---": an empty document */
    if (plain_empty && top(b)->is_map) {
        /* libyaml places an empty value at the next token, often the next
         * line's key; the key that has no value is the useful place */
        line = top(b)->key_line;
        column = top(b)->key_column;
    }
    if (count_nodes(b, 1, ev->start_mark, NULL) != 0)
        return;
    int substituted = 0;
    cJSON *node = has_nul ? NULL : scalar_value(b, ev, &substituted);
    if (!node && b->errors == errors)
        out_of_memory(b);
    if (!node && !b->fatal)
        node = cJSON_CreateNull(); /* a placeholder keeps the tree's shape */
    pos_entry *e = node ? record_pos(b, node, line, column) : NULL;
    if (!e) {
        if (!b->fatal)
            out_of_memory(b);
        cJSON_Delete(node);
        return;
    }
    e->substituted = substituted;
    if (attach(b, node) != 0)
        return;
    account(b, 1, 0);
    remember_anchor(b, (const char *)ev->data.scalar.anchor, node, 1, 0);
}

static void on_start(builder *b, const yaml_event_t *ev, int is_map)
{
    yaml_mark_t at = ev->start_mark;
    const char *what = is_map ? "mapping" : "list";
    const char *tag =
        (const char *)(is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
    const char *anchor =
        (const char *)(is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
    if (expecting_key(b)) {
        problem(b, mark_line(at), mark_column(at), "a mapping key must be plain text, not a %s",
                what);
        b->fatal = 1;
        return;
    }
    if (b->depth == EVH_JSON_MAX_DEPTH) {
        problem(b, mark_line(at), mark_column(at), "nesting deeper than %d levels",
                EVH_JSON_MAX_DEPTH);
        b->fatal = 1;
        return;
    }
    if (tag && strcmp(tag, "!") != 0 && !tag_is(tag, is_map ? YAML_MAP_TAG : YAML_SEQ_TAG))
        problem(b, mark_line(at), mark_column(at), "unsupported tag '%s%s' on a %s", tag_bang(tag),
                tag_rest(tag), what);
    if (count_nodes(b, 1, at, NULL) != 0)
        return;
    char *anchor_copy = anchor ? strdup(anchor) : NULL;
    cJSON *node = is_map ? cJSON_CreateObject() : cJSON_CreateArray();
    if ((anchor && !anchor_copy) || !node || !record_pos(b, node, mark_line(at), mark_column(at))) {
        free(anchor_copy);
        cJSON_Delete(node);
        if (!b->fatal)
            out_of_memory(b);
        return;
    }
    if (attach(b, node) != 0) {
        free(anchor_copy);
        return;
    }
    b->stack[b->depth++] =
        (frame){.node = node, .is_map = is_map, .nodes = 1, .height = 1, .anchor = anchor_copy};
}

static void on_end(builder *b)
{
    if (!b->depth)
        return;
    frame f = b->stack[--b->depth];
    free(f.key);
    account(b, f.nodes, f.height);
    remember_anchor(b, f.anchor, f.node, f.nodes, f.height);
    free(f.anchor);
}

/* Give every node of an alias copy the position of its original. */
static int copy_positions(builder *b, const cJSON *orig, const cJSON *copy)
{
    const pos_entry *src = posmap_get(&b->y->pos, orig);
    if (src) {
        pos_entry saved = *src; /* posmap_put may move the slots */
        pos_entry *dst = posmap_put(&b->y->pos, copy);
        if (!dst) {
            out_of_memory(b);
            return -1;
        }
        saved.node = copy;
        *dst = saved;
    }
    const cJSON *o = orig->child, *c = copy->child;
    for (; o && c; o = o->next, c = c->next)
        if (copy_positions(b, o, c) != 0)
            return -1;
    return 0;
}

/* An alias becomes a deep copy of its anchored node, within the limits. */
static cJSON *expand_alias(builder *b, const yaml_event_t *ev, size_t *nodes, int *height)
{
    const char *name = (const char *)ev->data.alias.anchor;
    int line = mark_line(ev->start_mark), column = mark_column(ev->start_mark);
    const name_entry *a = namemap_get(&b->anchors, NULL, name);
    if (!a) {
        problem(b, line, column, "alias '*%s' has no complete anchor '&%s' before it", name, name);
        *nodes = 1;
        *height = 0;
        return count_nodes(b, 1, ev->start_mark, NULL) == 0 ? cJSON_CreateNull() : NULL;
    }
    const cJSON *orig = a->node;
    *nodes = a->nodes;
    *height = a->height;
    if (b->depth + *height > EVH_JSON_MAX_DEPTH) {
        problem(b, line, column, "nesting deeper than %d levels once alias '*%s' is expanded",
                EVH_JSON_MAX_DEPTH, name);
        b->fatal = 1;
        return NULL;
    }
    if (count_nodes(b, *nodes, ev->start_mark, name) != 0)
        return NULL;
    cJSON *copy = cJSON_Duplicate(orig, 1);
    if (copy && copy_positions(b, orig, copy) != 0) {
        cJSON_Delete(copy);
        return NULL;
    }
    return copy;
}

static void on_alias(builder *b, const yaml_event_t *ev)
{
    int line = mark_line(ev->start_mark), column = mark_column(ev->start_mark);
    if (expecting_key(b)) {
        problem(b, line, column, "aliases cannot be used as mapping keys");
        b->fatal = 1;
        return;
    }
    size_t nodes = 0;
    int height = 0;
    cJSON *copy = expand_alias(b, ev, &nodes, &height);
    pos_entry *e = copy ? record_pos(b, copy, line, column) : NULL;
    if (!e) {
        cJSON_Delete(copy);
        if (!b->fatal)
            out_of_memory(b);
        return;
    }
    /* the copy's own key is the one in front of the alias, if any */
    e->key_line = 0;
    e->key_column = 0;
    if (attach(b, copy) == 0)
        account(b, nodes, height);
}

static void on_event(builder *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++b->documents > 1) {
            problem(b, mark_line(ev->start_mark), mark_column(ev->start_mark),
                    "only one YAML document per file");
            b->fatal = 1;
        }
        break;
    case YAML_SCALAR_EVENT:
        on_scalar(b, ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        on_start(b, ev, 0);
        break;
    case YAML_MAPPING_START_EVENT:
        on_start(b, ev, 1);
        break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        on_end(b);
        break;
    case YAML_ALIAS_EVENT:
        on_alias(b, ev);
        break;
    default:
        break;
    }
}

/* ---- libyaml's own errors ------------------------------------------------ */

/* Line and column (1-based, in characters) of byte offset off. */
static void locate_byte(const char *text, size_t len, size_t off, int *line, int *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *column = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            (*column)++;
        }
    }
}

/* The byte starting character number `index` (libyaml counts characters,
 * after a byte order mark); -1 past the end. */
static int char_at_index(const char *text, size_t len, size_t index)
{
    size_t i = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    for (size_t chars = 0; i < len; i++) {
        if (((unsigned char)text[i] & 0xC0) == 0x80)
            continue;
        if (chars++ == index)
            return (unsigned char)text[i];
    }
    return -1;
}

static void parser_problem(builder *b, const yaml_parser_t *p)
{
    const char *what = p->problem ? p->problem : "malformed YAML";
    int line, column;
    if (p->error == YAML_MEMORY_ERROR) {
        out_of_memory(b);
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        locate_byte(b->text, b->len, p->problem_offset, &line, &column);
        if (p->problem_value >= 0)
            problem(b, line, column, "%s (byte 0x%02x)", what, (unsigned)p->problem_value);
        else
            problem(b, line, column, "%s", what);
        return;
    }
    yaml_mark_t m = p->problem_mark, c = p->context_mark;
    const char *hint = char_at_index(b->text, b->len, m.index) == '\t'
                           ? "; tabs cannot be used for indentation, use spaces"
                           : "";
    line = mark_line(m);
    column = mark_column(m);
    if (p->context && (c.line != m.line || c.column != m.column))
        problem(b, line, column, "%s %s (started at line %d, column %d)%s", what, p->context,
                mark_line(c), mark_column(c), hint);
    else if (p->context)
        problem(b, line, column, "%s %s%s", what, p->context, hint);
    else
        problem(b, line, column, "%s%s", what, hint);
}

/* ---- the public functions ------------------------------------------------- */

static void read_events(builder *b, yaml_parser_t *p)
{
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev)) {
            parser_problem(b, p);
            return;
        }
        int last = ev.type == YAML_STREAM_END_EVENT;
        on_event(b, &ev);
        yaml_event_delete(&ev);
        if (last || b->fatal)
            return;
    }
}

static void builder_release(builder *b)
{
    for (int i = 0; i < b->depth; i++) {
        free(b->stack[i].key);
        free(b->stack[i].anchor);
    }
    b->depth = 0;
    namemap_free(&b->keys);
    namemap_free(&b->anchors);
}

yamldoc *yamldoc_parse(const char *text, size_t len, int subst_env, diag *d)
{
    if (len > YAMLDOC_MAX_BYTES) {
        diag_add(d, "", "document is larger than %d bytes", YAMLDOC_MAX_BYTES);
        return NULL;
    }
    yamldoc *y = calloc(1, sizeof *y);
    if (y)
        y->discard = cJSON_CreateArray();
    if (!y || !y->discard) {
        free(y);
        diag_add(d, "", "out of memory while reading YAML");
        return NULL;
    }
    builder b = {
        .y = y, .d = d, .text = text ? text : "", .len = text ? len : 0, .subst_env = subst_env};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        out_of_memory(&b);
    } else {
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
        yaml_parser_set_input_string(&parser, (const unsigned char *)b.text, b.len);
        read_events(&b, &parser);
        yaml_parser_delete(&parser);
    }
    builder_release(&b);
    if (b.errors) {
        yamldoc_free(y);
        return NULL;
    }
    return y;
}

yamldoc *yamldoc_load(const char *path, int subst_env, diag *d)
{
    char err[256];
    size_t len = 0;
    char *text = file_read_all(path, YAMLDOC_MAX_BYTES, &len, err, sizeof err);
    if (!text) {
        diag_add(d, "", "%s", err);
        return NULL;
    }
    yamldoc *y = yamldoc_parse(text, len, subst_env, d);
    free(text);
    return y;
}

const cJSON *yamldoc_root(const yamldoc *y)
{
    return y ? y->root : NULL;
}

int yamldoc_pos(const yamldoc *y, const cJSON *node, int *line, int *column)
{
    const pos_entry *e = y ? posmap_get(&y->pos, node) : NULL;
    if (!e || e->line <= 0)
        return 0;
    *line = e->line;
    *column = e->column;
    return 1;
}

int yamldoc_key_pos(const yamldoc *y, const cJSON *object, const char *key, int *line, int *column)
{
    if (!y || !cJSON_IsObject(object) || !key)
        return 0;
    const pos_entry *e = posmap_get(&y->pos, cJSON_GetObjectItemCaseSensitive(object, key));
    if (!e || e->key_line <= 0)
        return 0;
    *line = e->key_line;
    *column = e->key_column;
    return 1;
}

int yamldoc_substituted(const yamldoc *y, const cJSON *node)
{
    const pos_entry *e = y ? posmap_get(&y->pos, node) : NULL;
    return e && e->substituted;
}

void yamldoc_free(yamldoc *y)
{
    if (!y)
        return;
    cJSON_Delete(y->root);
    cJSON_Delete(y->discard);
    free(y->pos.slots);
    free(y);
}
