/*
 * serialize.c -- a captured graph as bytes and back (autograd_c.h: "Saved
 * graphs"): its program and the data and grads of its sources, in a
 * compact, versioned, little-endian form; and the loader, which checks
 * every byte before it creates a node, then builds the graph through the
 * eager constructors (ag_leaf, ag_opaque, ag_apply: the values, Python
 * number types and errors of building it anew) and captures it.
 *
 * Only g->ctx, g->n, g->id (arena slot of each program position) and
 * ag__graph_position are read from a graph, and the arena's node records:
 * nothing of how replay runs a program.
 *
 * The format (version 1), every number little-endian:
 *
 *   header, 16 bytes:  "AGCG"  u16 version  u16 0  u32 crc  u32 n
 *                      crc: CRC-32 (zlib's) of the bytes from offset 12
 *                      to the end; n: nodes, 1 <= n <= 2**31 - 1
 *   n records, one per program position p (children first, the root last):
 *     u8 op, then by op:
 *       LEAF          u8 flags  f64 data  f64 grad
 *       OPAQUE        u8 flags  u8 children (0..2)  u32 position of each
 *                     f64 data  f64 grad  u32 name length  name bytes
 *                     (UTF-8, surrogates allowed as Python's
 *                     "surrogatepass" writes them, no NUL)
 *       POW_CONST     u32 a  f64 k  u8 k_is_int (0 or 1)
 *       other ops     u32 a (and u32 b for two-child ops)
 *     flags: SRC_DATA_INT | SRC_GRAD_INT; a number flagged int is a finite
 *     whole number; operand and child positions are < p; every position is
 *     reached from the root, and the capture of what is built lists the
 *     nodes in the blob's order.  Nothing follows the last record.
 */
#include <math.h>
#include <string.h>
#include "alloc.h"
#include "graph.h"

#define MAGIC "AGCG"
#define VERSION 1
#define HEADER_SIZE 16
#define CRC_FROM 12               /* the CRC covers bytes [CRC_FROM, len) */
#define MIN_RECORD 5              /* a one-child op: u8 op, u32 a          */
enum { SRC_DATA_INT = 1, SRC_GRAD_INT = 2 };

/* ---- bytes ----------------------------------------------------------------- */

/* CRC-32 (reflected 0xEDB88320, as zlib.crc32), four bits at a time. */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    static const uint32_t nibble[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
        0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
        0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nibble[crc & 15];
        crc = (crc >> 4) ^ nibble[crc & 15];
    }
    return crc ^ 0xFFFFFFFFu;
}

/* Writing: counts every byte; stores them only when buf is not NULL. */
typedef struct writer {
    uint8_t *buf;
    size_t size;
} writer;

static void put_bytes(writer *w, const void *p, size_t n) {
    if (w->buf) memcpy(w->buf + w->size, p, n);
    w->size += n;
}

static void put_uint(writer *w, uint64_t v, int bytes) {
    uint8_t le[8];
    for (int i = 0; i < bytes; i++) le[i] = (uint8_t)(v >> (8 * i));
    put_bytes(w, le, (size_t)bytes);
}

static void put_double(writer *w, double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    put_uint(w, bits, 8);
}

/* Reading: a read past the end gives 0 and sets `bad`. */
typedef struct reader {
    const uint8_t *p;
    size_t left;
    int bad;
} reader;

static uint64_t get_uint(reader *r, int bytes) {
    if (r->left < (size_t)bytes) {
        r->bad = 1;
        r->left = 0;
        return 0;
    }
    uint64_t v = 0;
    for (int i = bytes; i-- > 0;) v = v << 8 | r->p[i];
    r->p += bytes;
    r->left -= (size_t)bytes;
    return v;
}

