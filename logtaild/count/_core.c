/* logtaild.count._core: the compiled counting core (see core.py, its one importer).
 *
 * A `Counter` belongs to one Aggregator. It holds a bounded table from raw keys (the bytes of a line that
 * decide its labels) and path keys (method, path with ids replaced, status) to the Python slot lists
 * Python chose for them. `scan(lines, start)` counts lines whose key the table knows into per-entry
 * deltas and stops at the first line it cannot count, returning its index and raw key (None when the
 * line is outside the scanner's exact subset): Python decides that line and `bind`s the key to the slot
 * it chose. `scan_chunk(data, start, end)` does the same on a read buffer of whole lines (the tailer's
 * Chunk), without a Python object per line: it returns the offset of the line it stopped at and how many
 * lines it counted. Both go through one per-line step, scan_step. `flush()` adds the deltas into the slot
 * lists, so slots.py's layout and every reader of it stay as they are. The table holds at most
 * COUNTER_ENTRIES entries and COUNTER_KEY_BYTES key bytes; when either is full it is flushed and emptied
 * (the keys still in use come back through Python at once).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "_scan.h"
#include "_json.h"

#define COUNTER_ENTRIES 65536
#define COUNTER_KEY_BYTES (4u << 20)
#define COUNTER_MAX_BUCKETS 256
/* slots.py's layout: [count, bytes, latency_sum_ms, buckets...] */
#define BUCKETS_AT 3

enum { KIND_RAW = 0, KIND_PATH = 1 };
enum { FORMAT_TSV = 0, FORMAT_COMBINED = 1, FORMAT_PROGRAM = 2, FORMAT_JSON = 3 };

static uint64_t hash_k0, hash_k1;

typedef struct {
    uint64_t hash;
    uint32_t keyoff;
    uint16_t keylen;
    uint8_t kind;
    uint32_t sink;   /* the sink of the slot this key counts into */
} entry;

/* One per distinct slot list: the keys of one series (raw keys, path keys) share its delta, so a flush
 * costs once per series touched, not once per key. */
typedef struct {
    PyObject *slot;  /* owned reference to the Python slot list */
    int32_t delta;   /* index into the delta pool, -1 when untouched since the last flush */
} sink;

typedef struct {
    int64_t count;
    uint64_t bytes;
    int64_t lat_n;
    double lat_sum;
    int64_t up_n;
    double up_sum;
    int64_t buckets[];  /* the request's buckets, then (formats with upstream times) the upstream's */
} delta;

#define NATIVE_ZERO INT32_MIN  /* the zero bucket's key among a batch's native counts */

typedef struct {
    uint32_t sink;
    int32_t index;
    uint32_t up;    /* 0 request, 1 upstream; 2 marks a used cell */
    int64_t n;
} natcell;

typedef struct {
    PyObject_HEAD
    int format;
    int ids;
    double lat_scale;
    ls_program program;  /* FORMAT_PROGRAM: the compiled format string */
    ls_op *ops;
    PyObject *literals;  /* owns the literals' bytes the ops point into (FORMAT_JSON: the key names') */
    lj_spec json;        /* FORMAT_JSON: the configured keys (json_names) and the latency unit */
    lj_name json_names[LJ_MAX_NAMES];
    int native;          /* the file has native histograms: bucket counts per slot and batch, see native_add */
    int nschema;         /* their schema, zero threshold and (schema > 0) native.mantissa_bounds */
    double nzero;
    double *mant;
    int nmant;
    natcell *cells;      /* this batch's (slot, request or upstream, bucket) -> count, open addressing */
    uint32_t cells_mask, ncells;
    uint32_t *cells_used;
    PyObject *pending;   /* native counts taken out before the table was emptied, for the next flush */
    Py_ssize_t nbounds;
    double *bounds;
    entry *entries;
    uint32_t nentries, entries_cap;
    uint32_t *index;  /* open addressing: entry number + 1, 0 empty */
    uint32_t index_mask;
    ls_uc *keys;
    size_t keys_used, keys_cap;
    unsigned char *pool;  /* deltas of the entries touched since the last flush */
    size_t pool_stride;
    uint32_t pool_used, pool_cap;
    uint32_t *touched;  /* sinks with a delta, in the order they were touched */
    sink *sinks;
    uint32_t nsinks, sinks_cap;
    uint32_t *sink_index;  /* open addressing on the slot's address: sink number + 1, 0 empty */
    uint32_t sink_mask;
    uint64_t counted, path_hits, clears, evictions;
} Counter;

static size_t delta_size(Py_ssize_t nbounds) { return sizeof(delta) + 2 * (size_t)(nbounds + 1) * sizeof(int64_t); }

static delta *pool_at(Counter *self, int32_t i) { return (delta *)(self->pool + (size_t)i * self->pool_stride); }

static uint64_t key_hash(int kind, const ls_uc *key, size_t len)
{
    return ls_siphash13(hash_k0 ^ (uint64_t)kind, hash_k1, key, len);
}

static entry *lookup(Counter *self, int kind, const ls_uc *key, size_t len, uint64_t h)
{
    if (self->index == NULL) return NULL;
    uint32_t i = (uint32_t)h & self->index_mask;
    for (;;) {
        uint32_t slot = self->index[i];
        if (slot == 0) return NULL;
        entry *e = &self->entries[slot - 1];
        if (e->hash == h && e->kind == kind && e->keylen == len && memcmp(self->keys + e->keyoff, key, len) == 0)
            return e;
        i = (i + 1) & self->index_mask;
    }
}

