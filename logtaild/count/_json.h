/* The compiled core's JSON scanner: one JSON object per line, in plain C (no Python API), so the fuzz
 * target can run it alone; it owns the JSON raw key's layout and its path key.
 *
 * `lj_scan` reads a line as formats.parse_json would (`json.loads`, then the first present key of each
 * field, in the order the parser looks them up) and either gives the raw key and the values, or says
 * LS_OUT and the line goes back to Python, which decides. A line is scanned only if it is plainly
 * valid: the whole line is checked against JSON's grammar (strict UTF-8, no control characters in
 * strings, escapes well formed), and anything Python might read another way is handed back: a top-level
 * key with an escape (it could spell a configured key), a configured key twice (json.loads keeps the
 * last), an escape in a value that decides the labels, a non-string and non-number value there (Python
 * rejects it), NaN and Infinity (Python's json accepts them), a number longer than LJ_MAX_NUMBER bytes
 * (int() has a digit limit), nesting deeper than LJ_MAX_DEPTH (Python's recursion limit), anything
 * before the object (a BOM). Every read is bounded by `n`; no str* or strto* function is used.
 *
 * The raw key is the values that decide a line's labels, in the order of LJ_KEYED roles: for each a
 * tag (LJ_ABSENT, LJ_NULL, LJ_STRING, LJ_NUMBER), a 2-byte length and the value's bytes (a string's
 * content without its quotes, a number's text). The values of the size and the latency are read in
 * the subsets of _scan.h (ls_size, ls_time), where they are what Python's int() and float() read.
 */
#ifndef LOGTAILD_JSON_H
#define LOGTAILD_JSON_H

#include "_scan.h"

/* The fields, in the order of the raw key (the first LJ_KEYED decide the labels); formats.py's
 * _CORE_ROLES gives the same numbers. */
enum { LJ_ROUTE = 0, LJ_REQUEST, LJ_METHOD, LJ_STATUS, LJ_SERVICE, LJ_KEYED, LJ_BYTES = LJ_KEYED, LJ_LATENCY,
       LJ_ROLES };
/* the configured key names a scanner looks for, at most */
#define LJ_MAX_NAMES 32
#define LJ_MAX_DEPTH 64
#define LJ_MAX_NUMBER 64

enum { LJ_ABSENT = 'a', LJ_NULL = 'n', LJ_STRING = 's', LJ_NUMBER = 'd', LJ_OTHER = 'o' };

typedef struct {
    int role;            /* LJ_ROUTE .. LJ_LATENCY */
    int rank;            /* its place in the role's lookup order: the lowest present one wins */
    const ls_uc *name;   /* the key's UTF-8 bytes */
    size_t len;
} lj_name;

typedef struct {
    const lj_name *names;
    size_t nnames;
    double lat_scale;    /* the latency unit as a multiplier to ms */
    uint32_t by_len[32]; /* the names whose length is this modulo 32 (lj_index): most keys are none */
} lj_spec;

/* Fill `by_len` once the names are set. */
static void lj_index(lj_spec *spec)
{
    memset(spec->by_len, 0, sizeof spec->by_len);
    for (size_t k = 0; k < spec->nnames && k < LJ_MAX_NAMES; k++)
        spec->by_len[spec->names[k].len & 31] |= (uint32_t)1 << k;
}

typedef struct {
    int kind;            /* LJ_ABSENT, LJ_NULL, LJ_STRING, LJ_NUMBER or LJ_OTHER */
    int rank;
    const ls_uc *at;     /* a string's content, a number's text */
    size_t len;
    int plain;           /* a string without escapes; a number that is a non-negative integer or decimal */
} lj_value;


/* The length of the valid UTF-8 sequence at p[i] (its lead byte >= 0x80), 0 when it is not one that
 * Python's strict decoder takes (overlong forms, surrogates, above U+10FFFF, truncated). */