static double get_double(reader *r) {
    uint64_t bits = get_uint(r, 8);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* A finite whole number: what a value flagged int may hold. */
static int is_whole(double v) { return isfinite(v) && v == floor(v); }

/* Whether s[0..n) is UTF-8 as Python's "surrogatepass" decodes it (lone
 * surrogates allowed) and has no NUL. */
static int is_name(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
        if (c == 0 || (c >= 0x80 && c < 0xC2) || c > 0xF4 || n - i <= (size_t)more)
            return 0;                        /* NUL, no lead byte, cut short */
        uint8_t lo = 0x80, hi = 0xBF;        /* range of the second byte */
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        for (int j = 1; j <= more; j++) {
            uint8_t t = s[i + (size_t)j];
            if (t < (j == 1 ? lo : 0x80) || t > (j == 1 ? hi : 0xBF)) return 0;
        }
        i += (size_t)more + 1;
    }
    return 1;
}

/* ---- saving ----------------------------------------------------------------- */

/* Write the position of the node in arena slot id, a child that capture
 * put in the graph.  AG_OK, or AG_ERR_ARG should it not be there. */
static int put_position(writer *w, const ag_graph *g, const ag_ctx *c,
                        int32_t id) {
    int32_t p = ag__graph_position(g, ag__handle(c, id));
    put_uint(w, (uint64_t)(uint32_t)p, 4);
    return p < 0 ? AG_ERR_ARG : AG_OK;
}

/* A source's flags byte; AG_ERR_ARG for a number flagged int that is not a
 * whole one (only a C caller makes those: ag_leaf(c, 0.5, 1)). */
static int source_flags(const ag_ctx *c, int32_t id) {
    int f = c->flags[id], out = 0;
    if (f & AG_DATA_INT) {
        if (!is_whole(c->data[id])) return AG_ERR_ARG;
        out |= SRC_DATA_INT;
    }
    if (f & AG_GRAD_INT) {
        if (!is_whole(ag__grad(c->grad, c->flags, id))) return AG_ERR_ARG;
        out |= SRC_GRAD_INT;
    }
    return out;
}

/* The record of position p.  AG_OK or AG_ERR_ARG: what only a C caller
 * makes -- a number flagged int that is no whole number (source_flags, a
 * POW_CONST exponent), a name that is not UTF-8 -- or a child capture did
 * not put in the program.  Locked. */
static int put_record(writer *w, const ag_graph *g, const ag_ctx *c, int32_t p) {
    int32_t id = g->id[p], a = c->a[id], b = c->b[id];
    int op = c->op[id];
    put_uint(w, (uint64_t)op, 1);
    if (ag__is_source(op)) {
        int flags = source_flags(c, id);
        if (flags < 0) return flags;
        put_uint(w, (uint64_t)flags, 1);
        if (op == AG_OPAQUE) {  /* children only with a: capture's walk */
            int kids = a == AG_NONE ? 0 : b == AG_NONE ? 1 : 2;
            put_uint(w, (uint64_t)kids, 1);
            int st = kids >= 1 ? put_position(w, g, c, a) : AG_OK;
            if (st == AG_OK && kids == 2) st = put_position(w, g, c, b);
            if (st != AG_OK) return st;
        }
        put_double(w, c->data[id]);
        put_double(w, ag__grad(c->grad, c->flags, id));
        if (op == AG_OPAQUE) {
            const char *name = (c->flags[id] & AG_NAMED) ? c->names[id] : "";
            size_t len = strlen(name);
            if (!is_name((const uint8_t *)name, len)) return AG_ERR_ARG;
            put_uint(w, len, 4);
            put_bytes(w, name, len);
        }
        return AG_OK;
    }
    int st = put_position(w, g, c, a);
    if (st != AG_OK) return st;
    if (op == AG_POW_CONST) {
        int k_int = (c->flags[id] & AG_K_INT) != 0;
        if (k_int && !is_whole(c->k[id])) return AG_ERR_ARG;
        put_double(w, c->k[id]);
        put_uint(w, (uint64_t)k_int, 1);
    } else if (ag__arity(op) == 2) {
        return put_position(w, g, c, b);
    }
    return AG_OK;
}

/* The whole blob into w (w->buf NULL: its size only).  Locked. */
static int put_graph(writer *w, const ag_graph *g, const ag_ctx *c) {
    put_bytes(w, MAGIC, 4);
    put_uint(w, VERSION, 2);
    put_uint(w, 0, 2);
    put_uint(w, 0, 4);                       /* the CRC, written at the end */
    put_uint(w, (uint64_t)g->n, 4);
    for (int32_t p = 0; p < g->n; p++) {
        int st = put_record(w, g, c, p);
        if (st != AG_OK) return st;
    }
    if (w->buf) {
        uint32_t crc = crc32_of(w->buf + CRC_FROM, w->size - CRC_FROM);
        writer at = {w->buf + 8, 0};
        put_uint(&at, crc, 4);
    }
    return AG_OK;
}

