#!/usr/bin/env bash
# The official MCP conformance runner (@modelcontextprotocol/conformance, pinned in package.json)
# against examples/conformance.rs, every active server scenario, on four targets:
#
#   direct         the fixture, no OAuth
#   bearer         the fixture with the bearer layer on (--issuer: tokens of `mcp-oauth dev`)
#   gateway-http   `mcp-oauth gateway --upstream URL` in front of the fixture
#   gateway-stdio  `mcp-oauth gateway -- FIXTURE --stdio`
#
# The runner sends no access token: for the protected targets a loopback hop (bearer-hop.mjs)
# adds `Authorization: Bearer <token>` and passes everything else through.
#
#   tests/conformance/run.sh                      every target
#   tests/conformance/run.sh bearer gateway-http  only these
#
# 1. npm ci into tests/conformance/node_modules when package.json, package-lock.json, .npmrc or
#    the Node.js version changed (a stamp file says what was installed); nothing is downloaded
#    at run time
# 2. cargo build -p mcp-oauth --example conformance; cargo build -p mcp-oauth-cli (honours
#    CARGO_TARGET_DIR)
# 3. for each target: start what it needs on 127.0.0.1 (free ports), run the runner, stop them
# Prints one line per target and 'N passed, N failed' (scenarios) at the end; exits non-zero
# when any scenario fails. Everything started is stopped on exit. Logs: tests/conformance/logs/.
# Env: CONFORMANCE_NODE (default node), CONFORMANCE_NPM (default npm), CARGO (default cargo).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CARGO="${CARGO:-cargo}"
NODE="${CONFORMANCE_NODE:-node}"
NPM="${CONFORMANCE_NPM:-npm}"
ALL_TARGETS=(direct bearer gateway-http gateway-stdio)
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "run.sh: unknown target $t (the targets: ${ALL_TARGETS[*]})" >&2; exit 2; }
done

log() { echo "[conformance] $*" >&2; }

# ---------------------------------------------------------------- 1. the runner, pinned
cd "$HERE"
command -v "$NODE" >/dev/null || { echo "run.sh: $NODE not found" >&2; exit 1; }
if grep -q '"resolved"' package-lock.json; then
  echo "run.sh: package-lock.json holds resolved URLs; regenerate it with 'npm install --package-lock-only' here (.npmrc omits them)" >&2
  exit 1
fi
want="$(sha256sum package.json package-lock.json .npmrc | sha256sum | cut -c1-64) node=$("$NODE" --version)"
stamp=node_modules/.conformance-stamp
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  log "node_modules up to date"
else
  log "npm ci"
  "$NPM" ci --no-audit --no-fund </dev/null >&2
  echo "$want" > "$stamp"
fi
runner=("$NODE" --import "$HERE/node-compat.mjs" "$HERE/node_modules/@modelcontextprotocol/conformance/dist/index.js")

# ---------------------------------------------------------------- 2. the fixture and the CLI
log "cargo build -p mcp-oauth --example conformance; cargo build -p mcp-oauth-cli"
(cd "$ROOT" && "$CARGO" build -p mcp-oauth --example conformance </dev/null)
(cd "$ROOT" && "$CARGO" build -p mcp-oauth-cli </dev/null)
target_dir="$(cd "$ROOT" && "$CARGO" metadata --format-version 1 --no-deps </dev/null \
  | "$NODE" -e 'let s = ""; process.stdin.on("data", d => s += d).on("end", () => console.log(JSON.parse(s).target_directory))')"
fixture="$target_dir/debug/examples/conformance"
cli="$target_dir/debug/mcp-oauth"

