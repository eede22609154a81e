/* The compiled core's line scanners, in plain C (no Python API), so the fuzz target can run them alone.
 *
 * Every scanner reads one line given as (pointer, length): the bytes are not NUL-terminated and no
 * scan goes past `n`; no str* or strto* function is used. A scanner accepts only a subset of the lines
 * its format's Python parser accepts, the subset whose verdict it can give exactly; for any other line
 * it says LS_OUT and the line goes back to Python, which decides. Numbers are read only in forms that
 * Python's int() and float() read the same way (ASCII digits, at most 18 of them for a size; at most 15
 * significant digits and a plain decimal point for a time, converted with one correctly rounded
 * division), so a value counted here is the value Python would have counted.
 */
#ifndef LOGTAILD_SCAN_H
#define LOGTAILD_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef unsigned char ls_uc;

/* the longest raw key kept (the Python caches keep no longer ones either) */
#define LS_KEY_MAX 2048
/* a path key: two 2-byte lengths, the method, the path (ids replaced: at most twice as long), the status */
#define LS_PATH_KEY_MAX (4 + 3 * LS_KEY_MAX)

enum { LS_OUT = 0, LS_KEY = 1 };

typedef struct {
    const ls_uc *key;       /* the raw key: the bytes that decide the line's labels (a span of the line) */
    size_t keylen;
    int values_ok;          /* size (and time, when the format has one) read in the exact subset */
    uint64_t size;
    int has_lat;
    double lat;             /* milliseconds */
    int has_up;
    double up;              /* the upstream times' sum, milliseconds */
} ls_line;