int64_t ag_graph_save(ag_graph *g, void *buf, size_t cap) {
    ag_ctx *c = g->ctx;
    writer w = {NULL, 0};
    AG_LOCK(c);
    int st = put_graph(&w, g, c);           /* the size */
    if (st == AG_OK && buf && w.size <= cap) {
        w = (writer){buf, 0};
        st = put_graph(&w, g, c);
    }
    AG_UNLOCK(c);
    return st != AG_OK ? st : (int64_t)w.size;
}

/* ---- checking --------------------------------------------------------------- */

/* One program position as the blob gives it. */
typedef struct rec {
    double data, grad, k;    /* a source's data and grad; POW_CONST's k    */
    int32_t a, b;            /* operand / child positions, -1 when absent  */
    size_t name_at, name_len;  /* OPAQUE: its name, at blob + name_at      */
    uint8_t op, flags;       /* ag_op; SRC_* for sources, k_int for POW_CONST */
    uint8_t reached;         /* the reachability sweep's mark              */
} rec;

/* A position < p, or -1 (with *why) for anything else. */
static int32_t operand(reader *r, int32_t p, const char **why) {
    uint64_t a = get_uint(r, 4);
    if (!r->bad && a >= (uint64_t)p) {
        *why = "an operand is not an earlier position (a forward reference)";
        return -1;
    }
    return (int32_t)a;
}

/* A source's flags, data and grad (OPAQUE: children between flags and data,
 * name after grad).  AG_OK or AG_ERR_FORMAT with *why. */
static int read_source(reader *r, rec *x, int32_t p, const uint8_t *blob,
                       const char **why) {
    x->flags = (uint8_t)get_uint(r, 1);
    if (x->flags & ~(SRC_DATA_INT | SRC_GRAD_INT)) {
        *why = "unknown flags on a source";
        return AG_ERR_FORMAT;
    }
    if (x->op == AG_OPAQUE) {
        uint64_t kids = get_uint(r, 1);
        if (kids > 2) {
            *why = "an opaque node with more than two children";
            return AG_ERR_FORMAT;
        }
        if (kids >= 1 && (x->a = operand(r, p, why)) < 0) return AG_ERR_FORMAT;
        if (kids == 2 && (x->b = operand(r, p, why)) < 0) return AG_ERR_FORMAT;
    }
    x->data = get_double(r);
    x->grad = get_double(r);
    if (!r->bad && (((x->flags & SRC_DATA_INT) && !is_whole(x->data)) ||
                    ((x->flags & SRC_GRAD_INT) && !is_whole(x->grad)))) {
        *why = "a number flagged int is not a finite whole number";
        return AG_ERR_FORMAT;
    }
    if (x->op == AG_OPAQUE) {
        uint64_t len = get_uint(r, 4);
        if (!r->bad && len > r->left) r->bad = 1;
        if (r->bad) return AG_OK;            /* truncated: the caller says so */
        x->name_at = (size_t)(r->p - blob);
        x->name_len = (size_t)len;
        if (!is_name(r->p, len)) {
            *why = "an opaque node's name is not UTF-8 text without NUL";
            return AG_ERR_FORMAT;
        }
        r->p += len;
        r->left -= len;
    }
    return AG_OK;
}

