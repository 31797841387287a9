#!/usr/bin/env bash
# npm test: the one command from a fresh clone to all green. Stages run in order and stop at the
# first failure with a banner naming it: setup, rustfmt, clippy (host, db-tests, wasm32), host
# unit tests, Wasm freshness + build, deno fmt/lint/check (the shim also on the edge runtime's
# Deno 2.1.4), then one local stack (a throwaway PostgreSQL) for `supabase db lint`, the database
# histories and the Deno end-to-end tests (the function on Deno 2.1.4), and a second one for the
# pipeline test with the function on the newest Deno. Every stage has a time
# limit; the stack is torn down on success, failure and Ctrl-C alike. Prints stage timings.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -d "$HOME/.cargo/bin" ] && [[ ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
export DENO_NO_UPDATE_CHECK=1
DENO=node_modules/.bin/deno

# The edge runtime's Deno, which the function runs on (scripts/stack/function.ts).
EDGE_DENO=node_modules/deno-edge/deno
EDGE_DENO_VERSION=2.1.4

# A stack URL as the Supabase CLI takes it: postgresql://…, TLS off (postgres.ts cliDbUrl).
cli_db_url() { printf '%s?sslmode=disable' "${1/#postgres:/postgresql:}"; }

now_ms() { date +%s%3N; }
seconds_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# The running stage's process, so that a signal can stop it (and with it the stack) at once.
CHILD=""
on_signal() {
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  printf '\n!!! interrupted\n' >&2
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# stage <name> <time limit in seconds> <command...>: runs it, records its time, stops on failure.
stage() {
  local name="$1" limit="$2"
  shift 2
  printf '\n==> %s\n    $ %s\n' "$name" "$*"
  local start code=0
  start="$(now_ms)"
  # In the background so that the signal traps run immediately instead of after the stage.
  timeout -k 20 "$limit" "$@" &
  CHILD=$!
  wait "$CHILD" || code=$?
  CHILD=""
  local took
  took="$(seconds_since "$start")"
  printf '%s\t%s\t%s\n' "$took" "$code" "$name" >>"$HMS_TEST_TIMINGS"
  if [ "$code" -ne 0 ]; then
    [ "$code" -eq 124 ] && printf '    (time limit of %s s reached)\n' "$limit" >&2
    printf '\n!!! FAILED: %s (exit %s after %s s)\n' "$name" "$code" "$took" >&2
    exit "$code"
  fi
  printf '    ok (%s s)\n' "$took"
}

# Inner half, run by scripts/stack/run.ts with DATABASE_URL and HMS_STACK_FILE of a live stack.
if [ "${1:-}" = "--stack-stages" ]; then
  : "${DATABASE_URL:?--stack-stages needs DATABASE_URL (run through scripts/stack/run.ts)}"
  : "${HMS_TEST_TIMINGS:=/dev/null}"
  stage "supabase db lint (plpgsql_check, warnings fail)" 300 \
    node_modules/.bin/supabase db lint --db-url "$(cli_db_url "$DATABASE_URL")" \
    --level warning --fail-on warning
  stage "database histories (cargo test --features db-tests --test histories)" 1500 \
    cargo test --features db-tests --test histories
  stage "end-to-end tests (deno test tests/), function on Deno $EDGE_DENO_VERSION" 900 \
    "$DENO" test -A tests/
  exit 0
fi

HMS_TEST_TIMINGS="$(mktemp)"
export HMS_TEST_TIMINGS
STARTED="$(now_ms)"
summary() {
  local code=$?
  printf '\n---- stage timings (s) ----\n'
  awk -F'\t' '{ printf "%8s  %s%s\n", $1, $3, ($2 == 0 ? "" : "  [FAILED, exit " $2 "]") }' \
    "$HMS_TEST_TIMINGS"
  rm -f "$HMS_TEST_TIMINGS"
  if [ "$code" -eq 0 ]; then
    printf 'npm test: all green in %s s\n' "$(seconds_since "$STARTED")"
  else
    printf 'npm test: FAILED after %s s\n' "$(seconds_since "$STARTED")" >&2
  fi
}
trap summary EXIT

stage "setup (scripts/setup.sh)" 1800 bash scripts/setup.sh
stage "rustfmt" 300 cargo fmt --check
stage "clippy, host, all targets" 1500 cargo clippy --all-targets -- -D warnings
stage "clippy, db-tests feature" 1500 cargo clippy --features db-tests --all-targets -- -D warnings
stage "clippy, wasm32 library" 1500 cargo clippy --target wasm32-unknown-unknown --lib -- -D warnings
stage "host unit tests (cargo test)" 1500 cargo test
stage "committed Wasm is fresh (build.sh --check)" 1500 bash scripts/build.sh --check
stage "Wasm build (build.sh)" 1500 bash scripts/build.sh
stage "deno fmt --check" 300 "$DENO" fmt --check
stage "deno lint" 300 "$DENO" lint
stage "deno check (shim, scripts, tests, bench)" 600 \
  "$DENO" check supabase/functions/hms-webhook/index.ts scripts/ tests/ bench/
stage "deno check, the functions on the edge runtime's Deno $EDGE_DENO_VERSION" 600 \
  "$EDGE_DENO" check supabase/functions/hms-webhook/index.ts scripts/stack/edge_serve.ts \
  bench/baseline_function.ts
stage "local stack: database + end-to-end stages" 2700 \
  "$DENO" run -A scripts/stack/run.ts -- bash scripts/test.sh --stack-stages
# The other end of the supported range: the function on the newest Deno (the tools' own).
stage "pipeline test, function on the newest Deno ($("$DENO" --version | head -n1))" 900 \
  env STACK_FUNCTION_DENO=newest "$DENO" run -A scripts/stack/run.ts -- \
  "$DENO" test -A tests/pipeline.test.ts