static inline int ls_ws(ls_uc c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Byte classes for the token loops (`\S`, `[^\s\[]`, `[^\s"]`): one load and a mask per byte, where
 * ls_ws and a second compare cost four compares and branches; the loops over an IP address and the
 * other short tokens are most of a combined line's scan. LS_C_WS is exactly ls_ws's set. */
enum { LS_C_WS = 1, LS_C_BRACKET = 2, LS_C_QUOTE = 4 };
static const uint8_t ls_class[256] = {
    ['\t'] = LS_C_WS, ['\n'] = LS_C_WS, ['\v'] = LS_C_WS, ['\f'] = LS_C_WS, ['\r'] = LS_C_WS, [' '] = LS_C_WS,
    ['['] = LS_C_BRACKET, ['"'] = LS_C_QUOTE,
};

/* The first index from `i` (at most `n`) whose byte is in one of the classes `stop`. */
static inline size_t ls_span(const ls_uc *p, size_t i, size_t n, unsigned stop)
{
    while (i < n && !(ls_class[p[i]] & stop)) i++;
    return i;
}
static inline int ls_digit(ls_uc c) { return c >= '0' && c <= '9'; }
static inline int ls_hex(ls_uc c) { return ls_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* A size as parse_bytes reads it: `-` is 0; 1 to 18 ASCII digits (below 2**63). */
static int ls_size(const ls_uc *p, size_t n, uint64_t *out)
{
    if (n == 1 && p[0] == '-') { *out = 0; return 1; }
    if (n == 0 || n > 18) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ls_digit(p[i])) return 0;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 1;
}

static const double ls_pow10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
                                    1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A time as float() reads it, in the subset `D+`, `D+.`, `D+.D+`, `.D+`: at most 15 significant digits
 * and 22 after the point. The mantissa (< 2**53) and 10**k are exact doubles, so their quotient is the
 * correctly rounded value of the decimal, which is what float() returns. A time of at most 15 digits
 * (every latency a server writes) is read in two tight loops; a longer one, whose leading zeros decide
 * whether it has too many significant digits, digit by digit (ls_time_long). */
static int ls_time_long(const ls_uc *p, size_t n, double *out)
{
    uint64_t m = 0;
    int sig = 0, frac = 0, digits = 0, point = 0;
    for (size_t i = 0; i < n; i++) {
        ls_uc c = p[i];
        if (c == '.') {
            if (point) return 0;
            point = 1;
            continue;
        }
        if (!ls_digit(c)) return 0;
        digits++;
        if (point) frac++;
        if (sig || c != '0') {
            if (++sig > 15) return 0;
            m = m * 10 + (uint64_t)(c - '0');
        }
    }
    if (digits == 0 || frac > 22) return 0;
    *out = frac ? (double)m / ls_pow10[frac] : (double)m;
    return 1;
}

static int ls_time(const ls_uc *p, size_t n, double *out)
{
    if (n > 16) return ls_time_long(p, n, out);  /* more than 15 digits and a point */
    uint64_t m = 0;
    size_t i = 0;
    for (; i < n && ls_digit(p[i]); i++) m = m * 10 + (uint64_t)(p[i] - '0');
    size_t whole = i, frac = 0;
    if (i < n) {
        if (p[i] != '.') return 0;
        size_t first = ++i;
        for (; i < n && ls_digit(p[i]); i++) m = m * 10 + (uint64_t)(p[i] - '0');
        if (i < n) return 0;
        frac = i - first;
    }
    if (whole + frac == 0) return 0;
    if (whole + frac > 15) return ls_time_long(p, n, out);  /* 16 digits: leading zeros decide */
    *out = frac ? (double)m / ls_pow10[frac] : (double)m;
    return 1;
}

/* A chunk's next line: the bytes from `at` up to the next newline, or up to `end` when none is left
 * (a chunk handed to the core ends with a newline; an unterminated rest is read as a line, as Python's
 * split reads it). Needs at <= end; returns the line's length, never reaching past `end`, and sets
 * *next to where the following line starts (end once the last line is read). */
static inline size_t ls_next_line(const ls_uc *base, size_t end, size_t at, size_t *next)
{
    const ls_uc *nl = memchr(base + at, '\n', end - at);
    size_t len = nl ? (size_t)(nl - (base + at)) : end - at;
    *next = nl ? at + len + 1 : end;
    return len;
}

/* The tabs of a tsv line: where the first five are, and how many there are (more than four: too many). */
typedef struct {
    size_t at[5];
    int n;
} ls_tabs;

static inline __attribute__((always_inline)) void ls_tab_at(ls_tabs *t, size_t i)
{
    if (t->n < 5) t->at[t->n] = i;
    t->n++;
}

#if defined(__SSE2__)
/* The tabs among a 16-byte block's `tabs` bits (block at i), up to its first newline bit when there is one;
 * 1 when the line ends in the block (*len set). */
static inline __attribute__((always_inline)) int ls_tab_block(ls_tabs *t, size_t i, unsigned tabs, unsigned nls, size_t *len)
{
    if (nls) tabs &= (nls & (0u - nls)) - 1u;  /* the tabs before the newline */
    for (; tabs; tabs &= tabs - 1) ls_tab_at(t, i + (size_t)__builtin_ctz(tabs));
    if (!nls) return 0;
    *len = i + (size_t)__builtin_ctz(nls);
    return 1;
}
#endif

/* A tsv line's tabs and length: up to the first newline when `to_newline` (a chunk, whose lines the core
 * splits itself), else the whole of `avail` (a line Python split). One pass, 16 bytes at a time with SSE2
 * (every x86-64 has it): a line's six memchr calls cost more than reading it; the last block is the
 * buffer's last 16 bytes, read again, so no load goes past `avail`. */
static inline __attribute__((always_inline)) size_t ls_tsv_split(const ls_uc *p, size_t avail, int to_newline, ls_tabs *t)
{
    size_t i = 0, len = avail;
    t->n = 0;
#if defined(__SSE2__)
    const __m128i tab = _mm_set1_epi8('\t'), nl = _mm_set1_epi8('\n');
    for (; i + 16 <= avail; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        unsigned tabs = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, tab));
        unsigned nls = to_newline ? (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)) : 0u;
        if (ls_tab_block(t, i, tabs, nls, &len)) return len;
    }
    if (i < avail && avail >= 16) {  /* the rest: the last 16 bytes, without the ones already read */
        size_t last = avail - 16;
        unsigned keep = ~0u << (i - last);
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + last));
        unsigned tabs = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, tab)) & keep;
        unsigned nls = to_newline ? (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)) & keep : 0u;
        ls_tab_block(t, last, tabs, nls, &len);
        return len;
    }
