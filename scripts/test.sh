#!/usr/bin/env bash
# The one test command (README "Test"): installs what the tests need when it is missing, then
# runs the whole suite. CI runs exactly this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Rust toolchain comes with the machine; everything else the tests need is installed here:
# Debian's Chromium and its WebDriver for the browser tests, and PostgreSQL's server programs
# (initdb, pg_ctl), which the tests use to start a throw-away server of their own
# (crates/testkit). Installing the package is all: no system-wide server is used.
need_apt=()
command -v sh >/dev/null || need_apt+=(dash)
command -v runuser >/dev/null || need_apt+=(util-linux)
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} for the tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Schemathesis checks the API against its own OpenAPI document (crates/web/tests/api/contract.rs).
# Pinned, so that a new release's new checks change the test only when we choose.
SCHEMATHESIS_VERSION=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION for the tests"
  command -v pip3 >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
  }
  pip3 install --quiet --break-system-packages "schemathesis==$SCHEMATHESIS_VERSION" 2>/dev/null \
    || pip3 install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Tests keep their folders (databases, ledgers, a PostgreSQL data directory) for looking into a
# failure, about 200 MB a run: they go in one folder, and what earlier runs left there over two
# hours ago is removed, so that runs on one machine do not fill its disk. 1777 like /tmp: the
# tests' PostgreSQL runs as `postgres` inside it.
export TMPDIR="${TMPDIR:-/tmp}/steady-tests"
mkdir -p "$TMPDIR" && chmod 1777 "$TMPDIR"
find "$TMPDIR" -mindepth 1 -maxdepth 1 -mmin +120 -exec rm -rf {} +

# Snapshots are compared, never written, when tests run for real.
export INSTA_UPDATE=no
cargo test --workspace --locked
# The shipped runbooks' own tests, as an author runs them (`steady test`, section "Runbook tests").
cargo run --quiet --locked -- test runbooks/
