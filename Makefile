# opsgate: the two fresh-machine commands are `make run` and `make test`.
CARGO ?= cargo
BIN := target/release/opsgate
DEMO_DB := target/demo/opsgate.db
SAMPLES := examples/vps-analytics

.PHONY: all build run test lint bench soak fuzz clean

all: build

build:
	$(CARGO) build --release --locked

# The main job on the bundled examples: three real hourly LLM cycles into a throw-away
# database, then the console cards.
run: build
	@rm -rf target/demo && mkdir -p target/demo
	@for f in cycle1.txt cycle2.json cycle3.json; do \
		printf '$$ opsgate ingest --source vps-1 < %s\n' "$$f"; \
		OPSGATE_DB=$(DEMO_DB) $(BIN) ingest --source vps-1 < $(SAMPLES)/$$f || exit $$?; \
	done
	@printf '\n$$ opsgate list\n'
	@OPSGATE_DB=$(DEMO_DB) $(BIN) list
	@printf '\n$$ opsgate notify\n'
	@OPSGATE_DB=$(DEMO_DB) $(BIN) notify

test:
	$(CARGO) test --locked --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Both benches run; either one's MISSED target (exit 1) fails the target afterwards.
bench:
	@status=0; \
	$(CARGO) bench --locked --bench ingest || status=$$?; \
	$(CARGO) bench --locked --bench postgres || status=$$?; \
	exit $$status

# The long crash and concurrency runs behind RELIABILITY.md (the short ones run in make test).
soak:
	SOAK_KILLS=200 SOAK_SECONDS=60 SOAK_RUNS=2000 $(CARGO) test --locked --release --test soak -- --nocapture --test-threads=1

# Coverage-guided fuzzing of the parser and the canonicalizer (needs `cargo install
# cargo-fuzz`; RUSTC_BOOTSTRAP lets the stable toolchain take its sanitizer flags).
FUZZ_SECONDS ?= 180
fuzz:
	mkdir -p fuzz/corpus/parse fuzz/corpus/canon
	RUSTC_BOOTSTRAP=1 cargo fuzz run --release parse fuzz/corpus/parse fuzz/seeds/parse -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -timeout=5 -max_len=65536
	RUSTC_BOOTSTRAP=1 cargo fuzz run --release canon fuzz/corpus/canon fuzz/seeds/canon -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -timeout=5 -max_len=4096

clean:
	$(CARGO) clean
