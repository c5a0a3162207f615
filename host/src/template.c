/*
 * template.c - "{{ path }}" in workflow step config (see template.h).
 *
 * Load time (template_check) and run time (template_render) read strings
 * with the same scanner, so a string that passed the check renders the way
 * the check understood it.  Both walk the whole config and report every
 * problem with the path of its string, so a user fixes everything in one
 * round rather than one template per run.
 *
 * Paths use jsonpath.h syntax, the one syntax for naming fields in
 * triggers and templates; so a key may hold spaces.  Only '{' and '}' are
 * refused on top of it: inside a template they are nearly always a brace
 * typo ("{{ a }", "{{ a {{ b }}"), never a real key.
 */
#include "template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonpath.h"
#include "evh_limits.h"
#include "textbuf.h"

/* Longest piece of user text quoted in a reason: a reason is one line of
 * a log or terminal, and a template can be as long as its string. */
#define QUOTE_MAX 80

/* ---- scanning ------------------------------------------------------------ */

enum tok_kind {
    TOK_END,      /* no more text */
    TOK_TEXT,     /* literal text up to the next "{{" */
    TOK_TEMPLATE, /* "{{ ... }}" */
    TOK_OPEN,     /* "{{" without a closing "}}": the rest of the string */
};

typedef struct tok {
    enum tok_kind kind;
    const char *start; /* the token as written */
    size_t len;
    const char *path; /* TOK_TEMPLATE: the path without the padding whitespace */
    size_t path_len;
} tok;

/* Whitespace by hand: isspace() depends on the locale. */
static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The token at *s; advances *s past it. */
static tok next_tok(const char **s)
{
    const char *p = *s;
    tok t = {TOK_END, p, 0, NULL, 0};
    if (!*p)
        return t;
    const char *open = strstr(p, "{{");
    const char *close = open == p ? strstr(p + 2, "}}") : NULL;
    if (open != p) {
        t.kind = TOK_TEXT;
        t.len = open ? (size_t)(open - p) : strlen(p);
    } else if (!close) {
        t.kind = TOK_OPEN;
        t.len = strlen(p);
    } else {
        const char *a = p + 2, *b = close;
        while (a < b && is_ws(*a))
            a++;
        while (b > a && is_ws(b[-1]))
            b--;
        t.kind = TOK_TEMPLATE;
        t.len = (size_t)(close + 2 - p);
        t.path = a;
        t.path_len = (size_t)(b - a);
    }
    *s = p + t.len;
    return t;
}

/* Why a template's path cannot be used, or NULL when it is well-formed. */
static const char *syntax_problem(const char *path)
{
    if (!*path)
        return "empty template; name a value such as {{ event.data.x }}";
    if (strpbrk(path, "{}") || !json_path_valid(path))
        return "malformed path (keys joined by '.', array elements as [n], "
               "e.g. event.data.items[0].sku)";
    return NULL;
}

/* ---- reporting ----------------------------------------------------------- */

/* State of one check or render pass over a config. */
typedef struct walk {
    diag *d;
    int problems;
    template_step_known_fn known; /* check only; NULL accepts every step */
    void *ud;
    const cJSON *ctx; /* render only */
} walk;

/* How many of len bytes of s to quote: at most QUOTE_MAX, cut at the start
 * of a UTF-8 sequence so the reason stays valid text. */
static int clip(const char *s, size_t len)
{
    if (len <= QUOTE_MAX)
        return (int)len;
    size_t n = QUOTE_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

static const char *ellipsis(size_t len)
{
    return len > QUOTE_MAX ? "…" : "";
}

/* A problem quoting the token as the user wrote it: used when it cannot be
 * read as a path, so a normalized form would hide the mistake. */
static void report_tok(walk *w, const char *where, const tok *t, const char *why)
{
    diag_add(w->d, where, "%.*s%s: %s", clip(t->start, t->len), t->start, ellipsis(t->len), why);
    w->problems++;
}

/* A problem quoting the template as "{{ path }}", whatever its spacing. */
static void report_path(walk *w, const char *where, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report_path(walk *w, const char *where, const char *path, const char *fmt, ...)
{
    char *why = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&why, fmt, ap) < 0)
        why = NULL;
    va_end(ap);
    size_t n = strlen(path);
    diag_add(w->d, where, "{{ %.*s%s }}: %s", clip(path, n), path, ellipsis(n),
             why ? why : "out of memory");
    free(why);
    w->problems++;
}

static void out_of_memory(walk *w, const char *where)
{
    diag_add(w->d, where, "out of memory");
    w->problems++;
}

/* "where.key" or "where[i]" for a child of an object or array. */
static char *child_where(const cJSON *parent, const cJSON *child, size_t i, const char *where)
{
    if (cJSON_IsArray(parent))
        return path_index(where, i);
    return path_key(where, child->string ? child->string : "");
}

/* ---- check --------------------------------------------------------------- */

/* Step ids may hold '.', which a path cannot name: steps.fetch.v2.output
 * looks up step "fetch".  When a longer dotted prefix is a real step, say
 * that instead of "no step 'fetch'".  Returns that id (malloc) or NULL. */
