"""The cffi builder (API, out-of-line mode): compiles csrc/ into
autograd_c._autograd_c.  The cdef is the CDEF section of the real header."""
import os

from cffi import FFI

CSRC = "csrc"  # relative to the project root, where setuptools runs this file
HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", CSRC, "autograd_c.h")
SOURCES = ["arena.c", "ops.c", "replay.c"]


def read_cdef(path=HEADER):
    """The declarations between the CDEF markers of the public header."""
    with open(path) as f:
        text = f.read()
    return text.split("/* CDEF BEGIN */")[1].split("/* CDEF END */")[0]


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "autograd_c._autograd_c",
    '#include "autograd_c.h"',
    sources=[os.path.join(CSRC, name) for name in SOURCES],
    include_dirs=[CSRC],
    extra_compile_args=["-std=c11", "-O3", "-fno-math-errno", "-fvisibility=hidden", "-Wall"],
    libraries=["m", "pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