/* Add one sink's delta into its slot list. */
static int flush_sink(Counter *self, sink *e)
{
    delta *d = pool_at(self, e->delta);
    PyObject *slot = e->slot;
    Py_ssize_t need = BUCKETS_AT + self->nbounds + 1, up_at = need;
    if (self->program.upstream) need += 1 + self->nbounds + 1;  /* slots.py's upstream part */
    if (!PyList_Check(slot) || PyList_GET_SIZE(slot) < need) {
        PyErr_SetString(PyExc_RuntimeError, "a bound slot is no longer a slot list");
        return -1;
    }
    struct { Py_ssize_t at; PyObject *value; } adds[4 + 2 * COUNTER_MAX_BUCKETS + 2];
    int nadds = 0;
    adds[nadds].at = 0;
    adds[nadds++].value = PyLong_FromLongLong(d->count);
    adds[nadds].at = 1;
    adds[nadds++].value = PyLong_FromUnsignedLongLong(d->bytes);
    if (d->lat_n) {
        adds[nadds].at = 2;
        adds[nadds++].value = PyFloat_FromDouble(d->lat_sum);
        for (Py_ssize_t b = 0; b <= self->nbounds; b++) {
            if (d->buckets[b]) {
                adds[nadds].at = BUCKETS_AT + b;
                adds[nadds++].value = PyLong_FromLongLong(d->buckets[b]);
            }
        }
    }
    if (d->up_n) {
        adds[nadds].at = up_at;
        adds[nadds++].value = PyFloat_FromDouble(d->up_sum);
        for (Py_ssize_t b = 0; b <= self->nbounds; b++) {
            if (d->buckets[self->nbounds + 1 + b]) {
                adds[nadds].at = up_at + 1 + b;
                adds[nadds++].value = PyLong_FromLongLong(d->buckets[self->nbounds + 1 + b]);
            }
        }
    }
    int rc = 0;
    for (int k = 0; k < nadds; k++) {
        PyObject *value = adds[k].value;
        if (value == NULL || rc < 0) {
            rc = -1;
            Py_XDECREF(value);
            continue;
        }
        PyObject *item = PyList_GET_ITEM(slot, adds[k].at), *sum = NULL;
        if (PyFloat_CheckExact(item) && PyFloat_CheckExact(value)) {  /* float + float, as PyNumber_Add */
            sum = PyFloat_FromDouble(PyFloat_AS_DOUBLE(item) + PyFloat_AS_DOUBLE(value));
        } else if (PyLong_CheckExact(item) && PyLong_CheckExact(value)) {
            int overflow = 0;
            long long a = PyLong_AsLongLongAndOverflow(item, &overflow), b, c;
            if (!overflow) b = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (!overflow && !__builtin_add_overflow(a, b, &c)) sum = PyLong_FromLongLong(c);
            else sum = PyNumber_Add(item, value);  /* beyond 64 bits: Python's exact integers */
        } else {
            sum = PyNumber_Add(item, value);
        }
        Py_DECREF(value);
        if (sum == NULL) {
            rc = -1;
            continue;
        }
        PyList_SetItem(slot, adds[k].at, sum);  /* steals sum, releases the old value */
    }
    memset(d, 0, self->pool_stride);
    return rc;
}

static int flush_all(Counter *self)
{
    int rc = 0;
    for (uint32_t t = 0; t < self->pool_used; t++) {
        sink *e = &self->sinks[self->touched[t]];
        if (flush_sink(self, e) < 0) rc = -1;
        e->delta = -1;
    }
    self->pool_used = 0;
    return rc;
}

/* Empty the table (after a flush): the slot references are released, the memory kept. */
static void clear_table(Counter *self)
{
    for (uint32_t i = 0; i < self->nsinks; i++) Py_CLEAR(self->sinks[i].slot);
    self->nsinks = 0;
    self->nentries = 0;
    self->keys_used = 0;
    self->pool_used = 0;
    if (self->index) memset(self->index, 0, ((size_t)self->index_mask + 1) * sizeof(uint32_t));
    if (self->sink_index) memset(self->sink_index, 0, ((size_t)self->sink_mask + 1) * sizeof(uint32_t));
    self->clears++;
}

static int grow_index(Counter *self, uint32_t cap);

/* Drop the raw keys, keep the path keys and the slots (no flush needed: deltas belong to slots). Raw
 * keys are learned again from path hits at the next lines; path keys only come from Python's verdicts. */
static void evict_raw(Counter *self)
{
    uint32_t kept = 0;
    size_t used = 0;
    for (uint32_t n = 0; n < self->nentries; n++) {
        entry e = self->entries[n];
        if (e.kind == KIND_RAW) continue;
        memmove(self->keys + used, self->keys + e.keyoff, e.keylen);  /* offsets only go down */
        e.keyoff = (uint32_t)used;
        used += e.keylen;
        self->entries[kept++] = e;
    }
    self->nentries = kept;
    self->keys_used = used;
    memset(self->index, 0, ((size_t)self->index_mask + 1) * sizeof(uint32_t));
    for (uint32_t n = 0; n < kept; n++) {
        uint32_t i = (uint32_t)self->entries[n].hash & self->index_mask;
        while (self->index[i]) i = (i + 1) & self->index_mask;
        self->index[i] = n + 1;
    }
    self->evictions++;
}

/* Room for `entries` more entries and `bytes` more key bytes: raw keys go first, then everything (after
 * a flush, so no count is lost). */
