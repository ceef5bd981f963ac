/*
 * rules.c -- the out-of-line parts of the op rules (Python's power), and
 * the text the API gives back: op names and status messages.
 */
#include <math.h>
#include "rules.h"

double ag__int_pow(double x, double k) {
    if (x == 0.0) return k == 0.0 ? 1.0 : 0.0;
    if (x == 1.0) return 1.0;
    if (x == -1.0) return fmod(k, 2.0) == 0.0 ? 1.0 : -1.0;
    if (k > 4096.0) return x > 0 || fmod(k, 2.0) == 0.0 ? INFINITY : -INFINITY;
    unsigned long e = (unsigned long)k;
    double r = 1.0;
    while (e) {
        if (e & 1) r *= x;
        e >>= 1;
        if (e) x *= x;
    }
    return r;
}

int ag__python_pow(double x, int x_int, double y, int y_int, double *out,
                   int *out_int) {
    if (x_int && y_int && y >= 0) {          /* int ** non-negative int */
        *out_int = 1;
        return ag__int_result(ag__int_pow(x, y), out);
    }
    *out_int = 0;                            /* float semantics */
    return ag__float_pow(x, y, pow, out);
}

int ag__float_pow(double x, double y, double (*power)(double, double),
                  double *out) {
    if (isfinite(x) && isfinite(y)) {
        if (x == 0.0 && y < 0.0) return AG_ERR_ZERODIV;
        if (x < 0.0 && y != floor(y)) return AG_ERR_COMPLEX;
    }
    double r = power(x, y);
    if (isinf(r) && isfinite(x) && isfinite(y)) return AG_ERR_OVERFLOW;
    *out = r;
    return AG_OK;
}

double ag__grad_power(double x, int x_int, double k, int k_int, double g,
                      int g_int, int *c_int) {
    return ag__grad_power_by(pow, x, x_int, k, k_int, g, g_int, c_int);
}

double ag__grad_power_by(double (*power)(double, double), double x, int x_int,
                         double k, int k_int, double g, int g_int, int *c_int) {
    double e = k - 1.0;
    int p_int = x_int && k_int && e >= 0;
    double d = k * (p_int ? ag__int_pow(x, e) : power(x, e));
    if (p_int) d += 0.0;
    *c_int = p_int && g_int;
    return d * g;
}

#define AG__NAME(code, rule, name, arity) [AG_##code] = name,
static const char *const op_names[] = {AG_OP_LIST(AG__NAME)};
_Static_assert(sizeof op_names / sizeof *op_names == AG_OP_COUNT,
               "one name per op code");
_Static_assert(AG_OP_COUNT <= 255, "op codes fit the arena's uint8_t op[], "
                                   "255 marking a free slot");

const char *ag_op_name(int op) {
    return op >= 0 && op < AG_OP_COUNT ? op_names[op] : "?";
}

int ag_op_arity(int op) {
    int n = ag__arity(op);
    return n >= 0 ? n : AG_ERR_ARG;
}

const char *ag_status_str(int status) {
    switch ((ag_status)status) {
    case AG_OK: return "ok";
    case AG_ERR_NOMEM: return "out of memory: the node arena could not grow";
    case AG_ERR_LIMIT: return "node limit reached";
    case AG_ERR_ZERODIV: return "0.0 cannot be raised to a negative power";
    case AG_ERR_OVERFLOW: return "math range error: result too large";
    case AG_ERR_INT_RANGE: return "int result too large for a double";
    case AG_ERR_DOMAIN: return "math domain error";
    case AG_ERR_COMPLEX:
        return "negative number cannot be raised to a fractional power "
               "(the result would be complex)";
    case AG_ERR_ARG: return "invalid argument";
    case AG_ERR_NOT_LEAF: return "input is not a leaf of the graph";
    case AG_ERR_STALE:
        return "the node was freed: this handle outlived it (a stale handle)";
    case AG_ERR_USER_RULE:
        return "the graph has an op whose backward rule is the caller's own "
               "(a Python _backward): it cannot run in C";
    case AG_ERR_FORMAT:
        return "not a saved graph: the bytes are cut, changed or of another "
               "format version";
    }
    return "unknown status";
}
