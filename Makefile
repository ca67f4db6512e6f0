# fleetfs — see README.md. Targets: all (./fleetfs), check (unit tests, ASan+UBSan),
# test (check + integration through a real mount), deps (apt-get), lint, bench, run, install,
# fuzz / fuzz-smoke (libFuzzer targets of tests/fuzz, docs/internals/fuzzing.md).
CC      ?= cc
VERSION := 0.1.0
PKGS    := fuse3 libcurl yaml-0.1 libcjson openssl libssh2 lmdb libzip inih libxml-2.0
WARN    := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings -Wformat=2 \
           -Wvla -Wshadow -Wpointer-arith -fno-common -Werror
CSTD    := -std=c11 -D_GNU_SOURCE -DFLEETFS_VERSION=\"$(VERSION)\" -DFLEETFS_SRCDIR=\"$(CURDIR)\"

OPT     ?= -O2 -g
# pkg-config's complaints are not hidden: a missing library stops the build at `pkgcheck`
# with pkg-config's own message (run `make deps`), instead of a compiler error about headers.
PKGCFLAGS = $(shell pkg-config --cflags $(PKGS))
PKGLIBS   = $(shell pkg-config --libs $(PKGS)) -llmdb -lcsv -lpthread -lm
CFLAGS  ?=
CFLAGS  += $(CSTD) $(WARN) $(OPT) $(PKGCFLAGS)
LDFLAGS ?=
# each object records the headers it includes (build/**/*.d): touching one header rebuilds
# only what includes it
DEPFLAGS = -MMD -MP
PREFIX  ?= /usr/local

