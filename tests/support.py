"""Helpers shared by the test files (imported as `support`: pytest puts
tests/ on sys.path).

* the arena's live-node count (`live_nodes`, `gc_paused`) and the process's
  RSS (`rss_bytes`, `UNDER_ASAN`);
* comparing numbers and graphs: `same_number`, `bits`, `reachable`, `topo`,
  `raised`, and micrograd's backward run on absolute values
  (`local_derivatives`, `grad_magnitudes`), the scale of the rounding that
  summation order may cause;
* the one random-program generator (`random_program`, and `programs` that
  draws the same leaves and steps with hypothesis) and its interpreter
  (`run_program`), which runs the same program on micrograd's Value and on
  ours;
* `run_threads`.
"""
import collections
import contextlib
import gc
import math
import os
import signal
import struct
import threading
import time

from hypothesis import strategies as st

import autograd_c

# --------------------------------------------------------------------------
# live nodes, memory

# Under AddressSanitizer (make asan preloads its runtime) freed memory sits
# in a quarantine by design, so the process's RSS says nothing about leaks:
# the RSS bounds are checked only without it (the live-node counts always).
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def rss_bytes():
    """Resident set size of this process now (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_nodes(collect=True):
    """Live nodes in the arena, after the dead Values have been released.

    collect=True (the default): collect cyclic garbage first, as a Value
    kept alive only by a reference cycle (say a traceback left by an earlier
    test) would otherwise be freed by the garbage collector at some random
    point of a test; then freeze what survived (gc.freeze), so that the
    next collections scan only what was made since -- most of this suite's
    objects (pytest's, hypothesis's, the modules') are not rescanned on every
    count.  The freeze comes after the collect and the count, so it never
    changes the count it returns; and since a frozen object is still freed by
    reference counting, freezing can only keep a Value alive that sits in a
    reference cycle which becomes garbage later -- which would make a later
    count higher, never lower: it cannot hide a leak.

    Collected until the count stays: releasing a kept user op's Value (its
    node no longer reached) drops its rule's closure, whose own cycles are
    garbage only from then on.

    collect=False: the count as it is, for use inside gc_paused(), where
    nothing but the engine's own work moves it."""
    if collect:
        count = None
        while True:
            gc.collect()
            before, count = count, autograd_c.stats()["live_nodes"]
            if count == before:
                break
        gc.freeze()
        return count
    return autograd_c.stats()["live_nodes"]


@contextlib.contextmanager
def gc_paused():
    """No automatic cyclic garbage collection inside (which could free an
    unrelated Value at any moment): live_nodes(collect=False) is exact."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------
# comparing numbers and graphs

def same_number(x, y):
    """Identical numbers: same type, equal, same repr (so 0.0 != -0.0);
    NaN equals NaN."""
    if type(x) is not type(y):
        return False
    if isinstance(x, float) and math.isnan(x):
        return math.isnan(y)
    return x == y and repr(x) == repr(y)


def bits(x):
    """A number's type and exact bits: -0.0 != 0.0, a NaN equals a NaN of the
    same bits."""
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    return (type(x).__name__, x)


def raised(fn):
    """(exception type, message) of fn(), or None: the exception is not
    kept, so nothing it references stays alive."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- the caller checks the type
        return type(e), str(e)
    return None


def reachable(root):
    """The set of Values reachable from root through _prev (root included),
    for either engine: micrograd's by identity, ours by node."""
    seen, stack = set(), [root]
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(v._prev)
    return seen