#endif
    for (; i < avail; i++) {
        if (p[i] == '\t') ls_tab_at(t, i);
        else if (p[i] == '\n' && to_newline) return i;
    }
    return len;
}

/* tsv: `ip<TAB>request<TAB>status<TAB>bytes[<TAB>latency_ms]`; the raw key is `request<TAB>status`. The
 * line's tabs come from ls_tsv_split. */
static int ls_scan_tsv_tabs(const ls_uc *p, size_t n, const ls_tabs *t, ls_line *out)
{
    if (t->n > 4 || t->n < 3) return LS_OUT;
    const size_t *tab = t->at;
    int tabs = t->n;
    out->key = p + tab[0] + 1;
    out->keylen = tab[2] - tab[0] - 1;
    if (out->keylen > LS_KEY_MAX) return LS_OUT;
    size_t size_end = tabs == 4 ? tab[3] : n;
    out->values_ok = ls_size(p + tab[2] + 1, size_end - tab[2] - 1, &out->size);
    out->has_lat = tabs == 4;
    if (out->has_lat && out->values_ok)
        out->values_ok = ls_time(p + tab[3] + 1, n - tab[3] - 1, &out->lat);
    return LS_KEY;
}

/* tsv on a line Python split (no newline ends it). */
static int ls_scan_tsv(const ls_uc *p, size_t n, ls_line *out)
{
    ls_tabs t;
    ls_tsv_split(p, n, 0, &t);
    return ls_scan_tsv_tabs(p, n, &t, out);
}

/* combined: `client ident user [time] "request" status bytes` and any trailing fields (referer, agent,
 * a request time), in the subset of lines whose match by the Python regex is certain and whose request
 * needs no unescaping: one-token client (no `[`, no space), no backslash in the request. The raw key is
 * `request" status`: the request holds no `"`, so the key splits back into its two parts. `lat_scale`
 * (< 0: none) reads the last trailing field as the request time, as the preset's latency_unit does. */
