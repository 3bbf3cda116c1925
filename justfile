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

# a diagnosis on a fixture bundle
demo FIXTURE="missing-binding-sa-not-bound-anywhere":
    cargo run --release -q -- diagnose --bundle fixtures/{{FIXTURE}}

# longer property-test run over every parser
fuzz CASES="20000":
    PROPTEST_CASES={{CASES}} cargo test --release -p ipd-model fuzz
    PROPTEST_CASES={{CASES}} cargo test --release -p ipd-rules fuzz

# offline diagnosis time per fixture (hyperfine: apt-get install hyperfine)
bench:
    cargo build --release -p invoker-doctor
    scripts/bench-offline.sh
