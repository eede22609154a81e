/* libFuzzer target for the compiled core's scanners (_scan.h, _json.h), built with AddressSanitizer and UBSan by
 * fuzz/run.py: every scanner on every input, each read checked to stay inside the line (ASan puts the
 * input in an exactly sized allocation), each span it returns checked to lie inside it; and the input as
 * one chunk, walked line by line as scan_chunk walks a read buffer (walk_chunk). */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../logtaild/count/_json.h"

static void check_line(const ls_uc *p, size_t n, const ls_line *ln)
{
    assert(ln->key >= p && ln->key + ln->keylen <= p + n);
    assert(ln->keylen <= LS_KEY_MAX);
    if (ln->values_ok) {
        assert(ln->size < ((uint64_t)1 << 63));
        if (ln->has_lat) assert(ln->lat >= 0 && isfinite(ln->lat));
    }
}

static void path_key(const ls_uc *key, size_t len, ls_uc sep, size_t skip)
{
    static ls_uc out[LS_PATH_KEY_MAX];
    const ls_uc *at = memchr(key, sep, len);
    if (at == NULL || (size_t)(at - key) + skip > len) return;
    size_t split = (size_t)(at - key), outlen = 0;
    for (int ids = 0; ids <= 1; ids++) {
        if (ls_path_key(key, split, key + split + skip, len - split - skip, ids, out, &outlen))
            assert(outlen <= LS_PATH_KEY_MAX);
    }
}

/* an nginx log_format with upstream times, as logformat.py compiles it (kind, stop, role, literal) */
#define LIT(s) {LS_OP_LITERAL, 0, 0, (const ls_uc *)(s), sizeof(s) - 1}
static const ls_op nginx_ops[] = {
    {LS_OP_CLIENT, 0, 0, NULL, 0}, LIT(" - "), {LS_OP_HEAD, 0, 0, NULL, 0}, LIT(" ["),
    {LS_OP_BRACKETED, 0, 0, NULL, 0}, LIT("] \""), {LS_OP_QUOTED, LS_ROLE_REQUEST, 0, NULL, 0}, LIT("\" "),
    {LS_OP_UNTIL, LS_ROLE_STATUS, ' ', NULL, 0}, LIT(" "), {LS_OP_UNTIL, LS_ROLE_BYTES, ' ', NULL, 0}, LIT(" \""),
    {LS_OP_QUOTED, 0, 0, NULL, 0}, LIT("\" \""), {LS_OP_QUOTED, 0, 0, NULL, 0}, LIT("\" "),
    {LS_OP_UNTIL, LS_ROLE_LATENCY, ' ', NULL, 0}, LIT(" "), {LS_OP_TIMES, LS_ROLE_UPSTREAM, 0, NULL, 0},
    LIT(" "), {LS_OP_LIST, 0, 0, NULL, 0}, LIT(" "), {LS_OP_TIME_LOCAL, 0, 0, NULL, 0}, LIT(" "),
    {LS_OP_APACHE_TIME, 0, 0, NULL, 0}, LIT(" "), {LS_OP_NONSPACE, 0, 0, NULL, 0},
};

/* formats.py's default JSON keys (role, rank, name), and a remapping where one key serves two roles */
#define NAME(role, rank, s) {role, rank, (const ls_uc *)(s), sizeof(s) - 1}
static const lj_name json_default[] = {
    NAME(LJ_ROUTE, 0, "path"), NAME(LJ_ROUTE, 1, "route"), NAME(LJ_ROUTE, 2, "uri"), NAME(LJ_REQUEST, 0, "request"),
    NAME(LJ_METHOD, 0, "method"), NAME(LJ_STATUS, 0, "status_code"), NAME(LJ_STATUS, 1, "status"),
    NAME(LJ_SERVICE, 0, "service"), NAME(LJ_BYTES, 0, "bytes"), NAME(LJ_BYTES, 1, "body_bytes_sent"),
    NAME(LJ_LATENCY, 0, "latency_ms"), NAME(LJ_LATENCY, 1, "duration_ms"),
};
static const lj_name json_remapped[] = {
    NAME(LJ_ROUTE, 0, "request"), NAME(LJ_REQUEST, 0, "request"), NAME(LJ_STATUS, 0, "code"),
    NAME(LJ_BYTES, 0, "code"), NAME(LJ_LATENCY, 0, "t"), NAME(LJ_SERVICE, 0, "\xc3\xa9"),
};

/* the JSON scanner: its key within LS_KEY_MAX and in the layout lj_fields reads back, its path key
 * within LS_PATH_KEY_MAX, its values in range */