static int ls_scan_combined(const ls_uc *p, size_t n, double lat_scale, ls_line *out)
{
    size_t i = 0, start;
    for (int word = 0; word < 3; word++) {  /* client (non-empty), ident, user */
        start = i;
        i = ls_span(p, i, n, LS_C_WS | LS_C_BRACKET);
        if ((word == 0 && i == start) || i >= n || p[i] != ' ') return LS_OUT;
        i++;
    }
    if (i >= n || p[i] != '[') return LS_OUT;
    start = ++i;
    size_t room = n - i < 65 ? n - i : 65;  /* `[^\]\n]{1,64}` then `]`: the first `]` within 65 bytes */
    const ls_uc *close = memchr(p + i, ']', room);
    if (close == NULL || close == p + i || memchr(p + i, '\n', (size_t)(close - (p + i)))) return LS_OUT;
    i = (size_t)(close - p) + 1;
    if (n - i < 2 || p[i] != ' ' || p[i + 1] != '"') return LS_OUT;
    i += 2;
    size_t key_start = i;
    const ls_uc *quote = memchr(p + i, '"', n - i);
    if (quote == NULL || memchr(p + i, '\\', (size_t)(quote - (p + i))))
        return LS_OUT;  /* unclosed, or escapes: Python unescapes and decides */
    i = (size_t)(quote - p);
    if (n - i < 2 || p[i + 1] != ' ') return LS_OUT;
    i += 2;
    const ls_uc *space = memchr(p + i, ' ', n - i);  /* the status, `[^ ]*+`: judged by Python at bind */
    i = space ? (size_t)(space - p) : n;
    out->key = p + key_start;
    out->keylen = i - key_start;
    if (out->keylen > LS_KEY_MAX || i >= n) return LS_OUT;
    i++;
    start = i;
    i = ls_span(p, i, n, LS_C_WS);  /* bytes, `\S*+` */
    out->values_ok = ls_size(p + start, i - start, &out->size);
    /* the trailing fields, possessive: ` +` then a quoted value (escapes allowed) or a bare token */
    size_t last = 0, last_end = 0;
    int last_bare = 0, any = 0;
    for (;;) {
        size_t q = i;
        while (q < n && p[q] == ' ') q++;
        if (q == i || q >= n) break;
        size_t r;
        if (p[q] == '"') {
            r = q + 1;
            int closed = 0;
            const ls_uc *end = memchr(p + r, '"', n - r);
            if (end != NULL && !memchr(p + r, '\\', (size_t)(end - (p + r)))) {  /* no escape: the next quote */
                r = (size_t)(end - p) + 1;
                closed = 1;
            }
            while (!closed && r < n) {
                if (p[r] == '"') { r++; closed = 1; break; }
                if (p[r] == '\\') {
                    if (r + 1 >= n) break;
                    r += 2;
                } else {
                    r++;
                }
            }
            if (!closed) break;
            last_bare = 0;
        } else if (!ls_ws(p[q])) {
            r = ls_span(p, q, n, LS_C_WS | LS_C_QUOTE);
            last_bare = 1;
        } else {
            break;
        }
        any = 1;
        last = q;
        last_end = r;
        i = r;
    }
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r')) i++;
    if (i != n) return LS_OUT;
    out->has_lat = 0;
    if (lat_scale >= 0 && any && last_bare && !(last_end - last == 1 && p[last] == '-')) {
        out->has_lat = 1;
        if (out->values_ok) {
            out->values_ok = ls_time(p + last, last_end - last, &out->lat);
            out->lat *= lat_scale;
        }
    }
    return LS_KEY;
}

/* ---- compiled format strings (logformat.py's CompiledFormat._core_program) ---------------------------- */

enum { LS_OP_LITERAL = 0, LS_OP_CLIENT, LS_OP_HEAD, LS_OP_BRACKETED, LS_OP_QUOTED, LS_OP_NONSPACE, LS_OP_TIMES,
       LS_OP_LIST, LS_OP_UNTIL, LS_OP_TIME_LOCAL, LS_OP_APACHE_TIME, LS_OP_END };
enum { LS_ROLE_NONE = 0, LS_ROLE_REQUEST, LS_ROLE_STATUS, LS_ROLE_BYTES, LS_ROLE_LATENCY, LS_ROLE_UPSTREAM,
       LS_ROLES };

typedef struct {
    int kind, role;
    ls_uc stop;             /* LS_OP_UNTIL: the byte that ends the field (the next literal's first) */
    const ls_uc *literal;   /* LS_OP_LITERAL */
    size_t len;
} ls_op;

typedef struct {
    const ls_op *ops;
    size_t nops;
    double lat_scale, up_scale;
    int unescape;           /* escape=default: a request with a backslash is Python's to unescape */
    int upstream;           /* count the upstream time (the slots have the upstream part) */
} ls_program;

/* `[0-9.]++` or `-`, as in logformat's _TIMES; `[^ ,]++` (`any`) for _LIST; returns the end or 0. */
static size_t ls_item(const ls_uc *p, size_t n, size_t i, int list)
{
    size_t s = i;
    if (!list && i < n && p[i] == '-') return i + 1;
    while (i < n && (list ? (p[i] != ' ' && p[i] != ',') : (ls_digit(p[i]) || p[i] == '.'))) i++;
    return i > s ? i : 0;
}