def topo(root, key=None):
    """The Values reachable from root, children before parents (iterative);
    with key, each node's children are visited in sorted(key=key) order, so
    the order depends on the graph alone, not on set iteration."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
        elif v not in seen:
            seen.add(v)
            stack.append((v, True))
            kids = v._prev if key is None else sorted(v._prev, key=key)
            stack.extend((ch, False) for ch in kids)
    return order


def local_derivatives(v):
    """(child, |d v / d child|) for each contribution micrograd's backward
    of v adds into a child's grad (a + a and a * a: two contributions to a).
    An infinite derivative (x ** k at x = 0, k < 1) is inf."""
    kids = list(v._prev)
    if v._op == "+":
        return [(k, 1.0) for k in kids * (3 - len(kids))]
    if v._op == "*":
        if len(kids) == 1:
            return [(kids[0], abs(kids[0].data))] * 2
        return [(kids[0], abs(kids[1].data)), (kids[1], abs(kids[0].data))]
    if v._op.startswith("**"):
        text = v._op[2:]
        k = int(text) if text.lstrip("-").isdigit() else float(text)
        try:
            d = abs(k) * abs(kids[0].data) ** (k - 1)
        except (ZeroDivisionError, OverflowError):
            d = math.inf
        return [(kids[0], d)]
    if v._op == "ReLU":
        return [(kids[0], 1.0 if v.data > 0 else 0.0)]
    if v._op == "abs":
        return [(kids[0], 1.0 if kids[0].data != 0 else 0.0)]
    return []


def grad_magnitudes(root):
    """For every micrograd node root reaches: the sum over all backward
    contributions of their absolute values (backward run on |.|), keyed by
    id(node).

    A float grad is a sum of contributions, each made of products of local
    derivatives; micrograd sums the contributions into one node in set
    iteration order (memory addresses), autograd_c in its own fixed order.
    Floating point addition is not associative, so the two can differ by
    rounding, and that rounding is bounded by (number of terms) * eps * the
    sum of the absolute values of the terms -- not by the result, which can
    cancel to ~0.  This gives the scale for the tolerance."""
    mag = {id(root): 1.0}
    for v in reversed(topo(root)):
        g = mag.get(id(v), 0.0)
        for child, d in local_derivatives(v):
            mag[id(child)] = mag.get(id(child), 0.0) + d * g
    return mag


def grads_match(g_ac, g_mg, scale):
    """grad equal up to summation order (see support.grad_magnitudes): ints
    exact, floats within 1e-9 of the scale (generous: the rounding error is
    about depth * 2**-53 of it); non-finite floats exactly (NaN == NaN), as
    a sum with an inf or NaN term is the same in any order."""
    if type(g_ac) is not type(g_mg):
        return False
    if isinstance(g_mg, int):
        return g_ac == g_mg
    if math.isnan(g_mg) or math.isnan(g_ac):
        return math.isnan(g_mg) and math.isnan(g_ac)
    if math.isinf(g_mg) or math.isinf(g_ac) or not math.isfinite(scale):
        return g_ac == g_mg
    return abs(g_ac - g_mg) <= 1e-9 * scale + 1e-300



# --------------------------------------------------------------------------
# random programs: one generator, one interpreter, either engine
#
# A program is Program(leaves, steps): leaf numbers, then steps
# (op, i, j, k).  Running it keeps a pool of Values, the leaves first; a step
# applies OPS[op] to the operands pool[i % len(pool)] and pool[j % len(pool)]
# (a negative index counts from the end: recent nodes) and the number k (a
# constant, an exponent or a base, as the op needs).  Operands are picked
# from the pool, so nodes get reused.  A step that raises, or whose
# result is complex (micrograd: a negative base to a fractional power), is
# skipped; a result joins the pool unless the caller's keep() says not.  The
# root ties the pool together: the sum of the pool (every pool Value
# reaches it), or the last Value of the pool.

# op name -> the op on Values a, b (of either engine) and a number k
OPS = {
    "add": lambda a, b, k: a + b,
    "sub": lambda a, b, k: a - b,
    "mul": lambda a, b, k: a * b,
    "div": lambda a, b, k: a / b,
    "addc": lambda a, b, k: a + k,
    "subc": lambda a, b, k: a - k,
    "mulc": lambda a, b, k: a * k,
    "divc": lambda a, b, k: a / k,
    "radd": lambda a, b, k: k + a,
    "rsub": lambda a, b, k: k - a,
    "rmul": lambda a, b, k: k * a,
    "rdiv": lambda a, b, k: k / a,
    "neg": lambda a, b, k: -a,
    "relu": lambda a, b, k: a.relu(),
    "pow": lambda a, b, k: a ** k,
    # autograd_c only
    "powv": lambda a, b, k: a ** b,
    "rpow": lambda a, b, k: k ** a,
    "tanh": lambda a, b, k: a.tanh(),
    "exp": lambda a, b, k: a.exp(),
    "log": lambda a, b, k: a.log(),
    "sigmoid": lambda a, b, k: a.sigmoid(),
    "abs": lambda a, b, k: abs(a),
}
# what micrograd 0.1.0 has too; every op (a new op: add it to OPS)
MICROGRAD_OPS = ("add", "sub", "mul", "div", "addc", "subc", "mulc", "divc",
                 "radd", "rsub", "rmul", "rdiv", "neg", "relu", "pow")
ALL_OPS = tuple(OPS)
CONSTANT_OPS = ("addc", "subc", "mulc", "divc", "radd", "rsub", "rmul", "rdiv")

ROUND_FLOATS = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 0.1, 3.0, 1.5]
ROUND_EXPONENTS = [0.5, -0.5, 1.5, 2.0, -1.0, 0.0, 1.0, 3.0, -2.0, 0.25, 2.5]
POSITIVE_BASES = [2, 0.5, 1.5, 3, math.e]


def _small(rng, bound, rounds):
    """An int in [-bound, bound], one of rounds, or a float in
    +-[1e-3, bound] (no subnormals, whose reciprocals overflow)."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randint(-bound, bound)
    if kind == 1:
        return rng.choice(rounds)
    return rng.choice([1, -1]) * rng.uniform(1e-3, bound)