static int stash_native(Counter *self);

static int make_room(Counter *self, uint32_t entries, size_t bytes)
{
    if (self->nentries + entries <= COUNTER_ENTRIES && self->keys_used + bytes <= COUNTER_KEY_BYTES) return 0;
    if (self->index) evict_raw(self);
    if (self->nentries + entries <= COUNTER_ENTRIES && self->keys_used + bytes <= COUNTER_KEY_BYTES) return 0;
    if (flush_all(self) < 0 || stash_native(self) < 0) return -1;
    clear_table(self);
    return 0;
}

static int grow_index(Counter *self, uint32_t cap)
{
    uint32_t *index = PyMem_Calloc(cap, sizeof(uint32_t));
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t n = 0; n < self->nentries; n++) {
        uint32_t i = (uint32_t)self->entries[n].hash & (cap - 1);
        while (index[i]) i = (i + 1) & (cap - 1);
        index[i] = n + 1;
    }
    PyMem_Free(self->index);
    self->index = index;
    self->index_mask = cap - 1;
    return 0;
}

static uint32_t ptr_hash(PyObject *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

/* The sink of a slot list, made on first use (bind has made room: at most one per entry). */
static int32_t sink_of(Counter *self, PyObject *slot)
{
    if (self->sink_index == NULL || (size_t)(self->nsinks + 1) * 2 > (size_t)self->sink_mask + 1) {
        uint32_t cap = self->sink_index ? (self->sink_mask + 1) * 2 : 256;
        uint32_t *index = PyMem_Calloc(cap, sizeof(uint32_t));
        if (index == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (uint32_t n = 0; n < self->nsinks; n++) {
            uint32_t i = ptr_hash(self->sinks[n].slot) & (cap - 1);
            while (index[i]) i = (i + 1) & (cap - 1);
            index[i] = n + 1;
        }
        PyMem_Free(self->sink_index);
        self->sink_index = index;
        self->sink_mask = cap - 1;
    }
    uint32_t i = ptr_hash(slot) & self->sink_mask;
    while (self->sink_index[i]) {
        uint32_t n = self->sink_index[i] - 1;
        if (self->sinks[n].slot == slot) return (int32_t)n;
        i = (i + 1) & self->sink_mask;
    }
    if (self->nsinks == self->sinks_cap) {
        uint32_t cap = self->sinks_cap ? self->sinks_cap * 2 : 256;
        sink *sinks = PyMem_Realloc(self->sinks, cap * sizeof(sink));
        uint32_t *touched = PyMem_Realloc(self->touched, cap * sizeof(uint32_t));
        if (sinks) self->sinks = sinks;
        if (touched) self->touched = touched;
        if (!sinks || !touched) {
            PyErr_NoMemory();
            return -1;
        }
        self->sinks_cap = cap;
    }
    sink *k = &self->sinks[self->nsinks];
    Py_INCREF(slot);
    k->slot = slot;
    k->delta = -1;
    self->sink_index[i] = ++self->nsinks;
    return (int32_t)(self->nsinks - 1);
}

/* A new entry for a key the table lacks (bind has made room). */
static entry *insert(Counter *self, int kind, const ls_uc *key, size_t len, uint32_t sink_no)
{
    if (len > 0xffff) return NULL;
    if (self->index == NULL || (size_t)(self->nentries + 1) * 2 > (size_t)self->index_mask + 1) {
        if (grow_index(self, self->index ? (self->index_mask + 1) * 2 : 1024) < 0) return NULL;
    }
    if (self->nentries == self->entries_cap) {
        uint32_t cap = self->entries_cap ? self->entries_cap * 2 : 256;
        entry *entries = PyMem_Realloc(self->entries, cap * sizeof(entry));
        if (entries == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        self->entries = entries;
        self->entries_cap = cap;
    }
    if (self->keys_used + len > self->keys_cap) {
        size_t cap = self->keys_cap ? self->keys_cap : 65536;
        while (cap < self->keys_used + len) cap *= 2;
        ls_uc *keys = PyMem_Realloc(self->keys, cap);
        if (keys == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        self->keys = keys;
        self->keys_cap = cap;
    }
    uint64_t h = key_hash(kind, key, len);
    entry *e = &self->entries[self->nentries];
    e->hash = h;
    e->keyoff = (uint32_t)self->keys_used;
    e->keylen = (uint16_t)len;
    e->kind = (uint8_t)kind;
    e->sink = sink_no;
    memcpy(self->keys + self->keys_used, key, len);
    self->keys_used += len;
    uint32_t i = (uint32_t)h & self->index_mask;
    while (self->index[i]) i = (i + 1) & self->index_mask;
    self->index[i] = ++self->nentries;
    return e;
}

static delta *touch(Counter *self, sink *e)
{
    if (e->delta >= 0) return pool_at(self, e->delta);
    if (self->pool_used == self->pool_cap) {
        uint32_t cap = self->pool_cap ? self->pool_cap * 2 : 64;
        unsigned char *pool = PyMem_Realloc(self->pool, (size_t)cap * self->pool_stride);
        if (pool == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(pool + (size_t)self->pool_cap * self->pool_stride, 0, (size_t)(cap - self->pool_cap) * self->pool_stride);
        self->pool = pool;
        self->pool_cap = cap;
    }
    e->delta = (int32_t)self->pool_used;
    self->touched[self->pool_used++] = (uint32_t)(e - self->sinks);
    return pool_at(self, e->delta);
}

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* native.bucket_index, bit for bit: frexp, then the mantissa table (schema > 0) or the exponent. */
static int32_t native_index(const Counter *self, double value_s)
{
    int exp;
    double frac = frexp(value_s, &exp);
    if (self->nschema > 0) {
        int lo = 0, hi = self->nmant;
        while (lo < hi) {  /* bisect_left */
            int mid = (lo + hi) / 2;
            if (self->mant[mid] < frac) lo = mid + 1; else hi = mid;
        }
        return (int32_t)(lo + (int64_t)(exp - 1) * self->nmant);
    }
    int64_t key = frac == 0.5 ? exp - 1 : exp, width = (int64_t)1 << -self->nschema;
    return (int32_t)floor_div(key + width - 1, width);
}

/* Count one latency (ms) into this batch's native counts of a slot. */
static int native_add(Counter *self, uint32_t sink_no, uint32_t up, double ms)
{
    double value_s = ms / 1000.0;
    int32_t index = value_s <= self->nzero ? NATIVE_ZERO : native_index(self, value_s);
    if (self->cells == NULL || (self->ncells + 1) * 2 > self->cells_mask + 1) {
        uint32_t cap = self->cells ? (self->cells_mask + 1) * 2 : 4096;
        natcell *cells = PyMem_Calloc(cap, sizeof(natcell));
        uint32_t *used = PyMem_Malloc((size_t)cap / 2 * sizeof(uint32_t));
        if (cells == NULL || used == NULL) {
            PyMem_Free(cells);
            PyMem_Free(used);
            PyErr_NoMemory();
            return -1;
        }
        for (uint32_t u = 0; u < self->ncells; u++) {
            natcell c = self->cells[self->cells_used[u]];
            uint32_t h = (uint32_t)ptr_hash((PyObject *)(uintptr_t)(((uint64_t)c.sink << 33) ^ ((uint64_t)c.up << 32) ^
                                                                   (uint32_t)c.index)) & (cap - 1);
            while (cells[h].up) h = (h + 1) & (cap - 1);
            cells[h] = c;
            used[u] = h;
        }
        PyMem_Free(self->cells);
        PyMem_Free(self->cells_used);
        self->cells = cells;
        self->cells_used = used;
        self->cells_mask = cap - 1;
    }
    uint32_t h = (uint32_t)ptr_hash((PyObject *)(uintptr_t)(((uint64_t)sink_no << 33) ^ ((uint64_t)(up + 1) << 32) ^
                                                           (uint32_t)index)) & self->cells_mask;
    for (;;) {
        natcell *c = &self->cells[h];
        if (!c->up) {
            *c = (natcell){.sink = sink_no, .index = index, .up = up + 1, .n = 1};
            self->cells_used[self->ncells++] = h;
            return 0;
        }
        if (c->sink == sink_no && c->index == index && c->up == up + 1) {
            c->n++;
            return 0;
        }
        h = (h + 1) & self->cells_mask;
    }
}

/* Count one line into its entry's delta; -1 with an exception set. */
static int count_line(Counter *self, entry *en, const ls_line *ln)
{
    sink *e = &self->sinks[en->sink];
    delta *d = touch(self, e);
    if (d == NULL) return -1;
    uint64_t bytes;
    if (d->count == INT64_MAX || __builtin_add_overflow(d->bytes, ln->size, &bytes)) {
        if (flush_sink(self, e) < 0) return -1;  /* the delta restarts from zero, the slot holds the sum */
        bytes = ln->size;
    }
    d->count++;
    d->bytes = bytes;
    if (ln->has_lat) {
        Py_ssize_t b = 0;
        while (b < self->nbounds && self->bounds[b] < ln->lat) b++;  /* bisect_left */
        d->lat_n++;
        d->lat_sum += ln->lat;
        d->buckets[b]++;
    }
    if (self->native) {  /* handed to each histogram's add_counts at the flush */
        if (ln->has_lat && native_add(self, en->sink, 0, ln->lat) < 0) return -1;
        if (ln->has_up && native_add(self, en->sink, 1, ln->up) < 0) return -1;
    }
    if (ln->has_up) {
        Py_ssize_t b = 0;
        while (b < self->nbounds && self->bounds[b] < ln->up) b++;
        d->up_n++;
        d->up_sum += ln->up;
        d->buckets[self->nbounds + 1 + b]++;
    }
    self->counted++;
    return 0;
}

/* `tabs`: a tsv line's tabs, found as scan_chunk split the line (NULL: a line Python split). */
static int scan_one(Counter *self, const ls_uc *p, size_t n, const ls_tabs *tabs, ls_line *ln, ls_uc *keybuf)
{
    switch (self->format) {
    case FORMAT_TSV: return tabs ? ls_scan_tsv_tabs(p, n, tabs, ln) : ls_scan_tsv(p, n, ln);
    case FORMAT_COMBINED: return ls_scan_combined(p, n, self->lat_scale, ln);
    case FORMAT_JSON: return lj_scan(p, n, &self->json, keybuf, ln);
    default: return ls_scan_program(p, n, &self->program, keybuf, ln);
    }
}

/* A raw key's request and status (each format's key layout), for its path key; 0 when it has none. */
static int split_key(Counter *self, const ls_uc *key, size_t len, size_t *req_len, const ls_uc **st, size_t *st_len)
{
    if (self->format == FORMAT_PROGRAM) {
        if (len < 2) return 0;
        size_t rl = ((size_t)key[0] << 8) | key[1];
        if (rl > len - 2) return 0;
        *req_len = rl;
        *st = key + 2 + rl;
        *st_len = len - 2 - rl;
        return 2;  /* the request starts after its length */
    }
    const ls_uc *sep = memchr(key, self->format == FORMAT_TSV ? '\t' : '"', len);
    size_t skip = self->format == FORMAT_TSV ? 1 : 2;
    if (sep == NULL || (size_t)(sep - key) + skip > len) return 0;
    *req_len = (size_t)(sep - key);
    *st = sep + skip;
    *st_len = len - *req_len - skip;
    return 1;
}

/* The path key of a raw key (each format's layout), into `out` (LS_PATH_KEY_MAX bytes); 0 when it has none. */
static int path_key_of(Counter *self, const ls_uc *key, size_t len, ls_uc *out, size_t *outlen)
{
    if (self->format == FORMAT_JSON) return lj_path_key(key, len, self->ids, out, outlen);
    size_t rl, sl;
    const ls_uc *st;
    int from = split_key(self, key, len, &rl, &st, &sl);
    return from && ls_path_key(key + (from == 2 ? 2 : 0), rl, st, sl, self->ids, out, outlen);
}

/* One line of a scan: counted when the table knows its raw key (or its path key). Returns 1 counted, 0 not
 * (then *key and *keylen are the raw key to bind, or *key is NULL: the line is outside the scanner's
 * exact subset and Python alone decides it), -1 with an exception set. `keybuf` holds a format program's
 * key (2 + 2 * LS_KEY_MAX bytes), `pathkey` the path key (LS_PATH_KEY_MAX). The one per-line step of
 * `scan` and `scan_chunk`: a format's scanner is chosen in scan_one. A raw key found through its path key
 * is not learned: on the bench log (520k distinct raw keys in 5M lines) learning them cost more (inserts,
 * evictions, a table past the caches) than the id normalization it saves. */
static int scan_step(Counter *self, const ls_uc *p, size_t n, const ls_tabs *tabs, ls_uc *keybuf, ls_uc *pathkey,
                     const ls_uc **key, size_t *keylen)
{
    ls_line ln;
    memset(&ln, 0, sizeof ln);
    *key = NULL;
    if (scan_one(self, p, n, tabs, &ln, keybuf) != LS_KEY) return 0;
    entry *e = NULL;
    if (ln.values_ok) {
        e = lookup(self, KIND_RAW, ln.key, ln.keylen, key_hash(KIND_RAW, ln.key, ln.keylen));
        size_t pklen;
        if (e == NULL && path_key_of(self, ln.key, ln.keylen, pathkey, &pklen))
            e = lookup(self, KIND_PATH, pathkey, pklen, key_hash(KIND_PATH, pathkey, pklen));
    }
    if (e == NULL) {
        *key = ln.key;
        *keylen = ln.keylen;
        return 0;
    }
    if (e->kind == KIND_PATH) self->path_hits++;  /* not learned as a raw key: see above */
    return count_line(self, e, &ln) < 0 ? -1 : 1;
}

/* (where a scan stopped, the raw key of the line there or None) */
static PyObject *stopped_at(Py_ssize_t at, const ls_uc *key, size_t keylen)
{
    if (key == NULL) return Py_BuildValue("(nO)", at, Py_None);
    return Py_BuildValue("(ny#)", at, (const char *)key, (Py_ssize_t)keylen);
}

/* Counter.scan(lines, start) -> (index, raw key or None): counts from `start` to the first line it cannot
 * count (len(lines) when it counted them all). */
static PyObject *Counter_scan(Counter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan(lines: list[bytes], start: int)");
        return NULL;
    }
    PyObject *lines = args[0];
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0) i = 0;
    ls_uc pathkey[LS_PATH_KEY_MAX], keybuf[2 + 2 * LS_KEY_MAX];
    for (; i < PyList_GET_SIZE(lines); i++) {
        PyObject *item = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "lines must be bytes");
            return NULL;
        }
        const ls_uc *key;
        size_t keylen = 0;
        int rc = scan_step(self, (const ls_uc *)PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item), NULL,
                           keybuf, pathkey, &key, &keylen);
        if (rc < 0) return NULL;
        if (rc == 0) return stopped_at(i, key, keylen);
    }
    return Py_BuildValue("(nO)", i, Py_None);
}