/* _TIMES and _LIST: an item (for _LIST possibly empty), then possessively `(?:, ?| : )item` */
static size_t ls_items(const ls_uc *p, size_t n, size_t i, int list)
{
    size_t e = ls_item(p, n, i, list);
    if (e == 0) {
        if (!list) return 0;
        e = i;  /* `[^ ,]*+`: empty */
    }
    i = e;
    for (;;) {
        size_t j = i;
        if (j < n && p[j] == ',') {
            j++;
            if (j < n && p[j] == ' ') j++;  /* an item never starts with a space: no retry without it */
        } else if (n - j >= 3 && p[j] == ' ' && p[j + 1] == ':' && p[j + 2] == ' ') {
            j += 3;
        } else {
            break;
        }
        e = ls_item(p, n, j, list);
        if (e == 0) break;
        i = e;
    }
    return i;
}

static int ls_time_local(const ls_uc *p, size_t n, size_t i)
{
    static const char shape[] = "dd/aaa/dddd:dd:dd:dd sdddd";  /* d digit, a letter, s sign */
    if (n - i < 26) return 0;
    for (size_t k = 0; k < 26; k++) {
        ls_uc c = p[i + k];
        char want = shape[k];
        if (want == 'd' ? !ls_digit(c) : want == 'a' ? !(((c | 0x20) >= 'a') && ((c | 0x20) <= 'z')) :
            want == 's' ? (c != '+' && c != '-') : c != (ls_uc)want)
            return 0;
    }
    return 1;
}

/* nginx's upstream times as parse_upstream_ms reads them: `-` is none; one time; or times split on `,`
 * and `:`, each stripped of spaces, `-` skipped, summed in order (each multiplied by the scale first). */
static int ls_upstream(const ls_uc *p, size_t n, double scale, int *has, double *out)
{
    *has = 0;
    if (n == 1 && p[0] == '-') return 1;
    if (!memchr(p, ',', n) && !memchr(p, ':', n)) {  /* one time, read whole (float() would strip it) */
        if (!ls_time(p, n, out)) return 0;
        *out *= scale;
        *has = 1;
        return 1;
    }
    double total = 0.0;
    int seen = 0;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < n && p[j] != ',' && p[j] != ':') j++;
        size_t a = i, b = j;
        while (a < b && p[a] == ' ') a++;  /* bytes.strip(): only spaces can be there (the regex) */
        while (b > a && p[b - 1] == ' ') b--;
        for (size_t k = a; k < b; k++)
            if (ls_ws(p[k])) return 0;  /* other whitespace: Python decides */
        if (!(b - a == 1 && p[a] == '-')) {
            double v;
            if (!ls_time(p + a, b - a, &v)) return 0;
            total += v * scale;
            seen = 1;
        }
        if (j >= n) break;
        i = j + 1;
    }
    *has = seen;
    *out = total;
    return 1;
}

/* A line in a compiled format: the program's literals and fields in turn, each field read as its
 * possessive pattern reads it, then `[ \t\r]*+` to the end. The raw key (written to `key`, at least
 * 2 + 2 * LS_KEY_MAX bytes) is the request's length (2 bytes), the request and the status. */
