#!/usr/bin/env bash
# Deploys the function with the Supabase CLI, refusing to ship a stale Wasm module.
#
# The built module is committed (supabase/functions/hms-webhook/pkg/), so a plain
# `supabase functions deploy hms-webhook --no-verify-jwt` from a clean clone ships exactly what CI
# tested. This wrapper adds the one check that command cannot do: that the committed module was
# built from the Rust sources in the working tree (after editing src/, run `npm run build`).
# Extra arguments go to `supabase functions deploy` (e.g. --project-ref <ref>).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! bash scripts/build.sh --check; then
  echo "deploy: the Wasm module in supabase/functions/hms-webhook/pkg/ is stale or missing." >&2
  echo "deploy: run 'npm run build' (and commit the result), then deploy again." >&2
  exit 1
fi

supabase_cli=node_modules/.bin/supabase
[ -x "$supabase_cli" ] || supabase_cli=supabase
exec "$supabase_cli" functions deploy hms-webhook --no-verify-jwt "$@"
