#!/usr/bin/env bash
# Interop tests: real third-party OAuth/MCP peers against examples/oidc.rs, `mcp-oauth dev`,
# `mcp-oauth proxy`, `mcp-oauth serve`, and real MCP servers behind `mcp-oauth gateway`.
#
#   tests/interop/run.sh [runner options, e.g. -k py -v]
#
# 1. setup.sh: pinned peers into tests/interop/node_modules and tests/interop/.venv, Debian's
#    chromium when missing (idempotent)
# 2. cargo build -p mcp-oauth --example oidc, cargo build -p mcp-oauth-cli --features redis,postgres (from
#    the repository root; the proxy scenarios q and q2 run two instances on one Redis, one PostgreSQL)
# 3. runner.py: every scenario, one PASS/FAIL line each, 'N passed, N failed' at the end
# Exits non-zero on any failure. Needs no TTY or stdin (CI=true friendly).
# Env: INTEROP_PYTHON, INTEROP_NODE (see setup.sh), CARGO (default cargo).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CARGO="${CARGO:-cargo}"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

t_start=$(now)
echo "== setup (pinned peers)"
"$HERE/setup.sh" </dev/null
t_setup=$(now)

echo "== cargo build -p mcp-oauth --example oidc; cargo build -p mcp-oauth-cli --features redis,postgres"
(cd "$ROOT" && "$CARGO" build -p mcp-oauth --example oidc </dev/null)
(cd "$ROOT" && "$CARGO" build -p mcp-oauth-cli --features redis,postgres </dev/null)
target_dir="$(cd "$ROOT" && "$CARGO" metadata --format-version 1 --no-deps </dev/null \
  | "$HERE/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
server_bin="$target_dir/debug/examples/oidc"
dev_bin="$target_dir/debug/mcp-oauth"
t_build=$(now)

echo "== scenarios"
# The runner stops every process it started (finally + PR_SET_PDEATHSIG); forward signals to it.
"$HERE/.venv/bin/python" "$HERE/runner.py" --server-bin "$server_bin" --dev-bin "$dev_bin" "$@" </dev/null &
runner=$!
trap 'kill -TERM "$runner" 2>/dev/null || true' TERM INT HUP
# `wait` returns the runner's status, however early it exited (bash keeps the status of a
# reaped background job). A signal caught by the trap interrupts `wait` with a status above
# 128 while the runner may still be running: then wait again for the runner's own status.
# Every path leaves rc non-zero unless the runner itself exited 0.
rc=0
wait "$runner" || rc=$?
while [[ $rc -gt 128 ]] && kill -0 "$runner" 2>/dev/null; do
  rc=0
  wait "$runner" || rc=$?
done
trap - TERM INT HUP
t_end=$(now)

echo "== timings: setup $(secs "$t_start" "$t_setup")s, build $(secs "$t_setup" "$t_build")s, scenarios $(secs "$t_build" "$t_end")s, total $(secs "$t_start" "$t_end")s"
exit "$rc"