static int ls_scan_program(const ls_uc *p, size_t n, const ls_program *prog, ls_uc *key, ls_line *out)
{
    size_t at[LS_ROLES] = {0}, len[LS_ROLES] = {0};
    int seen[LS_ROLES] = {0};
    size_t i = 0;
    for (size_t k = 0; k < prog->nops; k++) {
        const ls_op *op = &prog->ops[k];
        size_t s = i;
        switch (op->kind) {
        case LS_OP_LITERAL:  /* a few bytes (` - `, `" "`): a loop, where a memcmp call cost more */
            if (n - i < op->len) return LS_OUT;
            for (size_t j = 0; j < op->len; j++)
                if (p[i + j] != op->literal[j]) return LS_OUT;
            i += op->len;
            continue;
        case LS_OP_CLIENT:  /* the one-token subset of the lenient client: the regex's only match */
            i = ls_span(p, i, n, LS_C_WS | LS_C_BRACKET);
            if (i == s) return LS_OUT;
            break;
        case LS_OP_HEAD:
            i = ls_span(p, i, n, LS_C_WS | LS_C_BRACKET);
            break;
        case LS_OP_BRACKETED: {  /* to the first `]` or newline among the next 65 bytes (two memchr, not a byte loop) */
            size_t lim = n - i < 65 ? n - i : 65;
            const ls_uc *close = memchr(p + i, ']', lim);
            size_t end = close ? (size_t)(close - p) : i + lim;
            const ls_uc *nl = memchr(p + i, '\n', end - i);
            i = nl ? (size_t)(nl - p) : end;
            if (i == s || i - s > 64) return LS_OUT;
            break;
        }
        case LS_OP_QUOTED: {  /* to the next `"` not escaped: memchr when no backslash comes before it */
            const ls_uc *quote = memchr(p + i, '"', n - i);
            if (quote != NULL && !memchr(p + i, '\\', (size_t)(quote - (p + i)))) {
                i = (size_t)(quote - p);
                break;
            }
            while (i < n && p[i] != '"') {
                if (p[i] == '\\') {
                    if (i + 1 >= n) break;
                    i += 2;
                } else {
                    i++;
                }
            }
            break;
        }
        case LS_OP_NONSPACE:
            i = ls_span(p, i, n, LS_C_WS);
            break;
        case LS_OP_TIMES:
        case LS_OP_LIST:
            i = ls_items(p, n, i, op->kind == LS_OP_LIST);
            if (i == 0) return LS_OUT;
            break;
        case LS_OP_UNTIL: {
            const ls_uc *stop = memchr(p + i, op->stop, n - i);
            i = stop ? (size_t)(stop - p) : n;
            break;
        }
        case LS_OP_TIME_LOCAL:
            if (!ls_time_local(p, n, i)) return LS_OUT;
            i += 26;
            break;
        case LS_OP_APACHE_TIME:
            if (i >= n || p[i] != '[') return LS_OUT;
            i++;
            while (i < n && p[i] != ']' && p[i] != '\n' && i - s <= 65) i++;
            if (i >= n || p[i] != ']' || i - s < 2 || i - s > 65) return LS_OUT;
            i++;
            break;
        default:
            return LS_OUT;
        }
        if (op->role > 0 && op->role < LS_ROLES && !seen[op->role]) {
            seen[op->role] = 1;
            at[op->role] = s;
            len[op->role] = i - s;
        }
    }
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r')) i++;
    if (i != n || !seen[LS_ROLE_REQUEST] || !seen[LS_ROLE_STATUS]) return LS_OUT;
    size_t rl = len[LS_ROLE_REQUEST], sl = len[LS_ROLE_STATUS];
    if (rl > LS_KEY_MAX || sl > LS_KEY_MAX) return LS_OUT;
    if (prog->unescape && memchr(p + at[LS_ROLE_REQUEST], '\\', rl)) return LS_OUT;
    key[0] = (ls_uc)(rl >> 8);
    key[1] = (ls_uc)rl;
    memcpy(key + 2, p + at[LS_ROLE_REQUEST], rl);
    memcpy(key + 2 + rl, p + at[LS_ROLE_STATUS], sl);
    out->key = key;
    out->keylen = 2 + rl + sl;
    if (out->keylen > LS_KEY_MAX) return LS_OUT;
    out->size = 0;
    out->values_ok = seen[LS_ROLE_BYTES] ? ls_size(p + at[LS_ROLE_BYTES], len[LS_ROLE_BYTES], &out->size) : 1;
    out->has_lat = 0;
    if (out->values_ok && seen[LS_ROLE_LATENCY]) {
        const ls_uc *v = p + at[LS_ROLE_LATENCY];
        size_t vl = len[LS_ROLE_LATENCY];
        if (!(vl == 1 && v[0] == '-')) {
            out->has_lat = 1;
            out->values_ok = ls_time(v, vl, &out->lat);
            out->lat *= prog->lat_scale;
        }
    }
    out->has_up = 0;
    if (out->values_ok && prog->upstream && seen[LS_ROLE_UPSTREAM])
        out->values_ok = ls_upstream(p + at[LS_ROLE_UPSTREAM], len[LS_ROLE_UPSTREAM], prog->up_scale, &out->has_up,
                                     &out->up);
    return LS_KEY;
}

