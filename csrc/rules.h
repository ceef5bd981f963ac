/*
 * rules.h -- what every op computes and passes back: the one home of op
 * semantics (not public).
 *
 * Each op of AG_OP_LIST (autograd_c.h) has, under its rule stem R:
 *
 *   double R_value(x, y, k)      its value in plain doubles: the batched
 *                                replay's forward, and the float case of R_eval
 *   int R_eval(o, &out, &out_int) its value with Python's number rules: int
 *                                or float result, Python's errors (AG_OK or a
 *                                status); eager constructors and single-row
 *                                replay
 *   double R_grad_a(o, g, g_int, &c_int)   what child a receives from the
 *   double R_grad_b(...)         node's grad g: micrograd's chain rule term,
 *                                an int when Python's would be (*c_int);
 *                                R_grad_b for two-child ops only
 *   R_reads                      the children's operands R_grad_* read
 *                                (AG_READS_*): the eager backward loads
 *                                only those
 *
 * The eager backward calls R_grad_* with the nodes' real int flags; the
 * batched replay calls the same functions with every flag 0, which leaves
 * the float expressions alone, so both give the same bits by construction.
 * The switches over ops (ag__eval here, the eager backward, the batched
 * kernels) are made from AG_OP_LIST, so an op without its rules does not
 * compile.  Sources (LEAF, OPAQUE) have no rules and are never evaluated.
 */
#ifndef AG_RULES_H
#define AG_RULES_H

#include <math.h>
#include "autograd_c.h"
#include "compiler.h"


/* What a rule sees of one node: its children's values and Python types
 * (x = child a; y = child b, 0 when absent), the POW_CONST exponent k and,
 * in backward, the node's own value out. */
typedef struct ag_operands {
    double x, y, k, out;
    int x_int, y_int, k_int;
} ag_operands;

/* Which operands an op's R_grad_* read: x and x_int, y and y_int, k
 * (out, the node's own value, is always given).  A child's value is a load
 * from anywhere in the arena (a likely cache miss), so the eager backward
 * loads no more than these. */
enum {
    AG_READS_X = 1,
    AG_READS_Y = 2,
    AG_READS_K = 4,
    AG_READS_TYPES = 8, /* for a float grad, R_grad_* still depends on the
                         * operands' int types (Python's int power): the
                         * compiled replay's float kernels take every op
                         * without this bit */
    AG_READS_OUT = 16,  /* R_grad_* read out (the eager backward loads it for
                         * every op; the compiled replay only for these) */
    AG_FLOAT_MAY_FAIL = 32  /* not a read: R_eval may return an error status
                             * for float operands (exp's overflow, log's
                             * domain, powers) -- a compiled replay whose
                             * nodes have none needs no second buffer */
};

/* x ** k for an int x and an int k >= 0, by squaring: exact while every
 * product stays within 2**53, like Python's int power there (rules.c). */
double ag__int_pow(double x, double k);

/* Python's x ** y for numbers whose types are given by x_int, y_int; the
 * float case is pow_value.  Writes *out and *out_int; returns AG_OK or an
 * error status (rules.c: out of line, so callers keep their registers). */
int ag__python_pow(double x, int x_int, double y, int y_int, double *out,
                   int *out_int);

/* Python's float x ** y with x ** y computed by power (pow, or a cheaper
 * formula for an inexact replay): ZeroDivisionError, complex results and
 * overflow as Python's.  Writes *out; AG_OK or the status. */
int ag__float_pow(double x, double y, double (*power)(double, double),
                  double *out);

/* x ** k of floats in an inexact replay (AG_GRAPH_INEXACT): a division or
 * a product for the common exponents instead of pow (within an ulp or two
 * of it). */
static inline double ag__pow_inexact(double x, double k) {
    if (k == -1.0) return 1.0 / x;
    if (k == 2.0) return x * x;
    if (k == -2.0) return 1.0 / (x * x);
    return pow(x, k);
}