static size_t lj_utf8(const ls_uc *p, size_t n, size_t i)
{
    ls_uc c = p[i];
    size_t need;
    ls_uc lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c == 0xe0) { need = 2; lo = 0xa0; }
    else if (c == 0xed) { need = 2; hi = 0x9f; }
    else if (c >= 0xe1 && c <= 0xef) need = 2;
    else if (c == 0xf0) { need = 3; lo = 0x90; }
    else if (c == 0xf4) { need = 3; hi = 0x8f; }
    else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else return 0;
    if (n - i <= need) return 0;
    if (p[i + 1] < lo || p[i + 1] > hi) return 0;
    for (size_t k = 2; k <= need; k++)
        if ((p[i + k] & 0xc0) != 0x80) return 0;
    return need + 1;
}

/* Byte classes: LJ_PLAIN, a byte a string holds as it is (ASCII from 0x20, but `"` and the backslash);
 * LJ_SPACE, JSON's whitespace (space, tab, newline, carriage return: not the other bytes isspace() takes). */
enum { LJ_PLAIN = 1, LJ_SPACE = 2 };
static const ls_uc lj_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    3, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static size_t lj_skip_ws(const ls_uc *p, size_t n, size_t i)
{
    while (i < n && (lj_class[p[i]] & LJ_SPACE)) i++;
    return i;
}

/* A string at p[i] == '"': the index after its closing quote, 0 when it is not valid JSON. */
static size_t lj_string(const ls_uc *p, size_t n, size_t i, int *escaped)
{
    *escaped = 0;
    i++;
    while (i < n) {
        while (i < n && (lj_class[p[i]] & LJ_PLAIN)) i++;
        if (i >= n) return 0;
        ls_uc c = p[i];
        if (c == '"') return i + 1;
        if (c == '\\') {
            if (n - i < 2) return 0;
            ls_uc e = p[i + 1];
            *escaped = 1;
            if (e == 'u') {
                if (n - i < 6 || !ls_hex(p[i + 2]) || !ls_hex(p[i + 3]) || !ls_hex(p[i + 4]) || !ls_hex(p[i + 5]))
                    return 0;
                i += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                i += 2;
            } else {
                return 0;
            }
        } else if (c < 0x20) {
            return 0;  /* json.loads is strict: no raw control characters in a string */
        } else if (c >= 0x80) {
            size_t k = lj_utf8(p, n, i);
            if (k == 0) return 0;
            i += k;
        } else {
            i++;
        }
    }
    return 0;
}

/* A number at p[i] in JSON's grammar: the index after it, 0 when it is not one (or too long). `plain`:
 * no sign and no exponent (`D+` or `D+.D+`), the forms ls_size and ls_time read. */
static size_t lj_number(const ls_uc *p, size_t n, size_t i, int *plain)
{
    size_t s = i;
    *plain = 1;
    if (i < n && p[i] == '-') {
        *plain = 0;
        i++;
    }
    if (i >= n || !ls_digit(p[i])) return 0;  /* also -Infinity: Python's, not ours */
    if (p[i] == '0') i++;
    else while (i < n && ls_digit(p[i])) i++;
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !ls_digit(p[i])) return 0;
        while (i < n && ls_digit(p[i])) i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        *plain = 0;
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        if (i >= n || !ls_digit(p[i])) return 0;
        while (i < n && ls_digit(p[i])) i++;
    }
    return i - s > LJ_MAX_NUMBER ? 0 : i;
}

static size_t lj_word(const ls_uc *p, size_t n, size_t i, const char *word, size_t len)
{
    return n - i >= len && memcmp(p + i, word, len) == 0 ? i + len : 0;
}

static size_t lj_skip(const ls_uc *p, size_t n, size_t i, int depth);