/* Byte classes of a path: an id's bytes (digits, hex letters), and the bytes that end a segment ('/')
 * or the path ('?', '#') or that send the line to Python ('\n'). One load a byte: an id's bytes are
 * random digits and letters, on which a branch per byte (`||`, if/else) is mispredicted about every
 * other byte. */
enum { LS_P_DIGIT = 1, LS_P_HEX = 2, LS_P_SLASH = 4, LS_P_END = 8, LS_P_NL = 16 };
#define LS_P_D (LS_P_DIGIT | LS_P_HEX)
static const uint8_t ls_pclass[256] = {
    ['0'] = LS_P_D, ['1'] = LS_P_D, ['2'] = LS_P_D, ['3'] = LS_P_D, ['4'] = LS_P_D,
    ['5'] = LS_P_D, ['6'] = LS_P_D, ['7'] = LS_P_D, ['8'] = LS_P_D, ['9'] = LS_P_D,
    ['a'] = LS_P_HEX, ['b'] = LS_P_HEX, ['c'] = LS_P_HEX, ['d'] = LS_P_HEX, ['e'] = LS_P_HEX, ['f'] = LS_P_HEX,
    ['A'] = LS_P_HEX, ['B'] = LS_P_HEX, ['C'] = LS_P_HEX, ['D'] = LS_P_HEX, ['E'] = LS_P_HEX, ['F'] = LS_P_HEX,
    ['/'] = LS_P_SLASH, ['?'] = LS_P_END, ['#'] = LS_P_END, ['\n'] = LS_P_NL,
};
#undef LS_P_D

/* A 36-byte segment in the UUID layout (8-4-4-4-12 hex digits). */
static int ls_is_uuid(const ls_uc *s)
{
    unsigned ok = 1;
    for (size_t i = 0; i < 36; i++) {
        unsigned dash = i == 8 || i == 13 || i == 18 || i == 23;
        ok &= dash ? (unsigned)(s[i] == '-') : (unsigned)(ls_pclass[s[i]] >> 1) & 1u;
    }
    return (int)ok;
}

/* The path of a request target as route_of reads it (query and fragment cut), each segment that the
 * built-in id patterns replace (routes.py's _ID_SEGMENT: digits, a UUID, or 16+ hex characters with a
 * digit among them) written as `/:id` when `ids` and the target starts with '/', into `out`, which has
 * room for 2 * tlen bytes. Returns the path's length, or -1 when a segment holds a newline (`$` matches
 * before a final newline: Python decides). One pass: each segment's classes are gathered as it is read,
 * and the bytes between ids are copied in one piece. */
static ptrdiff_t ls_route(const ls_uc *t, size_t tlen, int ids, ls_uc *out)
{
    if (!ids || tlen == 0 || t[0] != '/') {
        size_t plen = tlen;
        for (size_t i = 0; i < tlen; i++) {
            if (t[i] == '?' || t[i] == '#') { plen = i; break; }
        }
        memcpy(out, t, plen);
        return (ptrdiff_t)plen;
    }
    size_t o = 0, copied = 0, seg = 1, i = 1;
    unsigned all = LS_P_DIGIT | LS_P_HEX, any = 0;  /* the classes every byte of the segment has; any has */
    for (;; i++) {
        unsigned c = i < tlen ? ls_pclass[t[i]] : LS_P_END;
        if (c & (LS_P_SLASH | LS_P_END)) {
            size_t n = i - seg;
            if (n > 0 && ((all & LS_P_DIGIT) || ((all & LS_P_HEX) && n >= 16 && (any & LS_P_DIGIT)) ||
                          (n == 36 && ls_is_uuid(t + seg)))) {
                memcpy(out + o, t + copied, seg - 1 - copied);  /* up to the segment's '/' */
                o += seg - 1 - copied;
                memcpy(out + o, "/:id", 4);
                o += 4;
                copied = i;
            }
            if (c & LS_P_END) break;
            seg = i + 1;
            all = LS_P_DIGIT | LS_P_HEX;
            any = 0;
            continue;
        }
        if (c & LS_P_NL) return -1;
        all &= c;
        any |= c;
    }
    memcpy(out + o, t + copied, i - copied);
    return (ptrdiff_t)(o + i - copied);
}

