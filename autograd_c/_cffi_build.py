"""The cffi builder (API, out-of-line mode): compiles csrc/ into
autograd_c._autograd_c.  The cdef is the CDEF section of the real header,
plus the op codes declared from the rows of its AG_OP_LIST."""
import os
import re

from cffi import FFI

CSRC = "csrc"  # relative to the project root, where setuptools runs this file
HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", CSRC, "autograd_c.h")
SOURCES = ["arena.c", "rules.c", "eager.c", "replay.c", "compiled.c", "analysis.c", "batch.c",
           "params.c", "fork.c", "alloc.c", "context.c", "serialize.c", "patterns.c"]


def read_cdef(path=HEADER):
    """The declarations between the CDEF markers of the public header, after
    the op codes (AG_LEAF, AG_ADD, ... in AG_OP_LIST's order) and AG_OP_COUNT."""
    with open(path) as f:
        text = f.read()
    op_list = text.split("#define AG_OP_LIST(X)")[1].split("\n\n")[0]
    codes = re.findall(r"X\((\w+),", op_list)
    ops = "typedef enum ag_op { %s } ag_op;\n#define AG_OP_COUNT ...\n" % (
        ", ".join(f"AG_{code}" for code in codes))
    return ops + text.split("/* CDEF BEGIN */")[1].split("/* CDEF END */")[0]


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "autograd_c._autograd_c",
    '#include "autograd_c.h"',
    sources=[os.path.join(CSRC, name) for name in SOURCES],
    include_dirs=[CSRC],
    extra_compile_args=["-std=c11", "-O3", "-fno-math-errno", "-fvisibility=hidden", "-Wall",
                        "-Wswitch-enum", "-Werror=switch-enum"],
    libraries=["m", "pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
