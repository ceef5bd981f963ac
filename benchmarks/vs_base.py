"""vs_base.py -- interleaved comparison of two builds of a C benchmark.

    python3 benchmarks/vs_base.py NEW_BINARY BASE_BINARY [ARGS...] [--pairs N]
                                  [--against TEXT]

Runs `NEW ARGS` and `BASE ARGS` in turn (new, base, new, base, ...) N times
(default 9) and reads every figure they print as "<number> us/pass",
"<number> ns/node" or "<number> ns per node-row", keyed by the text of its
line before the numbers.  Prints, per figure, the median of each build and
the median of the pairwise ratios base / new (> 1: the new build is faster),
so that drift of the machine's speed during the run cancels pair by pair.
Figures only the new build prints are listed with its median alone, or,
with --against TEXT, each with the pairwise ratio against the base's figure
of the same unit whose label contains TEXT: the new build's exact=False op
mix against an old build's op mix, say (--against "op mix (issue 12)").
"""
import re
import statistics
import subprocess
import sys

FIGURE = re.compile(r"([0-9]+\.[0-9]+)\s*(us/pass|ns/node|ns per node-row)")


def figures(cmd):
    """{(line label, unit): number} of one run's output."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        label = FIGURE.split(line)[0].strip()
        for number, unit in FIGURE.findall(line):
            key = (label, unit)
            while key in found:                  # same label twice: number it
                key = (key[0] + "'", unit)
            found[key] = float(number)
    return found


def main(argv):
    pairs, against = 9, None
    if "--pairs" in argv:
        i = argv.index("--pairs")
        pairs = int(argv[i + 1])
        del argv[i:i + 2]
    if "--against" in argv:
        i = argv.index("--against")
        against = argv[i + 1]
        del argv[i:i + 2]
    new, base, args = argv[0], argv[1], argv[2:]
    runs = {"new": [], "base": []}
    for _ in range(pairs):
        runs["new"].append(figures([new, *args]))
        runs["base"].append(figures([base, *args]))
    keys = [k for k in runs["new"][0] if all(k in r for r in runs["base"] + runs["new"])]
    only_new = [k for k in runs["new"][0] if k not in keys]
    print(f"{pairs} interleaved pairs: {new} vs {base} {' '.join(args)}")
    print(f"{'figure':<58}{'new':>10}{'base':>10}{'base/new':>10}")
    for k in keys:
        row(k, [r[k] for r in runs["new"]], [r[k] for r in runs["base"]])
    for k in only_new:                       # figures the base does not print
        base_key = next((b for b in runs["base"][0]
                         if against and against in b[0] and b[1] == k[1]), None)
        if base_key:
            row(k, [r[k] for r in runs["new"]], [r[base_key] for r in runs["base"]])
        else:
            a = [r[k] for r in runs["new"] if k in r]
            print(f"{(k[0] + ' [' + k[1] + ']')[-57:]:<58}{statistics.median(a):>10.2f}"
                  f"{'-':>10}{'-':>10}")


def row(key, new, base):
    """A figure's medians and the median of its pairwise ratios base / new."""
    ratio = statistics.median(y / x for x, y in zip(new, base))
    print(f"{(key[0] + ' [' + key[1] + ']')[-57:]:<58}{statistics.median(new):>10.2f}"
          f"{statistics.median(base):>10.2f}{ratio:>9.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