def small_number(rng):
    """An int in [-4, 4], a round float, or a float in +-[1e-3, 4]."""
    return _small(rng, 4, ROUND_FLOATS)


def small_exponent(rng):
    """An int in [-3, 3], a round float, or a float in +-[1e-3, 3]."""
    return _small(rng, 3, ROUND_EXPONENTS)


Program = collections.namedtuple("Program", "leaves steps")


def random_step(rng, ops=MICROGRAD_OPS, number=small_number, exponent=small_exponent,
                base=None, recent=0.7):
    """One random step (op, i, j, k).  ops: the op names to pick from.
    number(rng), exponent(rng), base(rng): the constants, the exponents of
    "pow", the bases of "rpow" (default: positive numbers).  recent: how
    often the first operand is one of the six newest Values (deep graphs)
    rather than any Value."""
    op = rng.choice(ops)
    if op == "pow":
        k = exponent(rng)
    elif op == "rpow":
        k = base(rng) if base else rng.choice(POSITIVE_BASES)
    elif op in CONSTANT_OPS:
        k = number(rng)
    else:
        k = 0
    i = -rng.randint(1, 6) if rng.random() < recent else rng.randrange(64)
    return (op, i, rng.randrange(64), k)


def random_program(rng, n_leaves, n_steps, number=small_number, **step_options):
    """A random Program: n_leaves leaves number(rng), n_steps random_step()s
    (a count, or a (low, high) range).  rng: a random.Random; for hypothesis,
    programs() draws the same leaves and steps."""
    def count(n):
        return rng.randint(*n) if isinstance(n, tuple) else n
    leaves = [number(rng) for _ in range(count(n_leaves))]
    steps = [random_step(rng, number=number, **step_options) for _ in range(count(n_steps))]
    return Program(leaves, steps)


class DrawnRandom:
    """The random.Random methods the generator calls, each answered by a
    hypothesis draw (use inside st.composite)."""

    def __init__(self, draw):
        self.draw = draw

    def randint(self, a, b):
        return self.draw(st.integers(a, b))

    def randrange(self, n):
        return self.draw(st.integers(0, n - 1))

    def choice(self, seq):
        return self.draw(st.sampled_from(seq))

    def random(self):
        return self.draw(st.floats(0, 1, exclude_max=True))

    def uniform(self, a, b):
        return self.draw(st.floats(a, b))


def programs(n_leaves, n_steps, number=small_number, **step_options):
    """A hypothesis strategy for the Programs random_program makes, drawn as
    lists (so that a failing program shrinks step by step)."""
    def sizes(n):
        return dict(zip(("min_size", "max_size"), n if isinstance(n, tuple) else (n, n)))
    leaf = st.composite(lambda draw: number(DrawnRandom(draw)))()
    step = st.composite(lambda draw: random_step(DrawnRandom(draw), number=number,
                                                 **step_options))()
    return st.builds(Program, st.lists(leaf, **sizes(n_leaves)),
                     st.lists(step, **sizes(n_steps)))


PYTHON_ERRORS = (ZeroDivisionError, OverflowError, ValueError)

Step = collections.namedtuple("Step", "op result a b k")