/* Record p into *x.  AG_OK or AG_ERR_FORMAT with *why. */
static int read_record(reader *r, rec *x, int32_t p, const uint8_t *blob,
                       const char **why) {
    *x = (rec){0.0, 0.0, 0.0, -1, -1, 0, 0, 0, 0, 0};
    uint64_t op = get_uint(r, 1);
    int arity = ag__arity((int)op);
    x->op = (uint8_t)op;
    if (r->bad) return AG_OK;
    if (op >= AG_OP_COUNT || arity < 0) {
        *why = "an unknown op code";
        return AG_ERR_FORMAT;
    }
    if (arity == 0) return read_source(r, x, p, blob, why);
    if ((x->a = operand(r, p, why)) < 0) return r->bad ? AG_OK : AG_ERR_FORMAT;
    if (arity == 2 && (x->b = operand(r, p, why)) < 0)
        return r->bad ? AG_OK : AG_ERR_FORMAT;
    if (op == AG_POW_CONST) {
        x->k = get_double(r);
        uint64_t k_int = get_uint(r, 1);
        if (!r->bad && (k_int > 1 || (k_int && !is_whole(x->k)))) {
            *why = "a ** exponent flagged int is not a finite whole number";
            return AG_ERR_FORMAT;
        }
        x->flags = (uint8_t)k_int;
    }
    return AG_OK;
}

/* Every position reached from the root (the last): parents come after
 * their children, so one sweep from the end marks them.  AG_OK or
 * AG_ERR_FORMAT. */
static int check_reached(rec *x, int32_t n, const char **why) {
    x[n - 1].reached = 1;
    for (int32_t p = n; p-- > 0;) {
        if (!x[p].reached) {
            *why = "a node the root does not reach";
            return AG_ERR_FORMAT;
        }
        if (x[p].a >= 0) x[x[p].a].reached = 1;
        if (x[p].b >= 0) x[x[p].b].reached = 1;
    }
    return AG_OK;
}

/* The header's node count, after checking magic, version, the reserved
 * field, the CRC and that the count fits the length; or AG_ERR_FORMAT. */
static int64_t read_header(const uint8_t *blob, size_t len, const char **why) {
    if (len < HEADER_SIZE) {
        *why = "too short for a saved graph (truncated?)";
        return AG_ERR_FORMAT;
    }
    reader r = {blob + 4, len - 4, 0};
    uint64_t version = get_uint(&r, 2), reserved = get_uint(&r, 2);
    uint64_t crc = get_uint(&r, 4), n = get_uint(&r, 4);
    *why = memcmp(blob, MAGIC, 4) ? "not a saved graph (no AGCG magic)"
         : version != VERSION ? "a saved graph of an unknown format version"
         : reserved ? "a reserved header field is not 0"
         : crc != crc32_of(blob + CRC_FROM, len - CRC_FROM)
               ? "checksum mismatch: the bytes were changed or cut"
         : n == 0 || n > INT32_MAX ? "the node count is out of range"
         : n > (len - HEADER_SIZE) / MIN_RECORD
               ? "the node count is beyond what the length can hold"
         : NULL;
    return *why ? AG_ERR_FORMAT : (int64_t)n;
}

/* Check the blob whole and decode it into *out (n records, the caller
 * frees them with ag__free).  Returns n, or AG_ERR_FORMAT with *why,
 * or AG_ERR_NOMEM. */
static int64_t decode(const uint8_t *blob, size_t len, rec **out,
                      const char **why) {
    *out = NULL;
    int64_t n = read_header(blob, len, why);
    if (n < 0) return n;
    rec *x = ag__malloc((size_t)n * sizeof *x);
    if (!x) return AG_ERR_NOMEM;
    reader r = {blob + HEADER_SIZE, len - HEADER_SIZE, 0};
    int st = AG_OK;
    for (int32_t p = 0; st == AG_OK && !r.bad && p < (int32_t)n; p++)
        st = read_record(&r, &x[p], p, blob, why);
    if (st == AG_OK && (r.bad || r.left)) {
        *why = r.bad ? "the records end early (truncated?)"
                     : "bytes follow the last record";
        st = AG_ERR_FORMAT;
    }
    if (st == AG_OK) st = check_reached(x, (int32_t)n, why);
    if (st != AG_OK) {
        ag__free(x);
        return st;
    }
    *out = x;
    return n;
}

int64_t ag_graph_check(const void *buf, size_t len, const char **why) {
    const char *flaw = NULL;
    rec *x;
    int64_t n = decode(buf, len, &x, &flaw);
    ag__free(x);
    if (why) *why = n == AG_ERR_FORMAT ? flaw : NULL;
    return n;
}

/* ---- loading ------------------------------------------------------------------ */