/* An int result that left the range of doubles is an error; an int zero is
 * stored as +0.0 (Python's int 0 has no sign). */
static inline int ag__int_result(double r, double *out) {
    if (!isfinite(r)) return AG_ERR_INT_RANGE;
    *out = r + 0.0;
    return AG_OK;
}

/* old + v, a gradient sum with Python's int/float rule (old_int, v_int:
 * the types of the two terms): an int while both are, +0.0 for an int
 * zero; an int sum that overflows a double becomes a float (inf).  *r_int
 * receives the sum's type.  The eager backward and the compiled replay
 * (compiled.c) accumulate with it. */
static AG_ALWAYS_INLINE double ag__grad_sum(double old, int old_int, double v,
                                            int v_int, int *r_int) {
    int is_int = old_int && v_int;
    double r = old + (v_int ? v + 0.0 : v);
    if (is_int) {
        r += 0.0;
        if (!isfinite(r)) is_int = 0;
    }
    *r_int = is_int;
    return r;
}

/* A float result (no Python int case, no error). */
static inline int ag__float_result(double r, double *out, int *out_int) {
    *out = r;
    *out_int = 0;
    return AG_OK;
}

/* micrograd's (k * x**(k-1)) * g: what x receives from x ** k; an int when
 * x, k and g are ints and k >= 1 (Python's int power).  Out of line
 * (rules.c): inlined into the eager backward's two specialisations, its
 * four copies cost the common ops more than the call costs pow. */
double ag__grad_power(double x, int x_int, double k, int k_int, double g,
                      int g_int, int *c_int);
/* The same with x ** (k - 1) computed by power where it is a float. */
double ag__grad_power_by(double (*power)(double, double), double x, int x_int,
                         double k, int k_int, double g, int g_int, int *c_int);

/* ---- add: a + b ---------------------------------------------------------- */
enum { add_reads = 0 };
static AG_ALWAYS_INLINE double add_value(double x, double y, double k) {
    (void)k;
    return x + y;
}
static AG_ALWAYS_INLINE int add_eval(const ag_operands *o, double *out, int *out_int) {
    if (o->x_int && o->y_int) {
        *out_int = 1;
        return ag__int_result(add_value(o->x, o->y, 0), out);
    }
    return ag__float_result(add_value(o->x, o->y, 0), out, out_int);
}
static AG_ALWAYS_INLINE double add_grad_a(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    (void)o;
    *c_int = g_int;
    return g;
}
static AG_ALWAYS_INLINE double add_grad_b(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    return add_grad_a(o, g, g_int, c_int);
}

/* ---- mul: a * b ---------------------------------------------------------- */
enum { mul_reads = AG_READS_X | AG_READS_Y };
static AG_ALWAYS_INLINE double mul_value(double x, double y, double k) {
    (void)k;
    return x * y;
}
static AG_ALWAYS_INLINE int mul_eval(const ag_operands *o, double *out, int *out_int) {
    if (o->x_int && o->y_int) {
        *out_int = 1;
        return ag__int_result(mul_value(o->x, o->y, 0), out);
    }
    return ag__float_result(mul_value(o->x, o->y, 0), out, out_int);
}
static AG_ALWAYS_INLINE double mul_grad_a(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    *c_int = o->y_int && g_int;
    return o->y * g;
}
static AG_ALWAYS_INLINE double mul_grad_b(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    *c_int = o->x_int && g_int;
    return o->x * g;
}