static char *dotted_step(const walk *w, const char *rest)
{
    const char *p = rest + strcspn(rest, ".[");
    while (*p == '.') {
        p++;
        p += strcspn(p, ".[");
        char *id = strndup(rest, (size_t)(p - rest));
        if (id && w->known(w->ud, id) != 0)
            return id;
        free(id);
    }
    return NULL;
}

static void check_unknown_step(walk *w, const char *where, const char *path, const char *rest,
                               const char *id)
{
    char *dotted = dotted_step(w, rest);
    if (dotted)
        report_path(w, where, path,
                    "step '%s' cannot be named in a template because its id contains '.'; "
                    "rename the step",
                    dotted);
    else
        report_path(w, where, path, "no step '%s' in this workflow", id);
    free(dotted);
}

/* steps.<id>...: the step must exist and run before the one being checked,
 * because only finished steps have an output in the context. */
static void check_step_ref(walk *w, const char *where, const char *path)
{
    const char *rest = path[5] == '.' ? path + 6 : "";
    size_t n = strcspn(rest, ".[");
    if (n == 0) {
        report_path(w, where, path, "name a step: steps.<id>.output.…");
        return;
    }
    char *id = strndup(rest, n);
    if (!id) {
        out_of_memory(w, where);
        return;
    }
    int k = w->known ? w->known(w->ud, id) : 1;
    if (k < 0)
        report_path(w, where, path,
                    "step '%s' runs later than this step (or is this step); "
                    "a template can only read earlier steps",
                    id);
    else if (k == 0)
        check_unknown_step(w, where, path, rest, id);
    free(id);
}

/* The context holds only "event" and "steps"; any other root is missing
 * on every run, so it is refused at load. */
static void check_root(walk *w, const char *where, const char *path)
{
    size_t n = strcspn(path, ".[");
    if (n == 5 && !strncmp(path, "event", 5))
        return;
    if (n == 5 && !strncmp(path, "steps", 5))
        check_step_ref(w, where, path);
    else if (n == 0)
        report_path(w, where, path, "a template starts with event.… or steps.<id>.…");
    else
        report_path(w, where, path, "unknown root '%.*s%s' (use event.… or steps.<id>.…)",
                    clip(path, n), path, ellipsis(n));
}

static void check_template(walk *w, const char *where, const tok *t)
{
    char *path = strndup(t->path, t->path_len);
    if (!path) {
        out_of_memory(w, where);
        return;
    }
    const char *bad = syntax_problem(path);
    if (bad)
        report_tok(w, where, t, bad);
    else
        check_root(w, where, path);
    free(path);
}

static void check_string(walk *w, const char *where, const char *s)
{
    tok t;
    while ((t = next_tok(&s)).kind != TOK_END) {
        if (t.kind == TOK_OPEN)
            report_tok(w, where, &t,
                       "unterminated template: no closing \"}}\" "
                       "(a literal \"{{\" cannot be written)");
        else if (t.kind == TOK_TEMPLATE)
            check_template(w, where, &t);
    }
}

static void check_node(walk *w, const cJSON *node, const char *where)
{
    if (cJSON_IsString(node) && node->valuestring) {
        check_string(w, where, node->valuestring);
        return;
    }
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
        return;
    size_t i = 0;
    for (const cJSON *c = node->child; c; c = c->next, i++) {
        char *sub = child_where(node, c, i, where);
        if (sub)
            check_node(w, c, sub);
        else
            out_of_memory(w, where);
        free(sub);
    }
}

int template_check(const cJSON *config, const char *where, template_step_known_fn known,
                   void *ud, diag *d)
{
    walk w = {.d = d, .known = known, .ud = ud};
    check_node(&w, config, where ? where : "");
    return w.problems;
}

int template_present(const cJSON *config)
{
    if (cJSON_IsString(config))
        return config->valuestring && strstr(config->valuestring, "{{") != NULL;
    if (!cJSON_IsObject(config) && !cJSON_IsArray(config))
        return 0;
    for (const cJSON *c = config->child; c; c = c->next)
        if (template_present(c))
            return 1;
    return 0;
}

/* ---- render -------------------------------------------------------------- */

/* The value a template names, or NULL after reporting why there is none.
 * The syntax is checked again because render may see a config that was
 * never checked (and must not guess what a malformed path meant). */
static const cJSON *resolve(walk *w, const char *where, const tok *t)
{
    char *path = strndup(t->path, t->path_len);
    if (!path) {
        out_of_memory(w, where);
        return NULL;
    }
    const char *bad = syntax_problem(path);
    const cJSON *v = bad ? NULL : json_path_get(w->ctx, path);
    if (bad) {
        report_tok(w, where, t, bad);
    } else if (!v) {
        size_t n = strlen(path);
        report_path(w, where, path, "%.*s%s is missing", clip(path, n), path, ellipsis(n));
    }
    free(path);
    return v;
}

static void too_long(walk *w, const char *where)
{
    diag_add(w->d, where, "rendered text is longer than %d bytes (TEMPLATE_MAX_OUTPUT_BYTES)",
             TEMPLATE_MAX_OUTPUT_BYTES);
    w->problems++;
}