/* Counter.scan_chunk(data, start, end) -> (offset, raw key or None, lines counted): the lines of
 * data[start:end] (each up to its newline; a chunk ends with one) counted from `start` to the first line it
 * cannot count; the offset is that line's start (`end` when it counted them all), and the count is of the
 * lines before it, so Python needs no pass of its own to count a chunk's lines. Python makes a bytes
 * object only for the line it stopped at, and goes on after that line's newline. start and end are
 * clamped to the buffer, and every line is bounded by `end` (ls_next_line). */
static PyObject *Counter_scan_chunk(Counter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan_chunk(data: bytes, start: int, end: int)");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), end = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || end == -1) && PyErr_Occurred()) return NULL;
    if (end < 0 || end > size) end = size;
    if (start < 0) start = 0;
    if (start > end) start = end;
    const ls_uc *base = (const ls_uc *)PyBytes_AS_STRING(args[0]);
    ls_uc pathkey[LS_PATH_KEY_MAX], keybuf[2 + 2 * LS_KEY_MAX];
    size_t at = (size_t)start, stop = (size_t)end;
    Py_ssize_t counted = 0;
    int tsv = self->format == FORMAT_TSV;
    ls_tabs tabs;
    while (at < stop) {
        size_t next, len;
        if (tsv) {  /* the line's end and its tabs in one pass */
            len = ls_tsv_split(base + at, stop - at, 1, &tabs);
            next = at + len < stop ? at + len + 1 : stop;
        } else {
            len = ls_next_line(base, stop, at, &next);
        }
        const ls_uc *key;
        size_t keylen = 0;
        int rc = scan_step(self, base + at, len, tsv ? &tabs : NULL, keybuf, pathkey, &key, &keylen);
        if (rc < 0) return NULL;
        if (rc == 0) {
            if (key == NULL) return Py_BuildValue("(nOn)", (Py_ssize_t)at, Py_None, counted);
            return Py_BuildValue("(ny#n)", (Py_ssize_t)at, (const char *)key, (Py_ssize_t)keylen, counted);
        }
        counted++;
        at = next;
    }
    return Py_BuildValue("(nOn)", (Py_ssize_t)at, Py_None, counted);
}