/* ---- pow_const: a ** k, k a number kept on the node ---------------------- */
enum { pow_const_reads = AG_READS_X | AG_READS_K | AG_READS_TYPES | AG_FLOAT_MAY_FAIL };
static AG_ALWAYS_INLINE double pow_const_value(double x, double y, double k) {
    (void)y;
    return pow(x, k);
}
static AG_ALWAYS_INLINE int pow_const_eval(const ag_operands *o, double *out,
                                 int *out_int) {
    double r;           /* through locals: out must not escape into the call */
    int r_int, st = ag__python_pow(o->x, o->x_int, o->k, o->k_int, &r, &r_int);
    *out = r;
    *out_int = r_int;
    return st;
}
static AG_ALWAYS_INLINE double pow_const_grad_a(const ag_operands *o, double g,
                                      int g_int, int *c_int) {
    return ag__grad_power(o->x, o->x_int, o->k, o->k_int, g, g_int, c_int);
}

/* ---- pow: a ** b, both nodes --------------------------------------------- */
enum { pow_reads = AG_READS_X | AG_READS_Y | AG_READS_TYPES | AG_READS_OUT |
                   AG_FLOAT_MAY_FAIL };
static AG_ALWAYS_INLINE double pow_value(double x, double y, double k) {
    (void)k;
    return pow(x, y);
}
static AG_ALWAYS_INLINE int pow_eval(const ag_operands *o, double *out, int *out_int) {
    double r;
    int r_int, st = ag__python_pow(o->x, o->x_int, o->y, o->y_int, &r, &r_int);
    *out = r;
    *out_int = r_int;
    return st;
}
static AG_ALWAYS_INLINE double pow_grad_a(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    return ag__grad_power(o->x, o->x_int, o->y, o->y_int, g, g_int, c_int);
}
/* d(x**y)/dy = x**y * ln x; 0 where x == 0 and y >= 0 (as PyTorch). */
static AG_ALWAYS_INLINE double pow_grad_b(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    (void)g_int;
    *c_int = 0;
    return (o->x == 0.0 && o->y >= 0.0 ? 0.0 : o->out * log(o->x)) * g;
}

/* ---- relu: 0 if a < 0 else a (micrograd; int 0 for a negative a) -------- */
enum { relu_reads = AG_READS_OUT };
static AG_ALWAYS_INLINE double relu_value(double x, double y, double k) {
    (void)y, (void)k;
    return x < 0 ? 0.0 : x;
}
static AG_ALWAYS_INLINE int relu_eval(const ag_operands *o, double *out, int *out_int) {
    *out = relu_value(o->x, 0, 0);
    *out_int = o->x < 0 ? 1 : o->x_int;
    return AG_OK;
}
static AG_ALWAYS_INLINE double relu_grad_a(const ag_operands *o, double g, int g_int,
                                 int *c_int) {
    *c_int = g_int;                          /* (out > 0) * g */
    return (o->out > 0 ? 1.0 : 0.0) * g;
}

/* ---- tanh ----------------------------------------------------------------- */
enum { tanh_reads = AG_READS_OUT };
static AG_ALWAYS_INLINE double tanh_value(double x, double y, double k) {
    (void)y, (void)k;
    return tanh(x);
}
static AG_ALWAYS_INLINE int tanh_eval(const ag_operands *o, double *out, int *out_int) {
    return ag__float_result(tanh_value(o->x, 0, 0), out, out_int);
}
static AG_ALWAYS_INLINE double tanh_grad_a(const ag_operands *o, double g, int g_int,
                                 int *c_int) {
    (void)g_int;
    *c_int = 0;
    return (1.0 - o->out * o->out) * g;
}

/* ---- exp: OverflowError where math.exp raises it --------------------------- */
enum { exp_reads = AG_READS_OUT | AG_FLOAT_MAY_FAIL };
static AG_ALWAYS_INLINE double exp_value(double x, double y, double k) {
    (void)y, (void)k;
    return exp(x);
}
static AG_ALWAYS_INLINE int exp_eval(const ag_operands *o, double *out, int *out_int) {
    ag__float_result(exp_value(o->x, 0, 0), out, out_int);
    return isinf(*out) && isfinite(o->x) ? AG_ERR_OVERFLOW : AG_OK;
}
static AG_ALWAYS_INLINE double exp_grad_a(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    (void)g_int;
    *c_int = 0;
    return o->out * g;
}