/* An object or array at p[i] (its members checked, not kept): the index after it, or 0. */
static size_t lj_container(const ls_uc *p, size_t n, size_t i, int depth)
{
    if (depth >= LJ_MAX_DEPTH) return 0;
    ls_uc close = p[i] == '{' ? '}' : ']';
    i = lj_skip_ws(p, n, i + 1);
    if (i < n && p[i] == close) return i + 1;
    for (;;) {
        if (close == '}') {
            int escaped;
            if (i >= n || p[i] != '"' || (i = lj_string(p, n, i, &escaped)) == 0) return 0;
            i = lj_skip_ws(p, n, i);
            if (i >= n || p[i] != ':') return 0;
            i = lj_skip_ws(p, n, i + 1);
        }
        if ((i = lj_skip(p, n, i, depth + 1)) == 0) return 0;
        i = lj_skip_ws(p, n, i);
        if (i >= n) return 0;
        if (p[i] == close) return i + 1;
        if (p[i] != ',') return 0;
        i = lj_skip_ws(p, n, i + 1);
    }
}

/* Any value at p[i]: the index after it, or 0 when it is not valid JSON (or one Python reads another
 * way). The recursion is at most LJ_MAX_DEPTH deep. */
static size_t lj_skip(const ls_uc *p, size_t n, size_t i, int depth)
{
    int flag;
    if (i >= n) return 0;
    switch (p[i]) {
    case '"': return lj_string(p, n, i, &flag);
    case '{':
    case '[': return lj_container(p, n, i, depth);
    case 't': return lj_word(p, n, i, "true", 4);
    case 'f': return lj_word(p, n, i, "false", 5);
    case 'n': return lj_word(p, n, i, "null", 4);
    default: return lj_number(p, n, i, &flag);
    }
}

/* A top-level value at p[i]: what it is, kept in `v`; the index after it, or 0. */
static size_t lj_read(const ls_uc *p, size_t n, size_t i, lj_value *v)
{
    size_t end;
    switch (p[i]) {
    case '"': {
        int escaped;
        if ((end = lj_string(p, n, i, &escaped)) == 0) return 0;
        *v = (lj_value){.kind = LJ_STRING, .at = p + i + 1, .len = end - i - 2, .plain = !escaped};
        return end;
    }
    case 'n':
        if ((end = lj_word(p, n, i, "null", 4)) == 0) return 0;
        *v = (lj_value){.kind = LJ_NULL};
        return end;
    case 't':
    case 'f':
    case '{':
    case '[':
        if ((end = lj_skip(p, n, i, 1)) == 0) return 0;
        *v = (lj_value){.kind = LJ_OTHER};
        return end;
    default: {
        int plain;
        if ((end = lj_number(p, n, i, &plain)) == 0) return 0;
        *v = (lj_value){.kind = LJ_NUMBER, .at = p + i, .len = end - i, .plain = plain};
        return end;
    }
    }
}

/* A top-level key (p[s..e) its content, no escapes) and its value: kept in `vals` for each configured
 * name it is, by rank; 0 when a configured key comes twice (json.loads keeps the last: Python decides). */
static int lj_keep(const lj_spec *spec, const ls_uc *key, size_t len, const lj_value *v, lj_value *vals,
                   uint32_t *seen)
{
    for (uint32_t bits = spec->by_len[len & 31]; bits; bits &= bits - 1) {
        int k = __builtin_ctz(bits);
        const lj_name *name = &spec->names[k];
        if (name->len != len || (len && name->name[0] != key[0]) || memcmp(name->name, key, len) != 0) continue;
        if (*seen & ((uint32_t)1 << k)) return 0;
        *seen |= (uint32_t)1 << k;
        lj_value *slot = &vals[name->role];
        if (slot->kind == LJ_ABSENT || name->rank < slot->rank) {
            *slot = *v;
            slot->rank = name->rank;
        }
    }
    return 1;
}