/* The path key of a request and status: what decides a request's labels, as aggregate.py's _path_key:
 * the method, the target without query and fragment (ids replaced when `ids`), the status, each with
 * its length. 0 when the request is not `METHOD target [protocol]` or the key would be too long. */
static int ls_path_key(const ls_uc *req, size_t reqlen, const ls_uc *st, size_t stlen, int ids,
                       ls_uc *out, size_t *outlen)
{
    const ls_uc *s1 = memchr(req, ' ', reqlen);
    if (s1 == NULL) return 0;
    size_t sp1 = (size_t)(s1 - req), tlen = reqlen - sp1 - 1;
    const ls_uc *target = s1 + 1, *s2 = memchr(target, ' ', tlen);
    if (s2 != NULL) {
        if (memchr(s2 + 1, ' ', (size_t)(req + reqlen - (s2 + 1))) != NULL) return 0;  /* a third word */
        tlen = (size_t)(s2 - target);
    }
    if (tlen == 0) return 0;  /* an empty target */
    if (sp1 > LS_KEY_MAX || tlen > LS_KEY_MAX || stlen > LS_KEY_MAX || sp1 + 2 * tlen + stlen > 3 * LS_KEY_MAX)
        return 0;  /* out has room for LS_PATH_KEY_MAX bytes */
    size_t o = 0;
    out[o++] = (ls_uc)(sp1 >> 8);
    out[o++] = (ls_uc)sp1;
    memcpy(out + o, req, sp1);
    o += sp1;
    ptrdiff_t path_len = ls_route(target, tlen, ids, out + o + 2);
    if (path_len < 0 || path_len > 0xffff) return 0;
    out[o++] = (ls_uc)(path_len >> 8);
    out[o++] = (ls_uc)path_len;
    o += (size_t)path_len;
    memcpy(out + o, st, stlen);
    o += stlen;
    *outlen = o;
    return 1;
}

/* SipHash-1-3 (the keyed hash CPython uses for str and bytes): hostile keys cannot be chosen to collide
 * without the per-process key. */
#define LS_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define LS_SIPROUND                                                                                     \
    do {                                                                                                \
        v0 += v1; v1 = LS_ROTL(v1, 13); v1 ^= v0; v0 = LS_ROTL(v0, 32);                                 \
        v2 += v3; v3 = LS_ROTL(v3, 16); v3 ^= v2;                                                       \
        v0 += v3; v3 = LS_ROTL(v3, 21); v3 ^= v0;                                                       \
        v2 += v1; v1 = LS_ROTL(v1, 17); v1 ^= v2; v2 = LS_ROTL(v2, 32);                                 \
    } while (0)

static uint64_t ls_siphash13(uint64_t k0, uint64_t k1, const ls_uc *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = ((uint64_t)len) << 56;
    size_t whole = len - (len % 8);
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m;
        memcpy(&m, in + i, 8);
        v3 ^= m;
        LS_SIPROUND;
        v0 ^= m;
    }
    const ls_uc *t = in + whole;
    switch (len % 8) {  /* the last bytes, little-endian, as the reference code loads them */
    case 7: b |= ((uint64_t)t[6]) << 48; /* fall through */
    case 6: b |= ((uint64_t)t[5]) << 40; /* fall through */
    case 5: b |= ((uint64_t)t[4]) << 32; /* fall through */
    case 4: b |= ((uint64_t)t[3]) << 24; /* fall through */
    case 3: b |= ((uint64_t)t[2]) << 16; /* fall through */
    case 2: b |= ((uint64_t)t[1]) << 8; /* fall through */
    case 1: b |= ((uint64_t)t[0]); break;
    default: break;
    }
    v3 ^= b;
    LS_SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    LS_SIPROUND;
    LS_SIPROUND;
    LS_SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

#endif