/* A copy detached from its old key: cJSON_Duplicate keeps the key name,
 * which would be wrong (and leak-prone) for an array element or the root. */
static cJSON *copy_value(const cJSON *v)
{
    cJSON *copy = cJSON_Duplicate(v, 1);
    if (copy && copy->string) {
        if (!(copy->type & cJSON_StringIsConst))
            cJSON_free(copy->string);
        copy->string = NULL;
        copy->type &= ~cJSON_StringIsConst;
    }
    return copy;
}

/* A string that is exactly one template keeps the value's own type, so a
 * number stays a number for the plugin's configSchema. */
static cJSON *render_whole(walk *w, const tok *t, const char *where)
{
    const cJSON *v = resolve(w, where, t);
    if (!v)
        return NULL;
    if (cJSON_IsString(v) && v->valuestring &&
        strlen(v->valuestring) > TEMPLATE_MAX_OUTPUT_BYTES) {
        too_long(w, where);
        return NULL;
    }
    cJSON *copy = copy_value(v);
    if (!copy)
        out_of_memory(w, where);
    return copy;
}

/* Strings go in as they are (no quotes: "Hello {{ name }}" reads as text);
 * everything else as compact JSON, numbers printed the way cJSON does. */
static void text_add_value(textbuf *b, const cJSON *v)
{
    if (b->over || b->failed)
        return;
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring ? v->valuestring : "";
        textbuf_add(b, s, strlen(s));
        return;
    }
    char *json = cJSON_PrintUnformatted(v);
    if (json)
        textbuf_add(b, json, strlen(json));
    else
        b->failed = 1;
    cJSON_free(json);
}

/* A string with text around its templates (or several templates) becomes
 * a string.  Every template is resolved even after a failure, so one pass
 * reports every missing value. */
static cJSON *render_mixed(walk *w, const char *s, const char *where)
{
    int before = w->problems;
    /* bounded, so that a large value or many templates cannot grow a
     * config without end */
    textbuf b = {.max = TEMPLATE_MAX_OUTPUT_BYTES};
    textbuf_add(&b, "", 0);
    tok t;
    while ((t = next_tok(&s)).kind != TOK_END) {
        if (t.kind == TOK_TEXT) {
            textbuf_add(&b, t.start, t.len);
        } else if (t.kind == TOK_OPEN) {
            report_tok(w, where, &t,
                       "unterminated template: no closing \"}}\" "
                       "(a literal \"{{\" cannot be written)");
        } else {
            const cJSON *v = resolve(w, where, &t);
            if (v)
                text_add_value(&b, v);
        }
    }
    if (b.over)
        too_long(w, where);
    else if (b.failed)
        out_of_memory(w, where);
    cJSON *out = w->problems == before ? cJSON_CreateString(b.data) : NULL;
    if (!out && w->problems == before)
        out_of_memory(w, where);
    textbuf_free(&b);
    return out;
}

static cJSON *render_string(walk *w, const char *s, const char *where)
{
    const char *rest = s;
    tok t = next_tok(&rest);
    if (t.kind == TOK_TEMPLATE && *rest == '\0')
        return render_whole(w, &t, where);
    return render_mixed(w, s, where);
}

static cJSON *render_node(walk *w, const cJSON *node, const char *where);

/* Render each child and keep going after a failure, for one-pass reports;
 * the partial copy is thrown away by the caller when anything failed. */
static cJSON *render_container(walk *w, const cJSON *node, const char *where)
{
    cJSON *out = cJSON_IsObject(node) ? cJSON_CreateObject() : cJSON_CreateArray();
    if (!out)
        out_of_memory(w, where);
    size_t i = 0;
    for (const cJSON *c = node->child; c; c = c->next, i++) {
        char *sub = child_where(node, c, i, where);
        cJSON *r = sub ? render_node(w, c, sub) : NULL;
        if (!sub)
            out_of_memory(w, where);
        free(sub);
        int added = r && out &&
                    (cJSON_IsObject(node) ? cJSON_AddItemToObject(out, c->string, r)
                                          : cJSON_AddItemToArray(out, r));
        if (r && !added) {
            cJSON_Delete(r);
            if (out)
                out_of_memory(w, where);
        }
    }
    return out;
}

static cJSON *render_node(walk *w, const cJSON *node, const char *where)
{
    if (cJSON_IsString(node) && node->valuestring && strstr(node->valuestring, "{{"))
        return render_string(w, node->valuestring, where);
    if (cJSON_IsObject(node) || cJSON_IsArray(node))
        return render_container(w, node, where);
    cJSON *copy = copy_value(node);
    if (!copy)
        out_of_memory(w, where);
    return copy;
}

cJSON *template_render(const cJSON *config, const cJSON *ctx, diag *d)
{
    walk w = {.d = d, .ctx = ctx};
    if (!config) {
        diag_add(d, NULL, "no config to render");
        return NULL;
    }
    cJSON *out = render_node(&w, config, "");
    if (w.problems) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}
