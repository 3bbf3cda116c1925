# The developer's menu. CI and the README use cargo directly: `just` is not on a fresh machine
# (install it with `cargo install just --locked`, about 2 minutes).

default:
    @just --list

# fmt + clippy + the whole test suite, as CI runs it
ready: fmt lint test

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings

# the README's test command
test:
    cargo test --workspace

# accept changed fixture reports (review the diff!)
snap:
    INSTA_UPDATE=always cargo test -p invoker-doctor --test it fixtures

# regenerate docs/rules from the rule doc comments and their Example fixtures
gen-docs:
    UPDATE_DOCS=1 cargo test -p invoker-doctor --test it docs

# print the files a new rule touches
new-rule NAME:
    @echo "1. crates/ipd-rules/src/rules/{{NAME}}.rs (copy a sibling; doc sections are checked)"
    @echo "2. one line in crates/ipd-rules/src/registry.rs, at its place in the request path"
    @echo "3. fixtures/<situation>/ with case.toml, firing and non-firing; then: just snap gen-docs"

# fake-gcp serving a fixture, and a live diagnosis against it (extra args go to invoker-doctor)
demo FIXTURE="missing-binding-sa-not-bound-anywhere" *ARGS="":
    scripts/demo-live.sh {{FIXTURE}} {{ARGS}}

# an offline diagnosis of a fixture bundle
demo-offline FIXTURE="missing-binding-sa-not-bound-anywhere":
    cargo run --release -q -- diagnose --bundle fixtures/{{FIXTURE}}

# longer property-test run over every parser
fuzz CASES="20000":
    PROPTEST_CASES={{CASES}} cargo test --release -p ipd-model fuzz
    PROPTEST_CASES={{CASES}} cargo test --release -p ipd-rules fuzz

# offline diagnosis time per fixture (hyperfine: apt-get install hyperfine), then live against
# fake-gcp at 100 ms per call: wall time vs sum of latencies vs critical path
bench: bench-offline bench-live bench-speed

# one run, side by side: live round trips (process, 100 ms per call), the gcloud runbook, large logs
bench-speed LATENCY_MS="100":
    cargo build --release -p invoker-doctor -p ipd-fakegcp --bins
    cargo run --release -q -p invoker-doctor --example bench_round_trips -- 5 {{LATENCY_MS}}
    scripts/bench-runbook.sh {{LATENCY_MS}}
    scripts/bench-logs.sh

bench-offline:
    cargo build --release -p invoker-doctor
    scripts/bench-offline.sh

bench-live RUNS="10" LATENCY_MS="100" FIXTURE="missing-binding-sa-not-bound-anywhere":
    cargo run --release -q -p invoker-doctor --example bench_live -- {{RUNS}} {{LATENCY_MS}} {{FIXTURE}}

# libFuzzer campaign over every parser and whole bundles (fuzz/, its own workspace; needs
# `cargo install cargo-fuzz --locked`): RUNS executions per target in all (resumes), JOBS targets
# at a time, nice 19. Not part of CI. `scripts/fuzz-long.sh --summary` prints the table.
fuzz-long RUNS="10000000" JOBS="2":
    scripts/fuzz-long.sh --runs {{RUNS}} --jobs {{JOBS}}

# rebuild the checked-in seed corpora from fixtures/ and minimise them (cargo fuzz cmin)
fuzz-seed:
    python3 fuzz/seed.py
    cd fuzz && for t in $(cargo fuzz list); do mkdir -p corpus/$t && RUSTC_BOOTSTRAP=1 cargo fuzz cmin -O -s none $t corpus-work/$t && rm -rf corpus/$t && mv corpus-work/$t corpus/$t; done

# incidents live against fake-gcp: an hour of 50,000 refusals across 20 services; wall time,
# entries read, peak memory (/usr/bin/time -v)
bench-incidents MAX="60000":
    scripts/bench-incidents.sh {{MAX}}

# a scan of 1,000 services and 2,000 callers (fixtures/org-bench) against the fake at 100 ms
# per call: wall time, calls, pages, peak memory, and the calls a per-service crawl would need
bench-scan LATENCY_MS="100" ORG="fixtures/org-bench/org.yaml":
    cargo build --release -p invoker-doctor
    cargo run --release -q -p invoker-doctor --example bench_scan -- {{ORG}} {{LATENCY_MS}}