/* ---- log: ValueError for a <= 0 (NaN passes through) ---------------------- */
enum { log_reads = AG_READS_X | AG_FLOAT_MAY_FAIL };
static AG_ALWAYS_INLINE double log_value(double x, double y, double k) {
    (void)y, (void)k;
    return log(x);
}
static AG_ALWAYS_INLINE int log_eval(const ag_operands *o, double *out, int *out_int) {
    if (o->x <= 0.0) return AG_ERR_DOMAIN;
    return ag__float_result(log_value(o->x, 0, 0), out, out_int);
}
static AG_ALWAYS_INLINE double log_grad_a(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    (void)g_int;
    *c_int = 0;
    return g / o->x;
}

/* ---- sigmoid: 1 / (1 + e**-a), computed without overflow ------------------ */
enum { sigmoid_reads = AG_READS_OUT };
static AG_ALWAYS_INLINE double sigmoid_value(double x, double y, double k) {
    (void)y, (void)k;
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}
static AG_ALWAYS_INLINE int sigmoid_eval(const ag_operands *o, double *out,
                               int *out_int) {
    return ag__float_result(sigmoid_value(o->x, 0, 0), out, out_int);
}
static AG_ALWAYS_INLINE double sigmoid_grad_a(const ag_operands *o, double g, int g_int,
                                    int *c_int) {
    (void)g_int;
    *c_int = 0;
    return o->out * (1.0 - o->out) * g;
}

/* ---- abs: |a|, an int for an int a; gradient sign(a), 0 at 0 -------------- */
enum { abs_reads = AG_READS_X };
static AG_ALWAYS_INLINE double abs_value(double x, double y, double k) {
    (void)y, (void)k;
    return fabs(x);
}
static AG_ALWAYS_INLINE int abs_eval(const ag_operands *o, double *out, int *out_int) {
    *out = abs_value(o->x, 0, 0);
    *out_int = o->x_int;
    return AG_OK;
}
static AG_ALWAYS_INLINE double abs_grad_a(const ag_operands *o, double g, int g_int,
                                int *c_int) {
    *c_int = g_int;                   /* ((a > 0) - (a < 0)) * g, as Python */
    return (double)((o->x > 0) - (o->x < 0)) * g;
}

/* ---- the switches made from the list ------------------------------------ */

/* A switch made from the list has one case per row and no default: each
 * defines ROW(code, rule, name, arity) to pick X_0 (sources), X_1 or X_2
 * (ops of one / two children) by the row's arity, and X_n(code, rule)
 * writes the case. */

/* Value of op over operands o with Python's types and errors: AG_OK or a
 * status; writes *out and *out_int.  AG_ERR_ARG for a source or a code that
 * is no op. */
static AG_ALWAYS_INLINE int ag__eval(int op, const ag_operands *o,
                                     double *out, int *out_int) {
#define AG__EVAL_ROW(code, rule, name, arity) AG__EVAL_##arity(code, rule)
#define AG__EVAL_0(code, rule) case AG_##code: return AG_ERR_ARG;
#define AG__EVAL_1(code, rule) case AG_##code: return rule##_eval(o, out, out_int);
#define AG__EVAL_2 AG__EVAL_1
    switch ((ag_op)op) {
    AG_OP_LIST(AG__EVAL_ROW)
    }
    return AG_ERR_ARG;                       /* not an op code */
}

/* Number of children op's rules read (0: a source); -1 for a code that is
 * no op. */
static inline int ag__arity(int op) {
#define AG__ARITY_ROW(code, rule, name, arity) case AG_##code: return arity;
    switch ((ag_op)op) {
    AG_OP_LIST(AG__ARITY_ROW)
    }
    return -1;
}

#endif /* AG_RULES_H */
