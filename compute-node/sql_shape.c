/* Statement shapes: literals turned into parameters. See sql_shape.h. */
#include "sql_shape.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static bool is_word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Past the quoted token at p (its first char is the quote), or NULL when
 * it does not close before end. Doubled quotes stay inside. */
static const char *past_quoted(const char *p, const char *end, bool *doubled)
{
    char close = *p == '[' ? ']' : *p;
    for (p++; p < end; p++) {
        if (*p != close)
            continue;
        if (close != ']' && p + 1 < end && p[1] == close) {
            *doubled = true;
            p++;
            continue;
        }
        return p + 1;
    }
    return NULL;
}

static bool word_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* Parentheses deeper than this: not shaped. */
#define SHAPE_DEPTH_MAX 32

typedef struct {
    sql_shape *out;
    bool ok;
} shaper;

static void emit(shaper *sh, const char *p, size_t n)
{
    sql_shape *o = sh->out;
    if (!sh->ok || o->len + n > SQL_SHAPE_TEXT_MAX) {
        sh->ok = false;
        return;
    }
    memcpy(o->text + o->len, p, n);
    o->len += n;
}

static sql_literal *add_literal(shaper *sh)
{
    sql_shape *o = sh->out;
    if (o->n_literals == SQL_SHAPE_LITERALS_MAX) {
        sh->ok = false;
        return NULL;
    }
    emit(sh, "?", 1);
    return sh->ok ? &o->literals[o->n_literals++] : NULL;
}

bool sql_shape_of(const char *sql, const char *end, sql_shape *out)
{
    shaper sh = {.out = out, .ok = true};
    out->len = 0;
    out->n_literals = 0;

    const char *p = sql;
    int depth = 0;
    bool first_word = true;
    /* Literals become parameters only while this holds (sql_shape.h). */
    bool bind = true;
    /* in_list[d]: a SELECT at depth d is in its result columns (until
     * its FROM at depth d, or the ')' that closes d); a literal inside
     * any of them is part of a column's name. */
    bool in_list[SHAPE_DEPTH_MAX] = {false};
    int lists = 0;            /* depths with in_list set */
    bool after_distinct = false; /* IS [NOT] DISTINCT FROM is no FROM */

    while (p < end && sh.ok) {
        char c = *p;
        if (c == '-' && p + 1 < end && p[1] == '-') {
            const char *e = memchr(p, '\n', (size_t)(end - p));
            e = e ? e : end;
            emit(&sh, p, (size_t)(e - p));
            p = e;
        } else if (c == '/' && p + 1 < end && p[1] == '*') {
            const char *e = p + 2;
            while (e + 1 < end && !(e[0] == '*' && e[1] == '/'))
                e++;
            e = e + 1 < end ? e + 2 : end;
            emit(&sh, p, (size_t)(e - p));
            p = e;
        } else if (c == '\'' && (p == sql || !is_word_char(p[-1])) && bind &&
                   lists == 0) {
            bool doubled = false;
            const char *e = past_quoted(p, end, &doubled);
            if (e == NULL)
                return false;
            sql_literal *l = add_literal(&sh);
            if (l != NULL)
                *l = (sql_literal){.kind = SQL_LITERAL_TEXT, .text = p + 1,
                                   .len = (size_t)(e - p) - 2,
                                   .doubled = doubled};
            p = e;
        } else if (c == '\'' || c == '"' || c == '`' || c == '[') {
            bool doubled = false;
            const char *e = past_quoted(p, end, &doubled);
            if (e == NULL)
                return false;
            emit(&sh, p, (size_t)(e - p));
            p = e;
        } else if (isdigit((unsigned char)c)) {
            const char *e = p;
            while (e < end && isdigit((unsigned char)*e))
                e++;
            bool plain = (p == sql || (!is_word_char(p[-1]) && p[-1] != '.')) &&
                         (e == end || (!is_word_char(*e) && *e != '.')) &&
                         e - p <= 18;
            if (plain && bind && lists == 0) {
                int64_t v = 0;
                for (const char *d = p; d < e; d++)
                    v = v * 10 + (*d - '0');
                sql_literal *l = add_literal(&sh);
                if (l != NULL)
                    *l = (sql_literal){.kind = SQL_LITERAL_INT, .value = v};
            } else {
                /* The rest of the number (1.5e3, 0x1F) is copied as it
                 * comes: digits, words and dots are never literals. */
                emit(&sh, p, (size_t)(e - p));
            }
            p = e;
        } else if (isalpha((unsigned char)c) || c == '_') {
            const char *e = p;
            while (e < end && is_word_char(*e))
                e++;
            size_t n = (size_t)(e - p);
            if (first_word && !word_is(p, n, "SELECT") &&
                !word_is(p, n, "WITH") && !word_is(p, n, "INSERT") &&
                !word_is(p, n, "UPDATE") && !word_is(p, n, "DELETE") &&
                !word_is(p, n, "REPLACE"))
                return false;
            first_word = false;
            if (word_is(p, n, "SELECT") && !in_list[depth]) {
                in_list[depth] = true;
                lists++;
            } else if (word_is(p, n, "FROM") && !after_distinct &&
                       in_list[depth]) {
                in_list[depth] = false;
                lists--;
            } else if (word_is(p, n, "ORDER") || word_is(p, n, "GROUP") ||
                       word_is(p, n, "RETURNING")) {
                bind = false;
            }
            after_distinct = word_is(p, n, "DISTINCT");
            emit(&sh, p, n);
            p = e;
        } else if (c == '?' || c == ':' || c == '@' || c == '$') {
            return false;
        } else {
            if (c == '(' && ++depth == SHAPE_DEPTH_MAX)
                return false;
            if (c == ')' && depth > 0) {
                if (in_list[depth]) {
                    in_list[depth] = false;
                    lists--;
                }
                depth--;
            }
            emit(&sh, p, 1);
            p++;
        }
    }
    if (!sh.ok || first_word)
        return false;
    out->text[out->len] = 0;
    return true;
}

size_t sql_literal_text(const sql_literal *lit, char *buf)
{
    size_t n = 0;
    for (size_t i = 0; i < lit->len; i++) {
        buf[n++] = lit->text[i];
        if (lit->doubled && lit->text[i] == '\'')
            i++; /* the second quote of a pair */
    }
    buf[n] = 0;
    return n;
}
