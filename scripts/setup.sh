#!/usr/bin/env bash
# Idempotent installer: takes a fresh machine to "npm start / npm test ready" and is a fast no-op
# when everything is already there. Installs only what is missing: npm packages (npm ci), the
# Rust wasm32 target and clippy/rustfmt, wasm-pack, PostgreSQL 15 with wal2json, pg_cron and
# plpgsql_check, and its `postgres` OS user.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
step() { printf 'setup: %-22s %s\n' "$1" "$2"; }
die() {
  printf 'setup: ERROR: %s\n' "$1" >&2
  exit 1
}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $*"
  fi
}

# --- npm packages (deno, wasm-opt/binaryen, supabase CLI, postgres, supabase-js) -------------
command -v npm >/dev/null || die "npm is not installed (Node.js 20+ is required)"
if [ ! -d node_modules ] || [ ! -e node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # Warnings (engines: supabase-js asks for Node 22, but Deno runs it; skipped install
  # scripts) are noise here: the checks below prove the tools work.
  npm ci --no-audit --no-fund --loglevel=error
  step "npm packages" "installed (npm ci)"
else
  step "npm packages" "up to date"
fi
# npm 11 may skip install scripts; the deno package's binary works without its postinstall.
deno_version="$(node_modules/.bin/deno --version 2>/dev/null | head -n1)" ||
  die "node_modules/.bin/deno does not run; try 'rm -rf node_modules && npm ci'"
[ -n "$deno_version" ] || die "node_modules/.bin/deno printed no version"
step "deno" "$deno_version"
# The function runs on the edge runtime's Deno: the binary of the optional npm dependency
# deno-edge (@deno/linux-x64-glibc), which npm installs only on that platform.
EDGE_DENO_VERSION=2.1.4
edge_version="$(node_modules/deno-edge/deno --version 2>/dev/null | head -n1)" ||
  die "node_modules/deno-edge/deno (Deno $EDGE_DENO_VERSION, the edge runtime's) does not run; it ships for linux-x64-glibc only: try 'rm -rf node_modules && npm ci'"
case "$edge_version" in
"deno $EDGE_DENO_VERSION "*) step "deno (function)" "$edge_version" ;;
*) die "node_modules/deno-edge/deno is '$edge_version', not Deno $EDGE_DENO_VERSION" ;;
esac
node_modules/.bin/wasm-opt --version >/dev/null 2>&1 ||
  die "node_modules/.bin/wasm-opt (binaryen) does not run; try 'rm -rf node_modules && npm ci'"
step "wasm-opt" "$(node_modules/.bin/wasm-opt --version)"
# The stack applies the migrations with `supabase db push`; `npm test` runs `supabase db lint`.
supabase_version="$(node_modules/.bin/supabase --version 2>/dev/null | head -n1)" ||
  die "node_modules/.bin/supabase (the Supabase CLI, which the stack runs 'supabase db push' with) does not run; try 'rm -rf node_modules && npm ci'"
[ -n "$supabase_version" ] || die "node_modules/.bin/supabase printed no version"
step "supabase CLI" "$supabase_version"

# --- Rust -----------------------------------------------------------------------------------
if [ -d "$HOME/.cargo/bin" ] && [[ ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || die "cargo is not installed; install Rust with rustup (https://rustup.rs)"
if command -v rustup >/dev/null; then
  if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    step "rust wasm32 target" "present"
  else
    rustup target add wasm32-unknown-unknown
    step "rust wasm32 target" "installed"
  fi
  for component in clippy rustfmt; do
    if rustup component list --installed | grep -q "^${component}"; then
      step "rust $component" "present"
    else
      rustup component add "$component"
      step "rust $component" "installed"
    fi
  done
else
  # A distribution Rust without rustup: it must already have what we need.
  [ -n "$(rustc --print target-libdir --target wasm32-unknown-unknown 2>/dev/null)" ] ||
    die "no rustup and no wasm32-unknown-unknown target"
fi
step "rust" "$(rustc --version)"
if command -v wasm-pack >/dev/null; then
  step "wasm-pack" "$(wasm-pack --version)"
else
  echo "setup: installing wasm-pack (cargo install, about 3 minutes) ..."
  cargo install wasm-pack --locked
  step "wasm-pack" "installed: $(wasm-pack --version)"
fi

# --- PostgreSQL 15 (the local stack runs its own throwaway server) ----------------------------
if [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] &&
  [ -x "$PG_BIN/psql" ]; then
  step "postgresql" "$("$PG_BIN/postgres" --version)"
else
  command -v apt-get >/dev/null || die "PostgreSQL 15 binaries not in $PG_BIN and no apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15
  [ -x "$PG_BIN/postgres" ] || die "postgresql-15 installed but $PG_BIN/postgres is missing"
  step "postgresql" "installed: $("$PG_BIN/postgres" --version)"
fi
# Server extensions from Debian's packages, each installed when its library is missing:
# wal2json, the logical decoding plugin Supabase Realtime reads Postgres Changes with (the
# realtime test decodes the stack's WAL with it the same way); pg_cron, which the stack preloads
# and runs the scheduled jobs with; plpgsql_check, which `supabase db lint` checks functions with.
PG_LIB="$(dirname "$PG_BIN")/lib"
apt_updated=""
pg_extension_package() {
  local name="$1" library="$2" package="$3"
  if [ -e "$PG_LIB/$library" ]; then
    step "$name" "present"
    return
  fi
  command -v apt-get >/dev/null || die "$PG_LIB/$library is missing and there is no apt-get (install $package)"
  if [ -z "$apt_updated" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package"
  [ -e "$PG_LIB/$library" ] || die "$package installed but $PG_LIB/$library is missing"
  step "$name" "installed ($package)"
}
pg_extension_package wal2json wal2json.so postgresql-15-wal2json
pg_extension_package pg_cron pg_cron.so postgresql-15-cron
pg_extension_package plpgsql_check plpgsql_check.so postgresql-15-plpgsql-check
if [ "$(id -u)" -eq 0 ]; then
  # PostgreSQL refuses to run as root; the stack runs it as `postgres`.
  if id postgres >/dev/null 2>&1; then
    step "postgres user" "present"
  else
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    step "postgres user" "created"
  fi
  command -v runuser >/dev/null || die "runuser (util-linux) is required to run PostgreSQL as root"
else
  step "postgres user" "not needed (not root: PostgreSQL runs as $(id -un))"
fi
step "ready" "npm start / npm test"
