/* libFuzzer target for the compiled core's scanners (_scan.h), built with AddressSanitizer and UBSan by
 * fuzz/run.py: every scanner on every input, each read checked to stay inside the line (ASan puts the
 * input in an exactly sized allocation), each span it returns checked to lie inside it. */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../logtaild/count/_scan.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
        (void)ls_siphash13(1, 2, line, n);
        free(line);
        if (!nl) break;
        start = end + 1;
    }
    return 0;
}
