/*
 * autograd_c.h -- the one public header of the autograd_c engine.
 *
 * A scalar reverse-mode autograd engine.  Every graph node lives in an
 * arena owned by an opaque context (ag_ctx) and is named by a handle, an
 * int64_t: its arena slot in the low 32 bits, the slot's generation above
 * them.  A slot's generation changes when its node is freed, so a handle
 * that outlived its node is told apart from the slot's next node: every
 * function that takes a handle checks it and fails with AG_ERR_STALE,
 * never touching another node.  (Generations have 31 bits: a handle kept
 * through 2**31 reuses of its slot would name the slot's node again.)  Nodes are reference counted: the caller
 * owns one reference for every handle a constructor returns and gives it
 * back with ag_release().  A node also holds one reference on each of its
 * children, so a node lives while any handle reaches it, directly or
 * through the graph.
 *
 * Every public function locks the context, so several threads may call into
 * the same context at once (a context made with AG_CTX_ONE_THREAD skips the
 * lock instead; then one thread at a time may use it).  No function calls
 * exit() or abort() on a path a caller can reach.
 *
 * The return convention, for every function below:
 *   - a function that can fail returns an int (int64_t for the node
 *     constructors): negative is the ag_status of the failure, and then
 *     nothing has changed; AG_OK (0) -- or, from a constructor, the new
 *     node's handle (>= 0) -- is success.  ag_ctx_new* return NULL
 *     instead, and ag_read, which returns two numbers, its imaginary part.
 *   - a function that cannot fail returns void or the value it reads.
 *
 * Number types follow Python's: every value carries an "is int" flag, so a
 * facade can give back int where Python would have kept int.  Int values are
 * stored as doubles: exact within +-2**53.
 *
 * The declarations between the CDEF markers are read verbatim by the cffi
 * builder (autograd_c/_cffi_build.py): keep them plain C, no macros.  It
 * also reads AG_OP_LIST's rows to declare the op codes.
 */