/* The line's object, its configured fields kept in `vals`: 1 when the whole line is plainly valid. */
static int lj_object(const ls_uc *p, size_t n, const lj_spec *spec, lj_value *vals)
{
    uint32_t seen = 0;
    size_t i = lj_skip_ws(p, n, 0);
    if (i >= n || p[i] != '{') return 0;
    i = lj_skip_ws(p, n, i + 1);
    if (i < n && p[i] == '}') return lj_skip_ws(p, n, i + 1) == n;
    for (;;) {
        int escaped;
        if (i >= n || p[i] != '"') return 0;
        size_t key = i + 1, end = lj_string(p, n, i, &escaped);
        if (end == 0 || escaped) return 0;  /* an escaped key may spell a configured one */
        i = lj_skip_ws(p, n, end);
        if (i >= n || p[i] != ':') return 0;
        i = lj_skip_ws(p, n, i + 1);
        lj_value v;
        if (i >= n || (i = lj_read(p, n, i, &v)) == 0) return 0;
        if (!lj_keep(spec, p + key, end - 1 - key, &v, vals, &seen)) return 0;
        i = lj_skip_ws(p, n, i);
        if (i >= n) return 0;
        if (p[i] == '}') return lj_skip_ws(p, n, i + 1) == n;
        if (p[i] != ',') return 0;
        i = lj_skip_ws(p, n, i + 1);
    }
}

/* The size as parse_bytes reads the JSON value (absent and null are 0; a float must be whole: Python's). */
static int lj_size(const lj_value *v, uint64_t *out)
{
    *out = 0;
    if (v->kind == LJ_ABSENT || v->kind == LJ_NULL) return 1;
    if (v->kind == LJ_NUMBER) return v->plain && ls_size(v->at, v->len, out) && v->at[0] != '-';
    if (v->kind == LJ_STRING) return v->plain && ls_size(v->at, v->len, out);
    return 0;
}

/* The latency as parse_latency_ms reads it: absent and null are none; a number or a string in ls_time's
 * subset (float() of the number Python decoded, or of the string, is the same correctly rounded value). */
static int lj_latency(const lj_value *v, double scale, int *has, double *out)
{
    *has = 0;
    if (v->kind == LJ_ABSENT || v->kind == LJ_NULL) return 1;
    if ((v->kind != LJ_NUMBER && v->kind != LJ_STRING) || !v->plain || !ls_time(v->at, v->len, out)) return 0;
    *out *= scale;
    *has = 1;
    return 1;
}

/* A line: LS_KEY with the raw key written to `key` (room for LS_KEY_MAX bytes), or LS_OUT. */
static int lj_scan(const ls_uc *p, size_t n, const lj_spec *spec, ls_uc *key, ls_line *out)
{
    lj_value vals[LJ_ROLES];
    for (int r = 0; r < LJ_ROLES; r++) {  /* the other members are set with the kind */
        vals[r].kind = LJ_ABSENT;
        vals[r].len = 0;
    }
    if (!lj_object(p, n, spec, vals)) return LS_OUT;
    size_t o = 0;
    for (int r = 0; r < LJ_KEYED; r++) {
        const lj_value *v = &vals[r];
        if (v->kind == LJ_OTHER || (v->kind == LJ_STRING && !v->plain)) return LS_OUT;
        if (v->len > LS_KEY_MAX || LS_KEY_MAX - o < 3 + v->len) return LS_OUT;
        key[o++] = (ls_uc)v->kind;
        key[o++] = (ls_uc)(v->len >> 8);
        key[o++] = (ls_uc)v->len;
        if (v->len) memcpy(key + o, v->at, v->len);
        o += v->len;
    }
    out->key = key;
    out->keylen = o;
    out->has_up = 0;
    out->values_ok = lj_size(&vals[LJ_BYTES], &out->size) &&
                     lj_latency(&vals[LJ_LATENCY], spec->lat_scale, &out->has_lat, &out->lat);
    return LS_KEY;
}

/* ---- the path key ---------------------------------------------------------------------------------- */

typedef struct {
    int tag;
    const ls_uc *at;
    size_t len;
} lj_field;

/* A raw key's fields; 0 when `key` is not one lj_scan writes. */
static int lj_fields(const ls_uc *key, size_t len, lj_field *f)
{
    size_t o = 0;
    for (int r = 0; r < LJ_KEYED; r++) {
        if (len - o < 3) return 0;
        int tag = key[o];
        size_t vl = ((size_t)key[o + 1] << 8) | key[o + 2];
        if ((tag != LJ_ABSENT && tag != LJ_NULL && tag != LJ_STRING && tag != LJ_NUMBER) || len - o - 3 < vl)
            return 0;
        f[r] = (lj_field){.tag = tag, .at = key + o + 3, .len = vl};
        o += 3 + vl;
    }
    return o == len;
}

