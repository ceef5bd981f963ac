# autograd_c -- C tests, Python tests, benchmarks.
#   make test     C unit tests (no Python), then the pytest suite
#   make ctest    C unit tests only: tests/c/test_*.c, public API, no Python
#   make pytest   the pytest suite (needs the extension: python3 setup.py build_ext --inplace)
#   make bench    C microbenchmarks (ns per node), then the Python benchmarks
#   make dist     sdist and abi3 wheel into dist/ (pip install -e '.[dev]' first)
#   make cbench   benchmarks/bench_engine.c: ns per node to build/backprop/free 10^6 nodes;
#                 benchmarks/bench_replay.c: ns per node of a replayed pass, per node-row batched
#   make pybench  benchmarks/bench_engine.py: autograd_c vs micrograd (vs PyTorch if
#                 importable); benchmarks/bench_replay.py: captured-graph training steps vs
#                 micrograd; benchmarks/bench_compile.py: @compile's training step vs
#                 eager and replay; PYBENCH_FLAGS=--quick for fewer repeats
PYTHON ?= python3
ifeq ($(origin CC),default)
CC := gcc
endif
CFLAGS ?= -std=c11 -O2 -g -Wall -Wextra -Wswitch-enum -Werror
CSRC := $(wildcard csrc/*.c)
CHDR := $(wildcard csrc/*.h)
BUILD := build/c
# The benchmarks are built as the extension is (autograd_c/_cffi_build.py plus
# Python's own -DNDEBUG -O3): internal asserts off.
BENCH_CFLAGS := -std=c11 -O3 -DNDEBUG -fno-math-errno -g -Wall -Wextra -Wswitch-enum -Werror
PYBENCH_FLAGS ?=

.PHONY: test ctest pytest bench cbench pybench clean dist

test: ctest pytest

# One binary per tests/c/test_*.c, each with the harness tests/c/check.h.
CTESTS := $(basename $(notdir $(wildcard tests/c/test_*.c)))

$(BUILD)/test_%: tests/c/test_%.c tests/c/check.h tests/c/node_view.h tests/c/saved_graph.h $(CSRC) $(CHDR)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Icsrc -o $@ $< $(CSRC) -lm -lpthread

ctest: $(addprefix $(BUILD)/,$(CTESTS))
	@set -e; for t in $(CTESTS); do echo "== $$t"; ./$(BUILD)/$$t; done

pytest:
	$(PYTHON) -m pytest -q

$(BUILD)/bench_engine: benchmarks/bench_engine.c $(CSRC) $(CHDR)
	@mkdir -p $(BUILD)
	$(CC) $(BENCH_CFLAGS) -Icsrc -o $@ benchmarks/bench_engine.c $(CSRC) -lm -lpthread

$(BUILD)/bench_replay: benchmarks/bench_replay.c $(CSRC) $(CHDR)
	@mkdir -p $(BUILD)
	$(CC) $(BENCH_CFLAGS) -Icsrc -o $@ benchmarks/bench_replay.c $(CSRC) -lm -lpthread

cbench: $(BUILD)/bench_engine $(BUILD)/bench_replay
	./$(BUILD)/bench_engine
	./$(BUILD)/bench_replay

pybench:
	$(PYTHON) benchmarks/bench_engine.py $(PYBENCH_FLAGS)
	$(PYTHON) benchmarks/bench_replay.py $(PYBENCH_FLAGS)
	$(PYTHON) benchmarks/bench_compile.py $(PYBENCH_FLAGS)

bench: cbench pybench

clean:
	rm -rf build dist autograd_c/*.so autograd_c/_autograd_c.c

# sdist and wheel into dist/ (needs the [dev] extra).  Run from inside build/:
# in the checkout's root the build/ folder would shadow the `build` package.
dist:
	@mkdir -p build
	cd build && $(PYTHON) -m build --outdir ../dist ..

# --- reliability targets (asan, valgrind, fuzz) go below this line ---
#   make fuzz-corpus  replay tests/fuzz/corpus through the fuzz harness (gcc; part of `make test`)
#   make asan         C tests + corpus + the pytest suite under ASan+UBSan (gcc), in build/asan/
#   make valgrind     C tests + corpus under memcheck (leaks and invalid accesses are errors)
#   make fuzz         libFuzzer (clang) for FUZZ_SECONDS (default 60); new inputs go to
#                     build/fuzz/corpus, crashes to build/fuzz/crash-*; more processes:
#                     make fuzz FUZZ_FLAGS='-max_len=1024 -fork=4'
# Sanitized builds never touch the in-place extension in autograd_c/: the Python
# part copies the tree to build/asan/tree and builds the extension there.
FUZZ_DIR := tests/fuzz
CORPUS := $(FUZZ_DIR)/corpus
FUZZ_SRC := $(FUZZ_DIR)/fuzz_api.c
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?= -max_len=1024
FUZZ_CC ?= $(shell command -v clang-14 || command -v clang || echo clang)
SAN := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_CFLAGS := -std=c11 -O1 -g -Wall -Wextra -Wswitch-enum -Werror $(SAN)
ASAN := build/asan
GCC_RT = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)
SAN_ENV := ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# RSS-per-node numbers mean nothing under ASan (shadow memory, redzones, quarantine)
ASAN_PYTEST_FLAGS ?= --deselect tests/test_memory.py::test_bytes_per_live_node
VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all --show-leak-kinds=all

.PHONY: fuzz-corpus asan asan-c asan-py valgrind fuzz

test: fuzz-corpus

$(BUILD)/replay_corpus: $(FUZZ_DIR)/replay_corpus.c $(FUZZ_SRC) tests/c/node_view.h tests/c/saved_graph.h $(CSRC) $(CHDR)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Icsrc -o $@ $(FUZZ_DIR)/replay_corpus.c $(FUZZ_SRC) $(CSRC) -lm -lpthread

fuzz-corpus: $(BUILD)/replay_corpus
	./$(BUILD)/replay_corpus $(CORPUS)

asan: asan-c asan-py

# The C tests and the corpus, with leak detection on (the C code frees everything).
asan-c:
	$(MAKE) --no-print-directory BUILD=$(ASAN)/c CFLAGS="$(SAN_CFLAGS)" $(addprefix $(ASAN)/c/,$(CTESTS)) $(ASAN)/c/replay_corpus
	set -e; for t in $(CTESTS); do \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./$(ASAN)/c/$$t; done
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./$(ASAN)/c/replay_corpus $(CORPUS)

# The extension built with the sanitizers in a copy of the tree; their runtimes
# preloaded into the (unsanitized) interpreter; Python's own leaks not reported.
asan-py:
	rm -rf $(ASAN)/tree && mkdir -p $(ASAN)/tree
	tar -c --exclude=./build --exclude=./.git --exclude='*.so' --exclude=__pycache__ \
	    --exclude=.hypothesis --exclude=.pytest_cache --exclude=_autograd_c.c . | tar -x -C $(ASAN)/tree
	cd $(ASAN)/tree && CFLAGS="$(SAN)" LDFLAGS="$(SAN)" $(PYTHON) setup.py -q build_ext --inplace
	cd $(ASAN)/tree && LD_PRELOAD="$(GCC_RT)" $(SAN_ENV) $(PYTHON) -c \
	    "import autograd_c._autograd_c as m, os; assert os.path.realpath(m.__file__).startswith(os.getcwd()), m.__file__"
	cd $(ASAN)/tree && LD_PRELOAD="$(GCC_RT)" $(SAN_ENV) $(PYTHON) -m pytest -q -p no:cacheprovider $(ASAN_PYTEST_FLAGS)

valgrind:
	$(MAKE) --no-print-directory BUILD=build/valgrind/c CFLAGS="-std=c11 -O1 -g -Wall -Wextra -Wswitch-enum -Werror" \
	    $(addprefix build/valgrind/c/,$(CTESTS)) build/valgrind/c/replay_corpus
	set -e; for t in $(CTESTS); do $(VALGRIND) ./build/valgrind/c/$$t; done
	$(VALGRIND) ./build/valgrind/c/replay_corpus $(CORPUS)

build/fuzz/fuzz_api: $(FUZZ_SRC) tests/c/node_view.h tests/c/saved_graph.h $(CSRC) $(CHDR)
	@mkdir -p build/fuzz
	$(FUZZ_CC) -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined,float-cast-overflow \
	    -fno-sanitize-recover=all -Icsrc -o $@ $(FUZZ_SRC) $(CSRC) -lm -lpthread

# New inputs are written to build/fuzz/corpus (the first directory); the repo
# corpus seeds the run.  Add a finding to $(CORPUS) by hand (see README).
fuzz: build/fuzz/fuzz_api
	@mkdir -p build/fuzz/corpus
	./build/fuzz/fuzz_api $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/ build/fuzz/corpus $(CORPUS)