#ifndef AUTOGRAD_C_H
#define AUTOGRAD_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every op, one row each: X(CODE, rule, name, arity).  AG_CODE is its op
 * code (the row's position), rule the stem of its rules in csrc/rules.h
 * (op semantics: value, Python number types and errors, derivatives), name
 * what Value._op shows (ag_op_name), arity the number of children its
 * rules read.  LEAF and OPAQUE (arity 0) are sources: no value to compute,
 * no gradient to pass on (OPAQUE is micrograd's Value(data, children, op):
 * up to two children kept, gradient stops there).  A new op is a new last row (old codes keep their numbers) and
 * its rules; every switch over ops is made from this list. */
#define AG_OP_LIST(X)                                                       \
    X(LEAF, leaf, "", 0)                                                    \
    X(ADD, add, "+", 2)              /* a + b                          */   \
    X(MUL, mul, "*", 2)              /* a * b                          */   \
    X(POW_CONST, pow_const, "**", 1) /* a ** k, k a number on the node */   \
    X(POW, pow, "**", 2)             /* a ** b, b a node               */   \
    X(RELU, relu, "ReLU", 1)         /* 0 if a < 0 else a (micrograd)  */   \
    X(TANH, tanh, "tanh", 1)                                                \
    X(EXP, exp, "exp", 1)                                                   \
    X(LOG, log, "log", 1)                                                   \
    X(SIGMOID, sigmoid, "sigmoid", 1)                                       \
    X(OPAQUE, opaque, "", 0)         /* keeps children a, b; no rules  */   \
    X(ABS, abs, "abs", 1)            /* |a|, gradient sign(a)          */

/* This engine has ag_graph_set_options (for code built against several
 * versions, such as the benchmarks). */
#define AG_HAS_GRAPH_OPTIONS 1

#define AG__OP_CODE(code, rule, name, arity) AG_##code,
#define AG__OP_ONE(code, rule, name, arity) +1
typedef enum ag_op { AG_OP_LIST(AG__OP_CODE) } ag_op;
enum { AG_OP_COUNT = 0 AG_OP_LIST(AG__OP_ONE) };

/* CDEF BEGIN */
typedef struct ag_ctx ag_ctx;

typedef enum ag_status {
    AG_OK = 0,
    AG_ERR_NOMEM = -1,     /* the arena could not grow (MemoryError)            */
    AG_ERR_LIMIT = -2,     /* the node limit set by ag_set_limit was reached    */
    AG_ERR_ZERODIV = -3,   /* zero raised to a negative power                    */
    AG_ERR_OVERFLOW = -4,  /* float result out of range (as math.exp / float **) */
    AG_ERR_INT_RANGE = -5, /* int result beyond the range of a double            */
    AG_ERR_DOMAIN = -6,    /* math domain error (log of x <= 0)                  */
    AG_ERR_COMPLEX = -7,   /* negative base to a fractional power                */
    AG_ERR_ARG = -8,       /* bad argument: unknown op, a number that is no
                            * handle, wrong shape                             */
    AG_ERR_NOT_LEAF = -9,  /* a replay input that is not a leaf of the graph     */
    AG_ERR_STALE = -10,    /* a handle whose node has been freed since           */
    AG_ERR_USER_RULE = -11,/* the graph has an op whose rule is the caller's
                            * (ag_set_user_rule): it cannot run in C        */
    AG_ERR_FORMAT = -12    /* bytes that are no saved graph (ag_graph_load):
                            * cut, changed, or of another format version    */
} ag_status;

/* Flags of a node (ag_node_info), and what ag_read reads. */
enum {
    AG_DATA_INT = 1,   /* data holds a Python int       */
    AG_GRAD_INT = 2,   /* grad holds a Python int       */
    AG_K_INT = 4       /* POW_CONST exponent is an int  */
};
enum { AG_READ_DATA = 0, AG_READ_GRAD = 1 };

/* A node as seen from outside (ag_node_info). */
typedef struct ag_node {
    int op;            /* ag_op                                  */
    int64_t a, b;      /* children's handles, -1 where absent    */
    double k;          /* POW_CONST exponent                     */
    int flags;         /* AG_DATA_INT | AG_GRAD_INT | AG_K_INT    */
    uint32_t refs;     /* references on it: handles, parent links  */
} ag_node;

/* Arena statistics (ag_stats). */
typedef struct ag_stats {
    size_t live_nodes;     /* nodes in use                        */
    size_t capacity;       /* node slots allocated                */
    size_t bytes;          /* bytes held by the arena             */
    size_t limit;          /* node limit, 0 = none                */
} ag_stats;

/* Human-readable text of a status; never NULL, static storage. */
const char *ag_status_str(int status);

/* What Value._op shows for op ("+", "ReLU", ...; "" for sources); "?" for a
 * code that is no op.  Never NULL, static storage. */
const char *ag_op_name(int op);

/* Number of children op's rules read: 1 or 2, 0 for the sources LEAF and
 * OPAQUE; AG_ERR_ARG for a code that is no op. */
int ag_op_arity(int op);

/* An allocator: malloc and realloc return NULL when out of memory (the
 * engine then fails with AG_ERR_NOMEM and changes nothing); user is passed
 * to each. */
typedef struct ag_allocator {
    void *(*malloc)(size_t size, void *user);
    void *(*realloc)(void *p, size_t size, void *user);
    void (*free)(void *p, void *user);
    void *user;
} ag_allocator;

/* Route every allocation of the engine through *a (copied), or through
 * the C library's malloc/realloc/free for NULL: a program's own allocator,
 * or a test's that makes the n-th allocation fail.  Process-wide; set it
 * while no context exists (memory goes back to the allocator it came
 * from).  AG_OK, or AG_ERR_ARG for a missing function. */
int ag_set_allocator(const ag_allocator *a);

/* Create a context with an empty arena.  Returns NULL when out of memory.
 * The caller owns it and frees it with ag_ctx_free. */
ag_ctx *ag_ctx_new(void);

/* Options of ag_ctx_new_opt. */
enum {
    AG_CTX_ONE_THREAD = 1  /* no lock: the caller lets only one thread at a
                            * time call into the context, as in SQLite's
                            * multi-thread mode                           */
};

/* ag_ctx_new with options: 0 or AG_CTX_ONE_THREAD.  Returns NULL when out of
 * memory or for an unknown option bit. */
ag_ctx *ag_ctx_new_opt(int options);

/* Free a context and every node in it; its handles and graphs become invalid.
 * NULL is accepted. */
void ag_ctx_free(ag_ctx *ctx);

/* Limit the number of live nodes (0 = no limit).  Constructors that would go
 * beyond it fail with AG_ERR_LIMIT. */
void ag_set_limit(ag_ctx *ctx, size_t max_nodes);

/* Give memory back: shrink the arena to the smallest capacity that holds
 * its highest live node (nodes never move, so a live node high up keeps
 * the arena big).  Returns the bytes given back.  An arena of over 2**20
 * slots does this by itself once fewer than an eighth of them are live. */
size_t ag_trim(ag_ctx *ctx);

/* Fill *out with the arena's statistics. */
void ag_get_stats(ag_ctx *ctx, ag_stats *out);

/* Per-thread switch of graph recording (like torch.no_grad).  While off, op
 * constructors on this thread return leaves holding the computed value.
 * Returns the previous setting.  Applies to every context. */
int ag_set_grad_enabled(int enabled);
int ag_is_grad_enabled(void);

/* Every function below that takes a handle fails with AG_ERR_STALE for a
 * handle whose node has been freed (or that names the live node of its
 * slot with another generation) and AG_ERR_ARG for a number that is no
 * handle of ctx, changing nothing; then it writes none of its outputs. */

/* A new leaf holding v (is_int: v is a Python int).  Returns its handle,
 * one reference owned by the caller, or AG_ERR_NOMEM / AG_ERR_LIMIT. */
int64_t ag_leaf(ag_ctx *ctx, double v, int is_int);

/* A new node op(a, b).  b is ignored (pass -1) for unary ops; k and k_int are
 * the exponent of AG_POW_CONST and ignored otherwise.  The value is computed
 * now, with Python's float errors (AG_ERR_ZERODIV, AG_ERR_OVERFLOW,
 * AG_ERR_DOMAIN, AG_ERR_COMPLEX): on error nothing is created.  Returns the
 * handle (one reference for the caller) or a status (AG_ERR_ARG also for an
 * op that takes no children). */
int64_t ag_apply(ag_ctx *ctx, int op, int64_t a, int64_t b, double k,
                 int k_int);

/* op(a, leaf(v)) -- or op(leaf(v), a) when const_first -- in one call: the
 * binary op of a node with a fresh constant leaf, as micrograd builds
 * `a + 2`.  Same contract as ag_apply; on error neither node is created. */
int64_t ag_apply_const(ag_ctx *ctx, int op, int64_t a, double v, int v_int,
                       int const_first);

/* The facade's context: the leaf and op constructors above and the reads
 * below again, with fewer arguments (a facade's call, cffi's, costs more
 * per argument than the C work), on the context named once here; they
 * return AG_ERR_ARG before.  The context must outlive the calls.
 *   ag_float_leaf(v), ag_int_leaf(v)  ag_leaf(ctx, v, 0), ag_leaf(ctx, v, 1)
 *   ag_apply1(op, a)                  ag_apply(ctx, op, a, -1, 0, 0)
 *   ag_apply2(op, a, b)               ag_apply(ctx, op, a, b, 0, 0)
 *   ag_apply_k(code, a, v)            ag_apply_const(ctx, code & AG_K_OP, a, v,
 *                                     code & AG_K_IS_INT, code & AG_K_FIRST),
 *                                     code made once per op and kind of number
 *   ag_set_float_data(h, v)           ag_set_data(ctx, h, v, 0)
 *   ag_set_float_grad(h, v)           ag_set_grad(ctx, h, v, 0) */
enum { AG_K_OP = 63, AG_K_IS_INT = 64, AG_K_FIRST = 128 };
void ag_set_facade_ctx(ag_ctx *ctx);
int64_t ag_float_leaf(double v);
int64_t ag_int_leaf(double v);
int64_t ag_apply1(int op, int64_t a);
int64_t ag_apply2(int op, int64_t a, int64_t b);
int ag_set_float_data(int64_t h, double v);
int ag_set_float_grad(int64_t h, double v);
int64_t ag_apply_k(int code, int64_t a, double v);

/* The facade's ops with fewer arguments still, one function per op with
 * children and no exponent: a unary op takes one argument (CPython's fast
 * call, ~50 ns less than two), a binary op two (no op code).  Same
 * contract as the forms on the right.
 *   ag_eager_add(a, b)    ag_apply2(AG_ADD, a, b)   (mul, pow: AG_MUL, AG_POW)
 *   ag_eager_relu(a)      ag_apply1(AG_RELU, a)     (tanh, exp, log, sigmoid,
 *                                                   abs: AG_TANH, ...) */
int64_t ag_eager_add(int64_t a, int64_t b);
int64_t ag_eager_mul(int64_t a, int64_t b);
int64_t ag_eager_pow(int64_t a, int64_t b);
int64_t ag_eager_relu(int64_t a);
int64_t ag_eager_tanh(int64_t a);
int64_t ag_eager_exp(int64_t a);
int64_t ag_eager_log(int64_t a);
int64_t ag_eager_sigmoid(int64_t a);
int64_t ag_eager_abs(int64_t a);

/* A node holding v whose children are a and b (-1 where absent: none,
 * a alone, or both -- b without a is AG_ERR_ARG) and whose gradient does
 * not flow to them (micrograd's Value(data, children, op)).  name (NULL
 * for none) is copied and kept with the node, freed with it
 * (ag_node_name).  Returns the handle (one reference for the caller) or a
 * status. */
int64_t ag_opaque(ag_ctx *ctx, double v, int is_int, int64_t a, int64_t b,
                  const char *name);

/* A new node like h -- its op, exponent, value, gradient, types and name --
 * whose children are a and b (-1 where h has none): for copying a graph
 * node by node, children first (copy.copy keeps h's children, deepcopy
 * gives the copies of them).  Nothing is computed.  Returns the handle
 * (one reference for the caller) or a status (AG_ERR_ARG when a child is
 * given where h has none, or missing where it has one). */
int64_t ag_copy_node(ag_ctx *ctx, int64_t h, int64_t a, int64_t b);

/* Take one more reference on a node / give one back.  When the last
 * reference to a node goes, the node is freed, then every child that nothing
 * else reaches, iteratively (no recursion, any depth).  AG_OK or a status
 * (ag_release_many checks every handle first: on failure none is released;
 * a node named twice must hold two references -- if the first release
 * frees it, the second is skipped). */
int ag_retain(ag_ctx *ctx, int64_t h);
int ag_release(ag_ctx *ctx, int64_t h);
int ag_release_many(ag_ctx *ctx, const int64_t *hs, size_t n);

/* Release the n handles at most once per flag *done: under the lock, when
 * *done is 0, give back every live handle of hs (skipping a stale or bad
 * one: then its status is returned, after the others are released) and set
 * *done to 1; when *done is already 1, do nothing and return AG_OK.  For a
 * caller that can be interrupted between handing a batch over and learning
 * that it was released (a Python facade under KeyboardInterrupt): calling
 * again with the same flag can never release twice. */
int ag_release_once(ag_ctx *ctx, const int64_t *hs, size_t n, int *done);

/* A node's value (what = AG_READ_DATA) or gradient (AG_READ_GRAD) together
 * with its Python type, read at once under the lock, so a concurrent write
 * is seen whole or not at all: the real part is the number, the imaginary
 * part 1 for a Python int, 0 for a float -- or a status (AG_ERR_STALE,
 * AG_ERR_ARG), the real part then 0.  Two numbers in one return value,
 * because a facade's call (cffi) costs more than the C work. */
double _Complex ag_read(ag_ctx *ctx, int64_t h, int what);

/* ag_read(ctx, h, AG_READ_DATA) and (..., AG_READ_GRAD) with one argument
 * (cffi: one argument takes CPython's fast path), on the facade's context
 * (ag_set_facade_ctx; AG_ERR_ARG before). */
double _Complex ag_read_data(int64_t h);
double _Complex ag_read_grad(int64_t h);
/* Cheaper still for the common case: the data (grad) when it is a float
 * that is not NaN, else NaN -- then ag_read_data (_grad) tells an int, a
 * NaN and a bad handle apart. */
double ag_float_data(int64_t h);
double ag_float_grad(int64_t h);

/* Write a node's value or gradient (is_int: a Python int).  AG_OK or a
 * status. */
int ag_set_data(ag_ctx *ctx, int64_t h, double v, int is_int);
int ag_set_grad(ag_ctx *ctx, int64_t h, double v, int is_int);

/* Fill *out with the op, children (as handles), exponent and flags of h.
 * AG_OK or a status. */
int ag_node_info(ag_ctx *ctx, int64_t h, ag_node *out);

/* Copy the name ag_opaque kept with node h into buf (cap bytes, NUL
 * terminated, "" when it has none; buf may be NULL when cap is 0).
 * Returns the name's length -- when it is >= cap, buf holds a cut copy:
 * call again with more room -- or a status. */
int64_t ag_node_name(ag_ctx *ctx, int64_t h, char *buf, size_t cap);

/* The references that no child link holds -- a caller's handles, a
 * graph's reference on its root -- of every node that has some: writes up
 * to cap of them as (handles[i], counts[i]) and returns how many there
 * are (call again with more room when that is > cap).  For a facade that
 * must find references it lost (a Python KeyboardInterrupt between a
 * constructor's return and the Value that keeps the handle). */
int64_t ag_held_refs(ag_ctx *ctx, int64_t *handles, uint32_t *counts,
                     size_t cap);

/* micrograd's backward(): set root's grad to int 1, then, in reverse
 * topological order of every node reachable from root, add each node's
 * contribution to its children's grads.  Grads are never zeroed.
 * Iterative, any depth; needs no memory beyond the arena.  AG_OK or a
 * status. */
int ag_backward(ag_ctx *ctx, int64_t root);

/* Mark node h as an op whose backward rule is the caller's own (a Python
 * function): ag_backward and ag_graph_new then fail with AG_ERR_USER_RULE
 * for a graph that reaches it, changing nothing, so that the caller runs
 * the rules itself (ag_backprop_node for the others).  AG_OK or a status. */
int ag_set_user_rule(ag_ctx *ctx, int64_t h);

/* micrograd's out._backward() for one node: add h's contributions, from
 * its grad as it is now, to its children's grads (a leaf or an opaque node
 * has none).  Calling it for every node in reverse topological order, root
 * grad 1 first, is ag_backward.  AG_OK or a status. */
int ag_backprop_node(ag_ctx *ctx, int64_t h);

/* One micrograd Layer applied to nodes: for each of n_out neurons j,
 *   act = b[j] + w[j*n_in+0]*x[0] + ... + w[j*n_in+n_in-1]*x[n_in-1]
 * built left to right exactly as micrograd's Neuron, then relu'd when
 * nonlin.  w: n_out*n_in handles, b: n_out, x: n_in, out: n_out slots that
 * receive the output handles (one reference each).  On error nothing is
 * created and a status is returned. */
int ag_layer(ag_ctx *ctx, const int64_t *w, const int64_t *b,
             const int64_t *x, int32_t n_in, int32_t n_out, int nonlin,
             int64_t *out);

/* ---- Captured graphs (csrc/replay.c) -------------------------------------
 * A graph captured once as a flat program -- op codes and operand positions
 * in topological order -- and replayed in C: forward/backward with exactly
 * the eager rules, and a batched run over many input rows in plain doubles.
 * A graph belongs to the context it was captured from.  Calls on one graph
 * are serialised by the graph's own lock; graphs of one context replay in
 * parallel, taking the context's lock only briefly (see each function). */
typedef struct ag_graph ag_graph;

/* Capture everything root reaches into *out, a graph the caller owns.  The
 * program lists the nodes children first, root last, in the order
 * ag_backward visits them.  The graph takes one reference on root, which
 * keeps every captured node alive until ag_graph_free.  Returns AG_OK, or
 * a status (AG_ERR_NOMEM, a bad handle) with *out = NULL. */
int ag_graph_new(ag_ctx *ctx, int64_t root, ag_graph **out);

/* Free a graph and give back its reference on the root (which may free the
 * nodes).  NULL is accepted.  The graph must not be in use. */
void ag_graph_free(ag_graph *g);

/* Number of nodes in the program (>= 1). */
int32_t ag_graph_size(const ag_graph *g);

/* Program position of node h, or -1 when h is not a node of the graph (a
 * stale handle never is). */
int32_t ag_graph_position(const ag_graph *g, int64_t h);

/* Recompute every node from its leaves, as building the graph anew would:
 * the value of each op node (with Python's int/float types and errors, as
 * ag_apply), its grad reset to int 0 (a fresh node's).  LEAF and OPAQUE
 * nodes are sources: their data is read, nothing of theirs is written.
 * Runs in one pass under the context lock into the graph's own arrays and
 * commits them only when every node succeeded; returns AG_OK, or the
 * status of the first failing node in program order -- and then no node
 * has changed.  (Nodes nothing outside the graph references keep their
 * state in the graph until something names them: every function that
 * reads a node sees what this call computed.) */
int ag_graph_forward(ag_graph *g);

/* Options of a graph's single-row replay (ag_graph_set_options). */
enum {
    AG_GRAPH_INEXACT = 1,  /* float powers by cheaper formulas (x ** -1 as
                            * 1 / x, x ** 2 as x * x, ...): results within
                            * an ulp or two, the same types and errors     */
    AG_GRAPH_UNFUSED = 2   /* one step per node: no fused runs of float sums
                            * and products (the same results, for tests)   */
};

/* Set the options of g's ag_graph_forward / ag_graph_backward: 0 (the
 * default: bit-identical to the eager engine, fused) or AG_GRAPH_* bits.
 * AG_OK, or AG_ERR_ARG for an unknown bit (nothing changed). */
int ag_graph_set_options(ag_graph *g, int options);

/* ag_backward(root) without the topological sort: root's grad = int 1, then
 * every node's contributions in reverse program order, accumulated into the
 * grads as they are (never zeroed).  Bit-identical to ag_backward.  Holds
 * the context lock for the pass.  Returns AG_OK. */
int ag_graph_backward(ag_graph *g);

/* Batched replay in plain doubles (no Python int semantics and no errors:
 * log(-1) is nan, overflow is inf).  Row r gives input i the value
 * rows[r * row_stride + i]; inputs are n_inputs distinct LEAF nodes of the
 * graph.  Every other source node keeps its current data for all rows.  For
 * each row the root is computed into out[r] (out may be NULL) and, when
 * n_grads > 0, back-propagated from a root grad of 1; grad_out[j] receives
 * the gradient of node grads[j] (any node of the graph) summed over all
 * rows.  No node's data or grad changes (see ag_add_grads).  Rows are done
 * in blocks (up to 64), vectorised across the rows of a block; threads > 1
 * splits the rows over up to that many threads (at most one per block and
 * per 2**18 node-rows of work, so small runs stay on the calling thread;
 * each with its own scratch), whose sums are added in thread order -- equal to
 * threads = 1 up to floating-point reassociation.  The context lock is held
 * only to read source data.
 * Returns AG_OK; AG_ERR_STALE (an input or grads handle whose node was
 * freed), AG_ERR_NOT_LEAF (an input is not a leaf of the graph),
 * AG_ERR_ARG (a grads node not in the graph, a repeated input, a negative
 * count, row_stride < n_inputs, threads < 1, NULL where data is needed) or
 * AG_ERR_NOMEM, with nothing written. */
int ag_graph_run(ag_graph *g, const int64_t *inputs, int32_t n_inputs,
                 const double *rows, int64_t n_rows, int64_t row_stride,
                 const int64_t *grads, int32_t n_grads, double *out,
                 double *grad_out, int threads);

/* ag_graph_run that also gives each row's gradients: row_grads (NULL: as
 * ag_graph_run) receives n_rows * n_grads doubles, row r's gradient of
 * node grads[j] at row_grads[r * n_grads + j] -- each what a run of that
 * row alone gives, bit for bit.  grad_out then receives the sums of those
 * per-row gradients (equal to ag_graph_run's up to the order of the
 * additions).  Same contract otherwise; on error nothing is written. */
int ag_graph_run_rows(ag_graph *g, const int64_t *inputs, int32_t n_inputs,
                      const double *rows, int64_t n_rows, int64_t row_stride,
                      const int64_t *grads, int32_t n_grads, double *out,
                      double *grad_out, double *row_grads, int threads);

/* Bulk parameter updates, one lock for n nodes.  Every handle is checked
 * first: on a bad one, its status and nothing changes.  Return AG_OK. */
/* grad = int 0, for each node (Module.zero_grad()). */
int ag_zero_grads(ag_ctx *ctx, const int64_t *hs, size_t n);
/* grad = grad + v[i] as a float, for each hs[i] (a repeated node adds
 * twice). */
int ag_add_grads(ag_ctx *ctx, const int64_t *hs, size_t n, const double *v);
/* data = data - lr * grad as a float, for each node: micrograd's SGD update
 * `p.data -= lr * p.grad` for a float lr, bit for bit. */
int ag_sgd(ag_ctx *ctx, const int64_t *hs, size_t n, double lr);

/* ---- Saved graphs (csrc/serialize.c) -------------------------------------
 * A captured graph as bytes -- its program and the data and grads of its
 * sources (LEAF and OPAQUE nodes, names included), compact, versioned and
 * the same on every machine (format: serialize.c) -- and back, in any
 * context of any process.  A loaded graph is the graph built anew from its
 * sources: its op nodes hold the values the eager rules give them (as after
 * ag_graph_forward), with grad int 0, and program positions are kept. */

/* Write the bytes of graph g to buf when they fit in cap bytes (buf may be
 * NULL); returns their size either way (call again with that much room).
 * Reads the sources under the context lock, so a concurrent change is
 * saved whole or not at all.  AG_ERR_ARG, with nothing written, for what
 * only a C caller makes: a number flagged int that is no finite whole
 * number (ag_leaf(c, 0.5, 1)), a name that is not UTF-8. */
int64_t ag_graph_save(ag_graph *g, void *buf, size_t cap);

/* Check that the len bytes at buf are a saved graph -- header, version,
 * checksum, counts against the length, op codes, arity, every operand an
 * earlier position, ints that are whole numbers, names, every node reached
 * from the root -- without creating anything.  Returns the node count
 * (>= 1), or AG_ERR_FORMAT with *why (why may be NULL) set to a static
 * text naming the first flaw found, or AG_ERR_NOMEM. */
int64_t ag_graph_check(const void *buf, size_t len, const char **why);

/* Build the graph saved in buf (len bytes) in ctx and capture it into *out,
 * a graph the caller owns (ag_graph_free), which holds the only reference
 * to its nodes: get handles with ag_graph_sources / ag_graph_handles.  The
 * bytes are checked whole first (ag_graph_check), then the nodes are made
 * by the eager constructors, children first, with recording on (whatever
 * this thread's ag_set_grad_enabled says).  Returns AG_OK; or a status with
 * *out = NULL and no node left behind: AG_ERR_FORMAT (the bytes are no
 * saved graph, or its program is not in the order capture gives),
 * AG_ERR_NOMEM, AG_ERR_LIMIT, or what building the nodes from the saved
 * source data raises (AG_ERR_DOMAIN for log of a negative number, ...). */
int ag_graph_load(ag_ctx *ctx, const void *buf, size_t len, ag_graph **out);

/* Program positions of g's sources (LEAF and OPAQUE nodes), in program
 * order: writes up to cap of them, returns how many there are. */
int32_t ag_graph_sources(ag_graph *g, int32_t *positions, size_t cap);

/* The handles of the nodes at the n program positions into out[], each
 * with one reference for the caller.  AG_OK, or AG_ERR_ARG for a position
 * outside the program (then nothing is written or taken). */
int ag_graph_handles(ag_graph *g, const int32_t *positions, size_t n,
                     int64_t *out);
/* CDEF END */

#ifdef __cplusplus
}
#endif
#endif /* AUTOGRAD_C_H */
