#!/usr/bin/env bash
# npm start: make sure the tools are installed, then run the local stack (PostgreSQL, REST
# stand-in, the function, one gateway on http://127.0.0.1:${PORT:-54321}) until Ctrl-C.
# Arguments go to scripts/stack/main.ts (try `npm start -- --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -d "$HOME/.cargo/bin" ] && [[ ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
export DENO_NO_UPDATE_CHECK=1
exec node_modules/.bin/deno run -A scripts/stack/main.ts "$@"