/* Counter.bind(key, slot): the raw key's (and its path key's) lines count into `slot` from now on. */
static PyObject *Counter_bind(Counter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind(key: bytes, slot: list)");
        return NULL;
    }
    PyObject *slot = args[1];
    if (PyList_GET_SIZE(slot) < BUCKETS_AT + (self->nbounds + 1) * (self->program.upstream ? 2 : 1) +
                                    (self->program.upstream ? 1 : 0)) {
        PyErr_SetString(PyExc_ValueError, "the slot is narrower than the bounds");
        return NULL;
    }
    const ls_uc *key = (const ls_uc *)PyBytes_AS_STRING(args[0]);
    size_t len = (size_t)PyBytes_GET_SIZE(args[0]);
    if (len > LS_KEY_MAX) Py_RETURN_NONE;  /* not kept, as the Python caches keep no longer keys */
    size_t rl, sl;
    const ls_uc *st;
    lj_field fields[LJ_KEYED];
    if (self->format == FORMAT_JSON ? !lj_fields(key, len, fields) : !split_key(self, key, len, &rl, &st, &sl)) {
        PyErr_SetString(PyExc_ValueError, "not a raw key of this format");
        return NULL;
    }
    if (make_room(self, 2, len + LS_PATH_KEY_MAX) < 0) return NULL;
    int32_t sink_no = sink_of(self, slot);
    if (sink_no < 0) return NULL;
    for (int kind = KIND_RAW; kind <= KIND_PATH; kind++) {
        ls_uc pathkey[LS_PATH_KEY_MAX];
        const ls_uc *k = key;
        size_t klen = len;
        if (kind == KIND_PATH) {
            if (!path_key_of(self, key, len, pathkey, &klen)) break;
            k = pathkey;
        }
        entry *e = lookup(self, kind, k, klen, key_hash(kind, k, klen));
        if (e == NULL) {
            if (insert(self, kind, k, klen, (uint32_t)sink_no) == NULL) return NULL;
        } else {
            e->sink = (uint32_t)sink_no;  /* a pending delta stays with the slot it was counted for */
        }
    }
    Py_RETURN_NONE;
}