static void check_json(const ls_uc *line, size_t n)
{
    static ls_uc key[LS_KEY_MAX], out[LS_PATH_KEY_MAX];
    static lj_spec specs[2];
    specs[0] = (lj_spec){json_default, sizeof json_default / sizeof json_default[0], 1.0, {0}};
    specs[1] = (lj_spec){json_remapped, sizeof json_remapped / sizeof json_remapped[0], 1000.0, {0}};
    for (int s = 0; s < 2; s++) {
        lj_index(&specs[s]);
        ls_line ln;
        memset(&ln, 0, sizeof ln);
        if (lj_scan(line, n, &specs[s], key, &ln) != LS_KEY) continue;
        lj_field fields[LJ_KEYED];
        assert(ln.key == key && ln.keylen <= LS_KEY_MAX && lj_fields(key, ln.keylen, fields));
        if (ln.values_ok) {
            assert(ln.size < ((uint64_t)1 << 63));
            if (ln.has_lat) assert(ln.lat >= 0 && isfinite(ln.lat));
        }
        for (int ids = 0; ids <= 1; ids++) {
            size_t outlen = 0;
            if (lj_path_key(key, ln.keylen, ids, out, &outlen)) assert(outlen <= LS_PATH_KEY_MAX);
        }
    }
}

/* The input as one chunk, in its own exact allocation, walked as scan_chunk walks a read buffer: every line
 * inside [start, end), the lines and their newlines tiling the span, every scanner bounded by its line. */
static void walk_chunk(const uint8_t *data, size_t size)
{
    ls_uc *chunk = malloc(size ? size : 1);
    if (chunk == NULL) return;
    memcpy(chunk, data, size);
    size_t start = size ? data[0] % (size + 1) : 0, at = start, lines = 0;
    while (at < size) {
        size_t next, len = ls_next_line(chunk, size, at, &next);
        assert(at + len <= size && next > at && next <= size);
        assert(next == size || (next == at + len + 1 && chunk[at + len] == '\n'));
        assert(memchr(chunk + at, '\n', len) == NULL);
        ls_line ln;
        memset(&ln, 0, sizeof ln);
        if (ls_scan_tsv(chunk + at, len, &ln) == LS_KEY) check_line(chunk + at, len, &ln);
        /* scan_chunk's tsv split: the same line end as ls_next_line, the same tabs as the split of the line */
        ls_tabs by_chunk, by_line;
        assert(ls_tsv_split(chunk + at, size - at, 1, &by_chunk) == len);
        ls_tsv_split(chunk + at, len, 0, &by_line);
        assert(by_chunk.n == by_line.n);
        for (int t = 0; t < by_line.n && t < 5; t++) assert(by_chunk.at[t] == by_line.at[t] && chunk[at + by_line.at[t]] == '\t');
        size_t tabs = 0;
        for (size_t i = 0; i < len; i++) tabs += chunk[at + i] == '\t';
        assert((size_t)by_line.n == tabs);
        lines++;
        at = next;
    }
    assert(at == size || start == size);
    assert(lines <= size - start);
    free(chunk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    walk_chunk(data, size);
    static ls_uc key[2 + 2 * LS_KEY_MAX];
    const size_t nops[] = {20, sizeof nginx_ops / sizeof nginx_ops[0]};
    /* each input line in its own exact allocation, so a read past the line end is an ASan report */
    size_t start = 0;
    while (start <= size) {
        const uint8_t *nl = memchr(data + start, '\n', size - start);
        size_t end = nl ? (size_t)(nl - data) : size;
        size_t n = end - start;
        ls_uc *line = malloc(n ? n : 1);
        if (line == NULL) return 0;
        memcpy(line, data + start, n);
        ls_line ln;
        memset(&ln, 0, sizeof ln);
        if (ls_scan_tsv(line, n, &ln) == LS_KEY) {
            check_line(line, n, &ln);
            path_key(ln.key, ln.keylen, '\t', 1);
        }
        const double scales[] = {-1.0, 1000.0, 1.0, 0.001};
        for (size_t s = 0; s < 4; s++) {
            memset(&ln, 0, sizeof ln);
            if (ls_scan_combined(line, n, scales[s], &ln) == LS_KEY) {
                check_line(line, n, &ln);
                path_key(ln.key, ln.keylen, '"', 2);
            }
        }
        for (size_t v = 0; v < 2; v++) {
            ls_program prog = {nginx_ops, nops[v], 1000.0, 1000.0, (int)v, 1};
            memset(&ln, 0, sizeof ln);
            if (ls_scan_program(line, n, &prog, key, &ln) == LS_KEY) {
                assert(ln.key == key && ln.keylen <= LS_KEY_MAX);
                if (ln.values_ok && ln.has_up) assert(ln.up >= 0 && isfinite(ln.up));
                size_t rl = ((size_t)key[0] << 8) | key[1], outlen = 0;
                static ls_uc out[LS_PATH_KEY_MAX];
                assert(rl + 2 <= ln.keylen);
                if (ls_path_key(key + 2, rl, key + 2 + rl, ln.keylen - 2 - rl, 1, out, &outlen))
                    assert(outlen <= LS_PATH_KEY_MAX);
            }
        }
        check_json(line, n);
        (void)ls_siphash13(1, 2, line, n);
        free(line);
        if (!nl) break;
        start = end + 1;
    }
    return 0;
}