# ---------------------------------------------------------------- 3. the targets
logs="$HERE/logs"
rm -rf "$logs"
mkdir -p "$logs"
work="$(mktemp -d)"
pids=()
# Stops what this script started: SIGTERM, then SIGKILL to whatever still runs after 10 s.
stop_all() {
  local pid deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP

# start NAME CMD ARGS…: runs CMD in the background, stdout to logs/NAME.out, stderr to
# logs/NAME.err, and waits (deadline 60 s) for its first line of stdout, which it puts in
# $READY. (Not in a $(…) subshell: the process must stay this shell's child, to be stopped.)
start() {
  local name=$1
  shift
  "$@" >"$logs/$name.out" 2>"$logs/$name.err" </dev/null &
  local pid=$!
  pids+=("$pid")
  local deadline=$((SECONDS + 60))
  until [[ -s "$logs/$name.out" && $(wc -l <"$logs/$name.out") -ge 1 ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: $name exited before it was ready; its stderr (logs/$name.err):" >&2
      tail -n 20 "$logs/$name.err" >&2
      return 1
    fi
    if ((SECONDS > deadline)); then
      echo "run.sh: $name printed nothing in 60 s; its stderr (logs/$name.err):" >&2
      tail -n 20 "$logs/$name.err" >&2
      return 1
    fi
    sleep 0.1
  done
  READY="$(head -n 1 "$logs/$name.out")"
}

# A field of a JSON line.
json_field() { "$NODE" -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$1" "$2"; }

# Starts what TARGET needs and puts the URL the runner tests in $ENDPOINT.
endpoint() {
  local url line
  case "$1" in
    direct)
      start fixture "$fixture"
      ENDPOINT=$READY
      ;;
    bearer)
      # `mcp-oauth dev` is the issuer; the fixture verifies its tokens (discovery, audience =
      # the fixture's endpoint); `mcp-oauth token` mints one with dev's key for that audience.
      start dev "$cli" dev --port 0 --data-dir "$work/dev" --json
      start fixture-oauth "$fixture" --issuer "$(json_field "$READY" issuer)"
      url=$READY
      hop hop-bearer "$url" "$("$cli" token --data-dir "$work/dev" --aud "$url")"
      ;;
    gateway-http)
      start fixture-upstream "$fixture"
      start gateway-http "$cli" gateway --port 0 --data-dir "$work/gateway-http" --json --upstream "$READY"
      line=$READY
      hop hop-gateway-http "$(json_field "$line" mcp_url)" "$(json_field "$line" token)"
      ;;
    gateway-stdio)
      start gateway-stdio "$cli" gateway --port 0 --data-dir "$work/gateway-stdio" --json -- "$fixture" --stdio
      line=$READY
      hop hop-gateway-stdio "$(json_field "$line" mcp_url)" "$(json_field "$line" token)"
      ;;
  esac
}

# hop NAME MCP_URL TOKEN: the token-adding hop in front of MCP_URL; $ENDPOINT is its MCP URL.
# First proves that MCP_URL itself refuses a request without a token (401): the scenarios then
# pass through the bearer layer, not around it.
hop() {
  "$NODE" -e '
    const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" });
    fetch(process.argv[1], { method: "POST", body,
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" } })
      .then((r) => { if (r.status !== 401) { console.error(`run.sh: ${process.argv[1]} answered ${r.status} without a token, not 401`); process.exit(1); } })
      .catch((e) => { console.error(`run.sh: ${process.argv[1]}: ${e.message}`); process.exit(1); });
  ' "$2"
  start "$1" env BEARER_TOKEN="$3" "$NODE" "$HERE/bearer-hop.mjs" "${2%/mcp}"
  ENDPOINT="$READY/mcp"
}

summary=()
total_passed=0
total_failed=0
for target in "${targets[@]}"; do
  log "== $target"
  endpoint "$target"
  log "runner against $ENDPOINT"
  rc=0
  "${runner[@]}" server --url "$ENDPOINT" --output-dir "$logs/results-$target" </dev/null \
    >"$logs/runner-$target.txt" 2>&1 || rc=$?
  stop_all
  # The runner's summary: one '✓ NAME: …' or '✗ NAME: …' line per scenario.
  passed=$(grep -c '^✓ ' "$logs/runner-$target.txt" || true)
  failed=$(grep -c '^✗ ' "$logs/runner-$target.txt" || true)
  if ((passed + failed == 0)); then
    echo "run.sh: the runner ran no scenario against $target (exit $rc); its output (logs/runner-$target.txt):" >&2
    tail -n 30 "$logs/runner-$target.txt" >&2
    failed=1
  elif ((rc != 0 && failed == 0)); then
    echo "run.sh: the runner exited $rc against $target with no failed scenario; its output (logs/runner-$target.txt):" >&2
    tail -n 30 "$logs/runner-$target.txt" >&2
    failed=1
  fi
  if ((failed > 0)); then
    # Each failed check with its scenario and message (from the checks.json files).
    "$NODE" "$HERE/failed-checks.mjs" "$logs/results-$target" >&2 || true
  fi
  summary+=("$(printf '%-14s %2d passed, %d failed' "$target" "$passed" "$failed")")
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
done

echo "== conformance (@modelcontextprotocol/conformance $("$NODE" -p 'require("./node_modules/@modelcontextprotocol/conformance/package.json").version'), active server scenarios per target)"
printf '%s\n' "${summary[@]}"
echo "conformance: $total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