/* The batch's native counts as [(slot, upstream, {index: count}, zero), ...] for Python's add_counts. */
static PyObject *native_batch(Counter *self)
{
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    int32_t *groups = PyMem_Malloc(((size_t)self->nsinks * 2 + 1) * sizeof(int32_t));
    if (groups == NULL) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    for (uint32_t g = 0; g < self->nsinks * 2; g++) groups[g] = -1;
    int rc = 0;
    for (uint32_t u = 0; u < self->ncells && rc == 0; u++) {
        natcell *c = &self->cells[self->cells_used[u]];
        uint32_t g = c->sink * 2 + (c->up - 1);
        PyObject *item;
        if (groups[g] < 0) {
            item = Py_BuildValue("(OONi)", self->sinks[c->sink].slot, c->up == 2 ? Py_True : Py_False,
                                 PyDict_New(), 0);
            if (item == NULL || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                rc = -1;
                break;
            }
            Py_DECREF(item);
            groups[g] = (int32_t)(PyList_GET_SIZE(out) - 1);
        }
        item = PyList_GET_ITEM(out, groups[g]);
        if (c->index == NATIVE_ZERO) {
            PyObject *zero = PyLong_FromLongLong(c->n);
            if (zero == NULL) { rc = -1; break; }
            PyObject *old = PyTuple_GET_ITEM(item, 3);
            PyObject *sum = PyNumber_Add(old, zero);
            Py_DECREF(zero);
            if (sum == NULL) { rc = -1; break; }
            PyTuple_SET_ITEM(item, 3, sum);  /* the tuple is ours alone until it is returned */
            Py_DECREF(old);
        } else {
            PyObject *key = PyLong_FromLong(c->index), *n = PyLong_FromLongLong(c->n);
            if (key == NULL || n == NULL || PyDict_SetItem(PyTuple_GET_ITEM(item, 2), key, n) < 0) rc = -1;
            Py_XDECREF(key);
            Py_XDECREF(n);
        }
    }
    PyMem_Free(groups);
    for (uint32_t u = 0; u < self->ncells; u++) self->cells[self->cells_used[u]].up = 0;
    self->ncells = 0;
    if (rc < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* flush() -> None, or with native histograms the batch's native counts (native_batch) */
static PyObject *Counter_flush(Counter *self, PyObject *Py_UNUSED(ignored))
{
    if (flush_all(self) < 0) return NULL;
    if (!self->native) Py_RETURN_NONE;
    PyObject *out = native_batch(self);
    if (out != NULL && self->pending != NULL) {
        PyObject *all = PySequence_Concat(self->pending, out);
        Py_DECREF(out);
        out = all;
        Py_CLEAR(self->pending);
    }
    return out;
}

/* Before the table is emptied: the batch's native counts so far are kept for the next flush (their sink
 * numbers are about to mean other slots). */
static int stash_native(Counter *self)
{
    if (!self->native || self->ncells == 0) return 0;
    PyObject *batch = native_batch(self);
    if (batch == NULL) return -1;
    if (self->pending == NULL) {
        self->pending = batch;
        return 0;
    }
    PyObject *all = PySequence_Concat(self->pending, batch);
    Py_DECREF(batch);
    if (all == NULL) return -1;
    Py_SETREF(self->pending, all);
    return 0;
}

static PyObject *Counter_clear(Counter *self, PyObject *Py_UNUSED(ignored))
{
    if (flush_all(self) < 0 || stash_native(self) < 0) return NULL;
    clear_table(self);
    Py_RETURN_NONE;
}

static PyObject *Counter_stats(Counter *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{sIsIsnsKsKsKsKsIsn}", "entries", self->nentries, "slots", self->nsinks,
                         "key_bytes", (Py_ssize_t)self->keys_used,
                         "counted", (unsigned long long)self->counted, "clears", (unsigned long long)self->clears,
                         "evictions", (unsigned long long)self->evictions,
                         "path_hits", (unsigned long long)self->path_hits,
                         "max_entries", (unsigned)COUNTER_ENTRIES, "max_key_bytes", (Py_ssize_t)COUNTER_KEY_BYTES);
}

/* The program as logformat.py gives it: a sequence of (kind, stop byte, role, literal bytes). */
static int load_program(Counter *self, PyObject *program)
{
    PyObject *seq = PySequence_Fast(program, "program must be a sequence of (kind, stop, role, literal)");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->ops = PyMem_Calloc((size_t)(n ? n : 1), sizeof(ls_op));
    self->literals = PyList_New(0);
    if (self->ops == NULL || self->literals == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        int kind, stop, role;
        PyObject *literal;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, k), "iiiS", &kind, &stop, &role, &literal) ||
            PyList_Append(self->literals, literal) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        if (kind < LS_OP_LITERAL || kind >= LS_OP_END || role < 0 || role >= LS_ROLES || stop < 0 || stop > 255 ||
            (kind == LS_OP_LITERAL && PyBytes_GET_SIZE(literal) == 0)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "not an op the scanner reads");
            return -1;
        }
        self->ops[k] = (ls_op){.kind = kind, .role = role, .stop = (ls_uc)stop,
                               .literal = (const ls_uc *)PyBytes_AS_STRING(literal),
                               .len = (size_t)PyBytes_GET_SIZE(literal)};
    }
    Py_DECREF(seq);
    self->program.ops = self->ops;
    self->program.nops = (size_t)n;
    return 0;
}