typedef struct {
    ls_uc *buf;
    size_t used, cap;
    int ok;
} lj_out;

static void lj_put(lj_out *w, const void *bytes, size_t len)
{
    if (!w->ok || w->cap - w->used < len) {
        w->ok = 0;
        return;
    }
    if (len) memcpy(w->buf + w->used, bytes, len);
    w->used += len;
}

/* A field as its tag, length and bytes; `none` folds a null (and for the service, "") into absent,
 * which Python reads the same way. */
static void lj_put_field(lj_out *w, const lj_field *f, int empty_is_absent)
{
    int absent = f->tag == LJ_ABSENT || f->tag == LJ_NULL || (empty_is_absent && f->tag == LJ_STRING && f->len == 0);
    ls_uc head[3] = {(ls_uc)(absent ? LJ_ABSENT : f->tag), (ls_uc)(absent ? 0 : f->len >> 8),
                     (ls_uc)(absent ? 0 : f->len)};
    lj_put(w, head, 3);
    if (!absent) lj_put(w, f->at, f->len);
}

/* A route value that starts with '/' as route_of reads it (query and fragment cut), ids replaced as
 * ls_path_key replaces them when `ids` (ls_route); its length first. */
static void lj_put_route(lj_out *w, const ls_uc *t, size_t tlen, int ids)
{
    if (!w->ok || w->cap - w->used < 2 || (w->cap - w->used - 2) / 2 < tlen) {  /* ls_route's room */
        w->ok = 0;
        return;
    }
    ptrdiff_t plen = ls_route(t, tlen, ids, w->buf + w->used + 2);
    if (plen < 0 || plen > 0xffff) {
        w->ok = 0;
        return;
    }
    w->buf[w->used] = (ls_uc)(plen >> 8);
    w->buf[w->used + 1] = (ls_uc)plen;
    w->used += 2 + (size_t)plen;
}

/* The path key of a raw key: what decides its labels, as parse_json decides them. A string route
 * starting with '/' is route_of's path part (`R`); without a route, a request line is split as
 * ls_path_key splits it (`Q`), and none (or `-`, "") is NO_REQUEST (`N`); then the method, the status
 * and the service. 0 when there is none (another route form, a value Python rejects): the raw key alone
 * then counts. `out` has room for LS_PATH_KEY_MAX bytes. */
static int lj_path_key(const ls_uc *key, size_t len, int ids, ls_uc *out, size_t *outlen)
{
    lj_field f[LJ_KEYED];
    if (!lj_fields(key, len, f)) return 0;
    lj_out w = {out, 0, LS_PATH_KEY_MAX, 1};
    const lj_field *route = &f[LJ_ROUTE], *req = &f[LJ_REQUEST];
    if (route->tag == LJ_STRING) {
        if (route->len == 0 || route->at[0] != '/') return 0;
        lj_put(&w, "R", 1);
        lj_put_route(&w, route->at, route->len, ids);
    } else if (route->tag == LJ_NUMBER) {
        return 0;
    } else if (req->tag == LJ_ABSENT || req->tag == LJ_NULL ||
               (req->tag == LJ_STRING && (req->len == 0 || (req->len == 1 && req->at[0] == '-')))) {
        lj_put(&w, "N", 1);
    } else if (req->tag == LJ_STRING) {
        ls_uc pk[LS_PATH_KEY_MAX];
        size_t pklen;
        if (req->len > LS_KEY_MAX || !ls_path_key(req->at, req->len, req->at, 0, ids, pk, &pklen)) return 0;
        lj_put(&w, "Q", 1);
        lj_put(&w, pk, pklen);
    } else {
        return 0;
    }
    lj_put_field(&w, &f[LJ_METHOD], 0);
    lj_put_field(&w, &f[LJ_STATUS], 0);
    lj_put_field(&w, &f[LJ_SERVICE], 1);
    if (!w.ok) return 0;
    *outlen = w.used;
    return 1;
}

#endif
