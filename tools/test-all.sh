#!/usr/bin/env bash
# Runs every check Vienna has, on a fresh Debian 12 machine or an existing checkout:
# installs what is missing, then format, lints, build, and every test (unit, conformance, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh
if ! command -v cargo >/dev/null; then
  echo "test-all: cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

step() { printf '\n== %s\n' "$*" >&2; }

step "format"
cargo fmt --all --check
step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "build"
# The end-to-end tests run the real binary; build it first.
cargo build --workspace --bins --locked
step "fuzz targets compile"
cargo check --manifest-path fuzz/Cargo.toml --locked
step "tests"
cargo test --workspace --locked
step "all checks passed"