class Run:
    """What running a program on one engine made.

    leaves: the leaf Values; steps: per step a Step(op, result, a, b, k),
    result None where the step was skipped; outcomes: per step ("ok", kept)
    | ("raise", exception type) | ("complex",) | ("skipped",); pool: the
    Values operands were picked from (None for a kept result not built, see
    run_program's only); sums: the nodes of the sum that makes the root;
    root."""

    def __init__(self):
        self.leaves, self.steps, self.outcomes, self.pool, self.sums = [], [], [], [], []
        self.root = None


def run_program(V, program, keep=None, root="sum", plan=None, on_fail=None, only=None):
    """Run program with the engine whose Value class is V.

    Without plan, each step's outcome is decided here: a step that raises one
    of PYTHON_ERRORS or makes a complex number is skipped, and a result joins
    the pool when keep(op, result, a, k) (default: always).

    With plan (a Run of the same program, maybe with other leaf values, on
    either engine) the plan decides: steps the plan skipped are skipped --
    on_fail(n, op, call), if given, is then called with a function that runs
    the step, and returns the outcome to record -- and results join the pool
    where the plan's did.  A step the plan ran that raises here propagates.
    only (a set of step numbers, with plan): build just those steps (say the
    ones the root reaches); the others are skipped, their pool places None.

    root: "sum" (pool[0] + pool[1] + ...) or "last" (the pool's last Value)."""
    run = Run()
    run.leaves = [V(x) for x in program.leaves]
    run.pool = list(run.leaves)
    for n, (op, i, j, k) in enumerate(program.steps):
        a, b = run.pool[i % len(run.pool)], run.pool[j % len(run.pool)]
        fn = OPS[op]
        if plan is not None:
            outcome = plan.outcomes[n]
            if outcome[0] != "ok" or (only is not None and n not in only):
                if outcome[0] != "ok" and on_fail is not None:
                    outcome = on_fail(n, op, lambda: fn(a, b, k))
                elif outcome[0] == "ok":
                    outcome = ("skipped",)
                    if plan.outcomes[n][1]:
                        run.pool.append(None)
                run.outcomes.append(outcome)
                run.steps.append(Step(op, None, a, b, k))
                continue
            r = fn(a, b, k)
        else:
            try:
                r = fn(a, b, k)
            except PYTHON_ERRORS as e:
                run.outcomes.append(("raise", type(e)))
                run.steps.append(Step(op, None, a, b, k))
                continue
            if isinstance(r.data, complex):
                run.outcomes.append(("complex",))
                run.steps.append(Step(op, None, a, b, k))
                continue
            outcome = ("ok", True if keep is None else bool(keep(op, r, a, k)))
        run.outcomes.append(outcome)
        run.steps.append(Step(op, r, a, b, k))
        if outcome[1]:
            run.pool.append(r)
    if root == "sum":
        run.root = run.pool[0]
        for v in run.pool[1:]:
            run.root = run.root + v
            run.sums.append(run.root)
    else:
        run.root = run.pool[-1]
    return run


def steps_reaching(run, root=None):
    """The numbers of the steps whose result root (default: run.root)
    reaches."""
    reach = reachable(run.root if root is None else root)
    return {n for n, s in enumerate(run.steps) if s.result is not None and s.result in reach}


# --------------------------------------------------------------------------
# threads

def run_threads(target, n):
    """Run target(k) on n threads started together; return the results in
    thread order, re-raising the first exception a thread hit."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def work(k):
        try:
            barrier.wait()
            results[k] = target(k)
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


@contextlib.contextmanager
def replaying(graph):
    """While inside: another thread replays graph (forward, backward) over
    and over, holding the locks now and then (a fork lands while it does)."""
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            graph.forward()
            graph.backward()
    t = threading.Thread(target=hammer)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def forked_child_succeeds(check, timeout=20):
    """Fork; the child runs check() and exits at once (os._exit: no pytest
    machinery), 0 when it returned true.  True when it did so within
    timeout seconds; a child hung on a lock is killed (False)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if check() else 3)
        except BaseException:
            os._exit(4)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.005)


def readme_graph(V):
    """micrograd's README example (and ours): [g, a, b, c, d, e, f]."""
    a = V(-4.0)
    b = V(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    return [g, a, b, c, d, e, f]
