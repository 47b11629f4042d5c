# ferrobus — developer entry points. Two cores: every cargo call uses -j2 and the
# end-to-end tests run two at a time (each starts two or three servers).
.PHONY: build run test lint demo bench deps clean-test-work

CARGO ?= cargo

build:
	$(CARGO) build -j2

# Build, then a node with the defaults: data in ./ferrobus-data, admin API on 127.0.0.1:9595.
run: build
	./target/debug/ferrobus serve

deps:
	scripts/install-test-deps.sh

# Installs MariaDB, sysbench and the Python venv when missing, then runs every test: unit
# tests and the end-to-end binary (tests/e2e), two test threads at most.
test: deps
	$(CARGO) build -j2 --all-targets
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "+ cargo nextest run --build-jobs 2 --test-threads 2 --no-fail-fast"; \
		$(CARGO) nextest run --build-jobs 2 --test-threads 2 --no-fail-fast; \
	else \
		echo "+ cargo test -j2 --no-fail-fast -- --test-threads=2"; \
		$(CARGO) test -j2 --no-fail-fast -- --test-threads=2; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -j2 --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -j2 --no-deps

# A throwaway MariaDB master and replica with a ferrobus node between them.
demo: build
	scripts/demo.sh

# Installs MariaDB and sysbench when missing, as `test` does.
bench: deps build
	scripts/bench.sh

# Leftovers of interrupted test runs (tests/work is gitignored).
clean-test-work:
	rm -rf tests/work