/* FORMAT_JSON's keys as formats.py gives them: a sequence of (role, rank, name bytes). */
static int load_json(Counter *self, PyObject *names, double lat_scale)
{
    PyObject *seq = PySequence_Fast(names, "json keys must be a sequence of (role, rank, name)");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->literals = PyList_New(0);
    if (self->literals == NULL || n > LJ_MAX_NAMES) {
        Py_DECREF(seq);
        if (self->literals != NULL) PyErr_SetString(PyExc_ValueError, "too many json keys");
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        int role, rank;
        PyObject *name;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, k), "iiS", &role, &rank, &name) ||
            PyList_Append(self->literals, name) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        if (role < 0 || role >= LJ_ROLES || PyBytes_GET_SIZE(name) > LS_KEY_MAX) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "not a json key the scanner reads");
            return -1;
        }
        self->json_names[k] = (lj_name){.role = role, .rank = rank, .name = (const ls_uc *)PyBytes_AS_STRING(name),
                                        .len = (size_t)PyBytes_GET_SIZE(name)};
    }
    Py_DECREF(seq);
    self->json = (lj_spec){.names = self->json_names, .nnames = (size_t)n, .lat_scale = lat_scale};
    lj_index(&self->json);
    return 0;
}

static int Counter_init(Counter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"format", "bounds_ms", "ids", "latency_scale", "program", "upstream_scale", "upstream",
                             "unescape", "native", NULL};
    PyObject *native_spec = Py_None;
    const char *format;
    PyObject *bounds, *program = Py_None;
    int ids = 1, upstream = 0, unescape = 1;
    double lat_scale = -1.0, up_scale = 1000.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sO|pdOdppO", kwlist, &format, &bounds, &ids, &lat_scale, &program,
                                     &up_scale, &upstream, &unescape, &native_spec))
        return -1;
    if (native_spec != Py_None) {  /* (schema, zero threshold, mantissa bounds) */
        PyObject *mant;
        if (!PyArg_ParseTuple(native_spec, "idO", &self->nschema, &self->nzero, &mant)) return -1;
        PyObject *seq = PySequence_Fast(mant, "mantissa bounds must be a sequence");
        if (seq == NULL) return -1;
        Py_ssize_t nm = PySequence_Fast_GET_SIZE(seq);
        if (self->nschema < -4 || self->nschema > 8 || (self->nschema > 0 && nm != ((Py_ssize_t)1 << self->nschema))) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "a native schema of -4 to 8, with 2**schema mantissa bounds above 0");
            return -1;
        }
        self->mant = PyMem_Malloc((size_t)(nm ? nm : 1) * sizeof(double));
        if (self->mant == NULL) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t k = 0; k < nm; k++) self->mant[k] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, k));
        Py_DECREF(seq);
        if (PyErr_Occurred()) return -1;
        self->nmant = (int)nm;
        self->native = 1;
    }
    if (self->pool != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Counter is initialized once");
        return -1;
    }
    if (strcmp(format, "tsv") == 0) {
        self->format = FORMAT_TSV;
    } else if (strcmp(format, "combined") == 0) {
        self->format = FORMAT_COMBINED;
    } else if (strcmp(format, "program") == 0) {
        self->format = FORMAT_PROGRAM;
        if (load_program(self, program) < 0) return -1;
        self->program.lat_scale = lat_scale;
        self->program.up_scale = up_scale;
        self->program.upstream = upstream;
        self->program.unescape = unescape;
    } else if (strcmp(format, "json") == 0) {
        self->format = FORMAT_JSON;
        if (load_json(self, program, lat_scale < 0 ? 1.0 : lat_scale) < 0) return -1;
    } else {
        PyErr_Format(PyExc_ValueError, "no compiled scanner for format %s", format);
        return -1;
    }
    PyObject *seq = PySequence_Fast(bounds, "bounds_ms must be a sequence of numbers");
    if (seq == NULL) return -1;
    Py_ssize_t nb = PySequence_Fast_GET_SIZE(seq);
    if (nb + 1 > COUNTER_MAX_BUCKETS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many latency bounds");
        return -1;
    }
    self->bounds = PyMem_Malloc((size_t)(nb + 1) * sizeof(double));
    if (self->bounds == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < nb; i++) {
        self->bounds[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (self->bounds[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    self->nbounds = nb;
    self->ids = ids;
    self->lat_scale = lat_scale;
    self->pool_stride = delta_size(nb);
    self->pool_cap = 64;
    self->pool = PyMem_Calloc(self->pool_cap, self->pool_stride);
    if (self->pool == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int Counter_traverse(Counter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pending);
    for (uint32_t i = 0; i < self->nsinks; i++) Py_VISIT(self->sinks[i].slot);
    return 0;
}

static int Counter_tp_clear(Counter *self)
{
    clear_table(self);  /* pending deltas are dropped: only a dying counter gets here */
    Py_CLEAR(self->pending);
    return 0;
}

static void Counter_dealloc(Counter *self)
{
    PyObject_GC_UnTrack(self);
    Counter_tp_clear(self);
    PyMem_Free(self->bounds);
    PyMem_Free(self->entries);
    PyMem_Free(self->index);
    PyMem_Free(self->keys);
    PyMem_Free(self->pool);
    PyMem_Free(self->touched);
    PyMem_Free(self->sinks);
    PyMem_Free(self->sink_index);
    PyMem_Free(self->ops);
    PyMem_Free(self->mant);
    PyMem_Free(self->cells);
    PyMem_Free(self->cells_used);
    Py_CLEAR(self->literals);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Counter_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))Counter_scan, METH_FASTCALL,
     "scan(lines, start) -> (index, key): count from start to the first line the table cannot count"},
    {"scan_chunk", (PyCFunction)(void (*)(void))Counter_scan_chunk, METH_FASTCALL,
     "scan_chunk(data, start, end) -> (offset, key, lines): count data[start:end]'s lines up to one it cannot"},
    {"bind", (PyCFunction)(void (*)(void))Counter_bind, METH_FASTCALL,
     "bind(key, slot): count the lines of this raw key (and its path key) into slot"},
    {"flush", (PyCFunction)Counter_flush, METH_NOARGS, "add the pending deltas into the slot lists"},
    {"clear", (PyCFunction)Counter_clear, METH_NOARGS, "flush, then forget every key"},
    {"stats", (PyCFunction)Counter_stats, METH_NOARGS, "the table's size and bounds, lines counted"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logtaild.count._core.Counter",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The compiled counting core of one aggregator.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_traverse = (traverseproc)Counter_traverse,
    .tp_clear = (inquiry)Counter_tp_clear,
    .tp_methods = Counter_methods,
};

/* The per-process hash key: getrandom, else /dev/urandom, else (no entropy at all) time and addresses. */
static void seed_hash(void)
{
    uint64_t k[2] = {0, 0};
    ssize_t got = getrandom(k, sizeof k, GRND_NONBLOCK);
    if (got != (ssize_t)sizeof k) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, k, sizeof k) != (ssize_t)sizeof k) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            k[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&k;
            k[1] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)&seed_hash;
        }
        if (fd >= 0) close(fd);
    }
    hash_k0 = k[0];
    hash_k1 = k[1];
}

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_core",
    .m_doc = "logtaild's compiled counting core (see core.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__core(void)
{
    seed_hash();
    if (PyType_Ready(&CounterType) < 0) return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL) return NULL;
    Py_INCREF(&CounterType);
    if (PyModule_AddObject(m, "Counter", (PyObject *)&CounterType) < 0) {
        Py_DECREF(&CounterType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_ENTRIES", COUNTER_ENTRIES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_KEY_BYTES", COUNTER_KEY_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_KEY", LS_KEY_MAX) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
