# opsgate: the two fresh-machine commands are `make run` and `make test`.
CARGO ?= cargo
BIN := target/release/opsgate
DEMO_DB := target/demo/opsgate.db
SAMPLES := examples/vps-analytics

.PHONY: all build run test lint bench soak clean

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
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench:
	$(CARGO) bench --locked --bench ingest

# The long crash and concurrency runs behind RELIABILITY.md (the short ones run in make test).
soak:
	SOAK_KILLS=200 SOAK_SECONDS=60 $(CARGO) test --locked --release --test soak -- --nocapture --test-threads=1

clean:
	$(CARGO) clean
