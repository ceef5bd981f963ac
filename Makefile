# autograd_c -- C tests, Python tests, benchmarks.
#   make test     C unit tests (no Python), then the pytest suite
#   make bench    C microbenchmarks (ns per node), then the Python benchmarks
PYTHON ?= python3
CC ?= gcc
CFLAGS ?= -std=c11 -O2 -g -Wall -Wextra -Werror
CSRC := $(wildcard csrc/*.c)
CHDR := $(wildcard csrc/*.h)
BUILD := build/c

.PHONY: test ctest pytest bench cbench pybench clean

test: ctest pytest

$(BUILD)/test_engine: tests/c/test_engine.c $(CSRC) $(CHDR)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Icsrc -o $@ tests/c/test_engine.c $(CSRC) -lm -lpthread

ctest: $(BUILD)/test_engine
	./$(BUILD)/test_engine

pytest:
	$(PYTHON) -m pytest -q

$(BUILD)/bench_engine: benchmarks/bench_engine.c $(CSRC) $(CHDR)
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -O3 -g -Wall -Icsrc -o $@ benchmarks/bench_engine.c $(CSRC) -lm -lpthread

cbench: $(BUILD)/bench_engine
	./$(BUILD)/bench_engine

pybench:
	$(PYTHON) benchmarks/bench_engine.py

bench: cbench pybench

clean:
	rm -rf build autograd_c/*.so autograd_c/_autograd_c.c

# --- reliability targets (asan, valgrind, fuzz) go below this line ---