/* Node x of the blob through the eager constructors, children h[]: its
 * handle (one reference) or a status. */
static int64_t build_node(ag_ctx *c, const rec *x, const int64_t *h,
                          const uint8_t *blob) {
    int64_t a = x->a >= 0 ? h[x->a] : -1, b = x->b >= 0 ? h[x->b] : -1;
    if (!ag__is_source(x->op)) return ag_apply(c, x->op, a, b, x->k, x->flags);
    int64_t id;
    if (x->op == AG_LEAF) {
        id = ag_leaf(c, x->data, x->flags & SRC_DATA_INT);
    } else {
        char *name = ag__malloc(x->name_len + 1);
        if (!name) return AG_ERR_NOMEM;
        memcpy(name, blob + x->name_at, x->name_len);
        name[x->name_len] = '\0';
        id = ag_opaque(c, x->data, x->flags & SRC_DATA_INT, a, b, name);
        ag__free(name);
    }
    if (id >= 0) ag_set_grad(c, id, x->grad, (x->flags & SRC_GRAD_INT) != 0);
    return id;
}

/* Give back the n references of h. */
static void release_all(ag_ctx *c, const int64_t *h, int32_t n) {
    for (int32_t p = n; p-- > 0;) ag_release(c, h[p]);
}

/* Whether g lists the built nodes h[0..n) at their blob positions. */
static int same_program(const ag_graph *g, const int64_t *h, int32_t n) {
    if (g->n != n) return 0;
    for (int32_t p = 0; p < n; p++)
        if (ag__graph_position(g, h[p]) != p) return 0;
    return 1;
}

/* Build the n decoded nodes into h[] (recording on), capture the root into
 * *out.  On failure every built node is given back: AG_OK or a status. */
static int build(ag_ctx *c, const rec *x, int32_t n, const uint8_t *blob,
                 int64_t *h, ag_graph **out) {
    int was = ag_set_grad_enabled(1);       /* no_grad would make leaves */
    int32_t built = 0;
    int64_t st = AG_OK;
    for (; built < n; built++) {
        st = build_node(c, x + built, h, blob);
        if (st < 0) break;
        h[built] = st;
    }
    ag_set_grad_enabled(was);
    if (st < 0) {
        release_all(c, h, built);
        return (int)st;
    }
    st = ag_graph_new(c, h[n - 1], out);
    if (st == AG_OK && !same_program(*out, h, n)) {
        ag_graph_free(*out);
        *out = NULL;
        st = AG_ERR_FORMAT;                  /* not in the order capture gives */
    }
    release_all(c, h, n);                   /* the graph holds the root */
    return (int)st;
}

int ag_graph_load(ag_ctx *c, const void *buf, size_t len, ag_graph **out) {
    *out = NULL;
    const char *why;
    rec *x;
    int64_t n = decode(buf, len, &x, &why);
    if (n < 0) return (int)n;
    int64_t *h = ag__malloc((size_t)n * sizeof *h);
    int st = h ? build(c, x, (int32_t)n, buf, h, out) : AG_ERR_NOMEM;
    ag__free(h);
    ag__free(x);
    return st;
}

/* ---- a graph's nodes as handles ------------------------------------------------ */

int32_t ag_graph_sources(ag_graph *g, int32_t *positions, size_t cap) {
    ag_ctx *c = g->ctx;
    int32_t count = 0;
    AG_LOCK(c);
    for (int32_t p = 0; p < g->n; p++) {
        if (!ag__is_source(c->op[g->id[p]])) continue;
        if ((size_t)count < cap) positions[count] = p;
        count++;
    }
    AG_UNLOCK(c);
    return count;
}

int ag_graph_handles(ag_graph *g, const int32_t *positions, size_t n,
                     int64_t *out) {
    for (size_t i = 0; i < n; i++)
        if (positions[i] < 0 || positions[i] >= g->n) return AG_ERR_ARG;
    ag_ctx *c = g->ctx;
    AG_LOCK(c);
    for (size_t i = 0; i < n; i++) {
        int32_t id = g->id[positions[i]];
        c->refs[id]++;
        out[i] = ag__handle(c, id);
    }
    AG_UNLOCK(c);
    return AG_OK;
}