# Layers (docs/internals/design.md): fs -> core -> {backends, cache} -> model -> lib, never
# upward; `make lint` checks it from the #include lines.
BASE_SRC  := $(sort $(wildcard lib/*.c))
MODEL_SRC := $(sort $(wildcard model/*.c))
CORE_SRC  := core/sshkey.c core/fleetspec.c core/fleetres.c core/offers.c core/state.c \
             core/rootcfg.c core/probe.c
CACHE_SRC := cache/seal.c cache/store.c
# every provider client is a file of backends/ (docs/internals/design.md, "Adding a provider")
BACKENDS_SRC := $(sort $(wildcard backends/*.c))
ENGINE_SRC := core/records.c core/fleets.c core/fleetview.c core/engine.c core/offerd.c core/cloud.c
FS_SRC    := fs/main.c fs/tree.c fs/kinds.c fs/names.c fs/notify.c fs/ops.c fs/dirs.c fs/offcache.c fs/render.c
LIB_SRC   := $(BASE_SRC) $(MODEL_SRC) $(CORE_SRC) $(CACHE_SRC) $(BACKENDS_SRC) $(ENGINE_SRC)
UNIT_SRC  := $(wildcard tests/unit/*.c)

BUILD     := build
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
FS_OBJ    := $(FS_SRC:%.c=$(BUILD)/%.o)

PYTHON  ?= /usr/bin/python3

.PHONY: all check test unit integration deps lint bench fleet-bench offers-bench cloud-bench chaos \
	run install clean fuzz fuzz-smoke fuzz-build
all: fleetfs

# V=1 shows the compiler command lines
Q := $(if $(V),,@)

fleetfs: $(LIB_OBJ) $(FS_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKGLIBS)

$(BUILD)/%.o: %.c Makefile | pkgcheck
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

-include $(LIB_OBJ:.o=.d) $(FS_OBJ:.o=.d) $(BUILD)/tests/tools/bkcall.d

.PHONY: pkgcheck
pkgcheck:
	@pkg-config --print-errors --exists $(PKGS) || \
	    { echo "fleetfs: libraries missing (above); run: make deps" >&2; exit 1; }

# Unit tests: Check, under ASan+UBSan, built separately so the daemon build stays plain.
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# Objects of their own (build/asan/), with header dependencies, so a change rebuilds only
# what it touches.
ASAN_DIR := $(BUILD)/asan
UNIT_OBJ := $(LIB_SRC:%.c=$(ASAN_DIR)/%.o) $(UNIT_SRC:%.c=$(ASAN_DIR)/%.o)

$(ASAN_DIR)/%.o: %.c Makefile | pkgcheck
	@mkdir -p $(dir $@)
	@echo "  CC      $< (ASan+UBSan)"
	$(Q)$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(PKGCFLAGS) $(shell pkg-config --cflags check) \
	    $(DEPFLAGS) -c -o $@ $<

-include $(UNIT_OBJ:.o=.d)

build/unit-tests: $(UNIT_OBJ)
	@echo "  LD      $@ (ASan+UBSan)"
	$(Q)$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(PKGLIBS) $(shell pkg-config --libs check)

check: build/unit-tests lint
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 CK_FORK=yes ./build/unit-tests

integration: fleetfs fleetfs-tsan build/bkcall
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# One call of a provider's interface (check, offers, create, get, terminate, list) printed as
# JSON: what the backends' protocol tests against their fakes run (tests/tools/bkcall.c).
build/bkcall: $(LIB_OBJ) $(BUILD)/tests/tools/bkcall.o
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKGLIBS)

# The README's test command (each fuzz target runs briefly too).
test: check integration fuzz-smoke

lint:
	@sh tests/lint.sh

deps:
	sh tests/deps.sh

bench: fleetfs
	$(PYTHON) bench/bench.py

fleet-bench: fleetfs
	$(PYTHON) bench/fleet_bench.py

offers-bench: fleetfs
	$(PYTHON) bench/offers_bench.py

cloud-bench: fleetfs
	$(PYTHON) bench/cloud_bench.py

# kill -9 at random moments, many rounds (the suite runs a few): CHAOS_ROUNDS, CHAOS_SEED
CHAOS_ROUNDS ?= 200
chaos: fleetfs build/bkcall
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) FLEETFS_TEST_TIMEOUT=3600 $(PYTHON) -m pytest -q -s \
	    -p no:cacheprovider $(wildcard tests/integration/test_chaos*.py)

# The README's run command: install what is missing, build, mount on MNT (default ~/fleet).
MNT ?= $(HOME)/fleet
run: deps all
	mkdir -p $(MNT)
	./fleetfs $(MNT)
	@echo "fleetfs mounted on $(MNT) (state in $${XDG_DATA_HOME:-$$HOME/.local/share}/fleetfs); unmount with: fusermount3 -u $(MNT)"

install: fleetfs
	install -D -m 0755 fleetfs $(DESTDIR)$(PREFIX)/bin/fleetfs
	ln -sf $(PREFIX)/bin/fleetfs $(DESTDIR)/sbin/mount.fleetfs 2>/dev/null || true

clean:
	rm -rf build fleetfs

# The daemon under ThreadSanitizer, for tests/integration/test_tsan.py (the engine's threads
# against the FUSE workers).
fleetfs-tsan: $(LIB_SRC) $(FS_SRC) $(wildcard lib/*.h model/*.h core/*.h cache/*.h fs/*.h backends/*.h)
	@echo "  CC      $@ (TSan)"
	$(Q)$(CC) $(CSTD) $(WARN) -O1 -g -fsanitize=thread $(PKGCFLAGS) $(LDFLAGS) -o $@ $(LIB_SRC) \
	    $(FS_SRC) $(PKGLIBS)

# Fuzzing (tests/fuzz, docs/internals/fuzzing.md): one libFuzzer target per parser of outside
# input, built with clang under ASan+UBSan. `make fuzz` runs each for FUZZ_SECONDS on a copy
# of its seed corpus in build/fuzz/corpus (the tree is not modified) and prints executions
# per target; `make fuzz-smoke` is the same for 5 s each (what CI runs).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_CFLAGS  := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=all $(PKGCFLAGS)
FUZZ_OBJ     := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o) $(FUZZ_DIR)/obj/tests/fuzz/fuzzlib.o
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/%)

$(FUZZ_DIR)/obj/%.o: %.c $(wildcard lib/*.h model/*.h core/*.h cache/*.h backends/*.h tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ)
	@echo "  LD      $@ (libFuzzer)"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(PKGLIBS)

# the objects are shared by every target: keep them (pattern rules make them intermediate)
.SECONDARY: $(FUZZ_OBJ)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke:
	@FUZZ_SEED=1 $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=5
