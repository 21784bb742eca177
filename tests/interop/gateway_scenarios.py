"""Scenarios gw1–gw7: real MCP servers behind `mcp-oauth gateway`, driven by real clients through
the OAuth flow of the gateway's embedded authorization server. Part of runner.py (standard
library only).

The upstreams are the reference servers, installed at pinned versions by setup.sh:
`@modelcontextprotocol/server-everything` (stdio and Streamable HTTP, through
peers/everything-upstream.mjs, which records every header and message it receives),
`@modelcontextprotocol/server-filesystem`, and PyPI's `mcp-server-fetch` and `mcp-server-time`
(through peers/stdio-recorder.mjs, which records every message on their stdin). Every scenario
starts its own `mcp-oauth gateway --port 0 --json --store memory --data-dir <fresh temp dir>`
(the embedded authorization server, login page on), reads its JSON line, polls its protected
resource metadata, and stops it with SIGTERM at the end (exit 0). The clients
(peers/gateway-client.mjs on the TS SDK v1 or v2, peers/gateway_py_client.py on the Python SDK)
register, sign in on the login page as dev/dev, and then run the steps each scenario gives them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import dev_scenarios as D
import runner as R  # the running runner.py (aliased in sys.modules before this import)

SECRET_VAR, SECRET_VALUE = "GW_INTEROP_SECRET", "never-for-the-child"
VISIBLE_VAR, VISIBLE_VALUE = "GW_INTEROP_VISIBLE", "given-with-env"
EVERYTHING = os.path.join(R.PEERS, "everything-upstream.mjs")
RECORDER = os.path.join(R.PEERS, "stdio-recorder.mjs")
FILESYSTEM = os.path.join(R.HERE, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
LONG = "trigger-long-running-operation"
DEADLINE = 20.0  # seconds: for a record to show up, an upstream to come back


# --------------------------------------------------------------------------- the gateway


class Gateway:
    """One `mcp-oauth gateway` process with what its JSON line says."""

    def __init__(self, env: R.Env, name: str, args: list[str], extra_env: dict[str, str] | None = None):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="interop-gw-")
        self.stdout_path = os.path.join(env.log_dir, f"{name}.stdout")
        argv = [env.args.dev_bin, "gateway", "--port", "0", "--json", "--store", "memory", "--data-dir", os.path.join(self.tmp, "data"), *args]
        self.proc = env.start(name, argv, {"MCP_OAUTH_LOG": os.environ.get("MCP_OAUTH_LOG", "info,mcp_oauth=debug"), **(extra_env or {})},
                              stdout_path=self.stdout_path, shared=False)
        self.info: dict[str, Any] = {}

    def wait_ready(self) -> None:
        t0 = time.monotonic()
        while True:
            with open(self.stdout_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if "\n" in text:
                break
            if not self.proc.alive():
                raise R.Failure(f"{self.name} exited {self.proc.popen.returncode} before printing its JSON line:\n{R.indent(self.proc.log_text()[-3000:])}")
            if time.monotonic() - t0 > 60:  # the gateway starts and initializes its upstreams first
                raise R.Failure(f"{self.name} printed no JSON line within 60 s; stdout so far {text!r}")
            time.sleep(0.05)  # poll interval, bounded by the deadline above
        self.info = json.loads(text.split("\n", 1)[0])
        R.wait_ready(self.proc, self.prm_url)

    @property
    def mcp_url(self) -> str:
        return self.info["mcp_url"]

    @property
    def issuer(self) -> str:
        return self.info["issuer"]

    @property
    def prm_url(self) -> str:
        return f"http://{urllib.parse.urlsplit(self.info['mcp_url']).netloc}/.well-known/oauth-protected-resource/mcp"


@contextlib.contextmanager
def gateway(env: R.Env, c: R.Checks, name: str, *args: str, extra_env: dict[str, str] | None = None) -> Iterator[Gateway]:
    if not env.args.dev_bin or not os.access(env.args.dev_bin, os.X_OK):
        raise R.Failure(f"mcp-oauth binary {env.args.dev_bin!r} missing (cargo build -p mcp-oauth-cli)")
    gw = Gateway(env, name, list(args), extra_env)
    c.logs.append(gw.proc.log_path)
    try:
        gw.wait_ready()
        c.note(f"{name}: {gw.mcp_url} ({gw.info.get('upstream')})")
        yield gw
    finally:
        gw.proc.stop()
        shutil.rmtree(gw.tmp, ignore_errors=True)
        c.eq(gw.proc.popen.returncode, 0, f"{name}: exit code after SIGTERM (graceful shutdown)")


def wait_port(proc: R.Proc, port: int) -> None:
    """Polls until something accepts TCP connections on 127.0.0.1:port."""
    t0 = time.monotonic()
    while True:
        if not proc.alive():
            raise R.Failure(f"{proc.name} exited {proc.popen.returncode} before listening on {port}:\n{R.indent(proc.log_text()[-2000:])}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if time.monotonic() - t0 > R.READY_DEADLINE:
            raise R.Failure(f"{proc.name} not listening on {port} after {R.READY_DEADLINE:.0f}s")
        time.sleep(0.05)  # poll interval, bounded by the deadline above


def everything_http(env: R.Env, c: R.Checks, name: str, port: int, record: str) -> R.Proc:
    proc = env.start(name, [env.args.node, EVERYTHING, "streamableHttp"], {"PORT": str(port), "RECORD_OUT": record}, shared=False)
    c.logs.append(proc.log_path)
    wait_port(proc, port)
    return proc


# --------------------------------------------------------------------------- records and clients


def read_record(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_record(path: str, pred: Callable[[list[dict]], Any], what: str) -> Any:
    """Polls the upstream's record until pred(record) is truthy; returns it (or fails)."""
    t0 = time.monotonic()
    while True:
        got = pred(read_record(path))
        if got:
            return got
        if time.monotonic() - t0 > DEADLINE:
            raise R.Failure(f"the upstream's record ({path}) never showed {what} within {DEADLINE:.0f}s")
        time.sleep(0.05)  # poll interval, bounded by the deadline above


def messages(record: list[dict]) -> list[dict]:
    return [e["message"] for e in record if e.get("event") == "message"]


def starts(record: list[dict]) -> list[int]:
    return [e["pid"] for e in record if e.get("event") == "start"]


def _login_env(gw: Gateway, steps: list[dict]) -> dict[str, str]:
    return {"STEPS": json.dumps(steps), "REDIRECT_URI": D.redirect_uri(), "SCOPE": "mcp:read mcp:write",
            "LOGIN_USER": D.DEV_USER, "LOGIN_PASSWORD": D.DEV_PASSWORD}


def ts(env: R.Env, c: R.Checks, gw: Gateway, name: str, sdk: str, steps: list[dict]) -> dict:
    return D.run_peer(env, c, name, [env.args.node, os.path.join(R.PEERS, "gateway-client.mjs"), gw.mcp_url], {"SDK": sdk, **_login_env(gw, steps)})


def py(env: R.Env, c: R.Checks, gw: Gateway, name: str, steps: list[dict]) -> dict:
    return D.run_peer(env, c, name, [env.args.python, os.path.join(R.PEERS, "gateway_py_client.py"), gw.mcp_url, "legacy"], _login_env(gw, steps))


def client(env: R.Env, c: R.Checks, gw: Gateway, kind: str, name: str, steps: list[dict]) -> dict:
    return py(env, c, gw, name, steps) if kind == "py" else ts(env, c, gw, name, kind, steps)


CLIENT_NAMES = {"v1": "gateway-v1-interop", "v2": "gateway-v2-interop", "py": "py-sdk-interop"}


def assert_signed_in(c: R.Checks, gw: Gateway, res: dict, kind: str) -> None:
    """The client signed in on the gateway's login page and holds the gateway's token."""
    auths = res.get("authorizations") or []
    if not c.true(bool(auths), f"{kind}: the client went through an authorization"):
        return
    D.assert_login_page(c, auths[0], CLIENT_NAMES[kind], f"{kind}: sign-in")
    c.eq((auths[0].get("callback") or {}).get("iss"), gw.issuer, f"{kind}: callback iss (RFC 9207)")
    authz = res.get("authorize") or {}
    c.eq(authz.get("resource"), gw.mcp_url, f"{kind}: authorize resource")
    c.eq(authz.get("code_challenge_method"), "S256", f"{kind}: PKCE")
    claims = res.get("token_claims") or {}
    c.eq((claims.get("aud"), claims.get("sub"), claims.get("iss")), (gw.mcp_url, D.DEV_USER, gw.issuer), f"{kind}: token aud, sub, iss")


def step(res: dict, key: str) -> dict:
    return (res.get("steps") or {}).get(key) or {}


def ok_text(c: R.Checks, rec: dict, what: str) -> str:
    c.true("error" not in rec and not rec.get("isError"), f"{what}: succeeded ({json.dumps(rec)[:600]})")
    return rec.get("text") or ""


def refused(c: R.Checks, rec: dict, what: str) -> None:
    """A call the policy denied: a JSON-RPC error (the SDKs raise it), not a tool result."""
    err = rec.get("error") or {}
    c.true(bool(err), f"{what}: refused with a JSON-RPC error ({json.dumps(rec)[:600]})")
    c.true("not permitted" in (err.get("message") or ""), f"{what}: the gateway's refusal ('not found, or not permitted'): {err.get('message')!r}")


def assert_no_token(c: R.Checks, record_path: str, tokens: list[str], what: str) -> None:
    """No inbound token, nor any Authorization header, reached the upstream."""
    with open(record_path) as f:
        text = f.read()
    for i, tok in enumerate(t for t in tokens if t):
        c.true(tok not in text and tok.split(".")[-1] not in text, f"{what}: token #{i + 1} (…{tok[-8:]}) appears nowhere in what the upstream received")
    heads = [e for e in read_record(record_path) if e.get("event") == "headers"]
    for e in heads:
        names = {k.lower() for k in (e.get("headers") or {})}
        c.true(not names & {"authorization", "cookie", "dpop"}, f"{what}: upstream request {e.get('method')} carried {sorted(names & {'authorization', 'cookie', 'dpop'})}")
    return None


# --------------------------------------------------------------------------- gw1: everything over stdio


def _everything_steps(tag: int) -> list[dict]:
    return [
        {"op": "list", "as": "list"},
        {"op": "call", "name": "get-env", "as": "env"},
        {"op": "call", "name": "echo", "args": {"message": f"hello {tag}"}, "as": "echo"},
        {"op": "progress", "name": LONG, "args": {"duration": 0.3, "steps": 3}, "as": "progress"},
        # 1 s a step: cancelled at the first progress notification. `steps` tags the call.
        {"op": "cancel", "name": LONG, "args": {"duration": 100 + tag, "steps": 100 + tag}, "after_progress": 1, "as": "cancel"},
        {"op": "call", "name": "echo", "args": {"message": f"after cancel {tag}"}, "as": "echo2"},
    ]


def _assert_everything(c: R.Checks, res: dict, kind: str, tag: int, record: str, *, check_env: bool) -> None:
    names = step(res, "list").get("names") or []
    c.true({"get-env", "echo", LONG} <= set(names), f"{kind}: tools/list shows the server's own names: {names}")
    if check_env:
        try:
            child_env = json.loads(ok_text(c, step(res, "env"), f"{kind}: get-env"))
        except ValueError:
            child_env = {}
        c.eq(child_env.get(VISIBLE_VAR), VISIBLE_VALUE, f"{kind}: the --env variable is in the child's environment")
        c.true(SECRET_VAR not in child_env, f"{kind}: the gateway's own secret variable is not in the child's environment ({sorted(child_env)})")
        c.true("MCP_OAUTH_LOG" not in child_env, f"{kind}: the gateway's MCP_OAUTH_LOG is not in the child's environment")
    c.eq(ok_text(c, step(res, "echo"), f"{kind}: echo"), f"Echo: hello {tag}", f"{kind}: echo text")
    prog = step(res, "progress")
    c.true("completed" in ok_text(c, prog, f"{kind}: long-running operation with progress"), f"{kind}: the operation completed: {prog.get('text')!r}")
    c.eq([p.get("progress") for p in prog.get("progress") or []], [1, 2, 3], f"{kind}: progress notifications 1, 2, 3 passed through")
    can = step(res, "cancel")
    c.true(bool(can.get("error")) and len(can.get("progress") or []) >= 1, f"{kind}: the cancelled call ended in an error after a progress notification ({json.dumps(can)[:400]})")
    c.eq(ok_text(c, step(res, "echo2"), f"{kind}: echo after the cancellation"), f"Echo: after cancel {tag}", f"{kind}: echo after cancel")

    # The cancellation reached the server, naming the id the server knows the call by.
    def cancelled(rec: list[dict]) -> Any:
        msgs = messages(rec)
        call = next((m for m in msgs if m.get("method") == "tools/call" and (m.get("params") or {}).get("arguments", {}).get("steps") == 100 + tag), None)
        if call is None:
            return None
        hit = [m for m in msgs if m.get("method") == "notifications/cancelled" and (m.get("params") or {}).get("requestId") == call.get("id")]
        return hit or None

    try:
        hit = wait_record(record, cancelled, f"{kind}: notifications/cancelled for the long call")
        c.note(f"{kind}: the server got {json.dumps(hit[0])[:200]}")
    except R.Failure as e:
        c.true(False, str(e))


def scenario_gw1_everything_stdio(env: R.Env, c: R.Checks) -> None:
    """server-everything as a stdio child, TS SDK v1 + v2 + Python SDK: cleared environment (get-env), progress and cancellation pass through, no token reaches it."""
    tmp = tempfile.mkdtemp(prefix="interop-gw1-")
    record = os.path.join(tmp, "everything.jsonl")
    c.logs.append(record)
    try:
        with gateway(env, c, "gw1-gateway", "--env", f"{VISIBLE_VAR}={VISIBLE_VALUE}", "--env", f"RECORD_OUT={record}", "--",
                     env.args.node, EVERYTHING, "stdio", extra_env={SECRET_VAR: SECRET_VALUE}) as gw:
            tokens = [gw.info.get("token", "")]
            for tag, kind in enumerate(("v1", "v2", "py")):
                res = client(env, c, gw, kind, f"gw1-{kind}", _everything_steps(tag))
                assert_signed_in(c, gw, res, kind)
                _assert_everything(c, res, kind, tag, record, check_env=True)
                tokens.append(res.get("access_token") or "")
            c.eq(len(set(starts(read_record(record)))), 1, "one child served every client (started once)")
            assert_no_token(c, record, tokens, "stdio")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- gw2: everything over Streamable HTTP, restarted


def scenario_gw2_everything_http_restart(env: R.Env, c: R.Checks) -> None:
    """server-everything over Streamable HTTP, TS SDK v2: progress, cancellation, no inbound token in any upstream request; the upstream restarted (session lost) -> the gateway re-initializes."""
    tmp = tempfile.mkdtemp(prefix="interop-gw2-")
    record = os.path.join(tmp, "everything.jsonl")
    ready, go = os.path.join(tmp, "ready"), os.path.join(tmp, "go")
    c.logs.append(record)
    port = R.free_port()
    upstream = everything_http(env, c, "gw2-everything", port, record)
    try:
        with gateway(env, c, "gw2-gateway", "--upstream", f"http://127.0.0.1:{port}/mcp") as gw:
            steps = _everything_steps(7)[:1] + _everything_steps(7)[2:] + [
                {"op": "pause", "ready": ready, "go": go, "as": "pause"},
                {"op": "call", "name": "echo", "args": {"message": "after the restart"}, "as": "after_restart"},
                {"op": "list", "as": "list_after"},
            ]
            out: dict = {}
            t = threading.Thread(target=lambda: out.update(res=_catch(lambda: ts(env, c, gw, "gw2-v2", "v2", steps))))
            t.start()
            try:
                t0 = time.monotonic()
                while not os.path.exists(ready) and t.is_alive() and time.monotonic() - t0 < R.CLIENT_TIMEOUT:
                    time.sleep(0.05)  # poll interval, bounded by the deadline and the client's life
                if os.path.exists(ready):
                    first = starts(read_record(record))
                    upstream.stop()  # its sessions die with it
                    upstream = everything_http(env, c, "gw2-everything-restarted", port, record)
                    c.note(f"upstream restarted: pids {first} -> {starts(read_record(record))}")
            finally:
                with open(go, "w") as f:
                    f.write("go")
                t.join()
            res = out.get("res")
            if isinstance(res, BaseException):
                raise res
            assert_signed_in(c, gw, res, "v2")
            _assert_everything(c, res, "v2", 7, record, check_env=False)
            after = step(res, "after_restart")
            c.eq(ok_text(c, after, "echo after the upstream restarted"), "Echo: after the restart", "echo after restart: the gateway re-initialized the lost session")
            c.true(LONG in (step(res, "list_after").get("names") or []), "tools/list after the restart")
            rec = read_record(record)
            c.eq(len(starts(rec)), 2, "the upstream ran twice (restarted once)")
            second = [e for e in rec if e.get("pid") == starts(rec)[-1]]
            inits = [e for e in second if e.get("event") == "message" and (e.get("message") or {}).get("method") == "initialize"]
            c.eq(len(inits), 1, "the restarted upstream got one initialize (the gateway's re-initialization)")
            assert_no_token(c, record, [gw.info.get("token", ""), res.get("access_token") or ""], "HTTP upstream")
            c.true(any(e.get("event") == "headers" for e in rec), "the upstream's request headers were recorded")
    finally:
        upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _catch(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BaseException as e:  # handed to the scenario's thread
        return e


# --------------------------------------------------------------------------- gw3: filesystem with path rules


def scenario_gw3_filesystem_policy(env: R.Env, c: R.Checks) -> None:
    """server-filesystem with a policy of path, paths[] and source/destination rules, Python SDK + TS SDK v1: allowed reads and moves work; the rest is refused before the server sees it; lists are filtered."""
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="interop-gw3-"))
    root = os.path.join(tmp, "root")
    for d in ("public/archive", "private"):
        os.makedirs(os.path.join(root, d))
    files = {"public/a.txt": "alpha public", "public/b.txt": "bravo public", "public/c.txt": "charlie public", "private/secret.txt": "TOP-SECRET-CONTENT"}
    for rel, text in files.items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    record, policy, audit = os.path.join(tmp, "fs.jsonl"), os.path.join(tmp, "policy.toml"), os.path.join(tmp, "audit.jsonl")
    with open(policy, "w") as f:
        f.write(f"""[policy.arguments]
root = "{root}"
paths = ["path", "paths", "source", "destination"]

[[policy.rule]]
id = "read-public"
tools = ["read_text_file"]
args.path = {{ under = "public" }}

[[policy.rule]]
id = "read-many-public"
tools = ["read_multiple_files"]
args.paths = {{ under = "public" }}

[[policy.rule]]
id = "archive-public"
tools = ["move_file"]
args.source = {{ under = "public" }}
args.destination = {{ under = "public/archive" }}
""")
    c.logs.append(record)
    p = lambda rel: os.path.join(root, rel)  # noqa: E731
    try:
        with gateway(env, c, "gw3-gateway", "--policy", policy, "--audit", audit, "--",
                     env.args.node, RECORDER, record, env.args.node, FILESYSTEM, root) as gw:
            for kind, n in (("py", 1), ("v1", 2)):
                c_file = "c.txt" if kind == "v1" else "b.txt"
                res = client(env, c, gw, kind, f"gw3-{kind}", [
                    {"op": "list", "as": "list"},
                    {"op": "call", "name": "read_text_file", "args": {"path": p("public/a.txt")}, "as": "read_ok"},
                    {"op": "call", "name": "read_text_file", "args": {"path": p("private/secret.txt")}, "as": "read_private"},
                    {"op": "call", "name": "read_text_file", "args": {"path": p("public/../private/secret.txt")}, "as": "read_dotdot"},
                    {"op": "call", "name": "read_text_file", "args": {"path": "/etc/hostname"}, "as": "read_outside_root"},
                    {"op": "call", "name": "read_multiple_files", "args": {"paths": [p("public/a.txt"), p("public/c.txt")]}, "as": "many_ok"},
                    {"op": "call", "name": "read_multiple_files", "args": {"paths": [p("public/a.txt"), p("private/secret.txt")]}, "as": "many_mixed"},
                    {"op": "call", "name": "move_file", "args": {"source": p(f"public/{c_file}"), "destination": p(f"public/archive/{c_file}")}, "as": "move_ok"},
                    {"op": "call", "name": "move_file", "args": {"source": p("public/a.txt"), "destination": p("private/a.txt")}, "as": "move_out"},
                    {"op": "call", "name": "list_directory", "args": {"path": p("private")}, "as": "unlisted_tool"},
                ])
                assert_signed_in(c, gw, res, kind)
                c.eq(sorted(step(res, "list").get("names") or []), ["move_file", "read_multiple_files", "read_text_file"], f"{kind}: tools/list shows only the tools the policy lets this user call")
                c.eq(ok_text(c, step(res, "read_ok"), f"{kind}: read public/a.txt"), "alpha public", f"{kind}: read_text_file content")
                for key in ("read_private", "read_dotdot", "read_outside_root", "many_mixed", "move_out", "unlisted_tool"):
                    refused(c, step(res, key), f"{kind}: {key}")
                many = ok_text(c, step(res, "many_ok"), f"{kind}: read_multiple_files in public")
                c.true("alpha public" in many and "charlie public" in many, f"{kind}: both files read: {many!r}")
                ok_text(c, step(res, "move_ok"), f"{kind}: move_file into public/archive")
                c.true(os.path.exists(p(f"public/archive/{c_file}")) and not os.path.exists(p(f"public/{c_file}")), f"{kind}: the file moved on disk")
                c.true(os.path.exists(p("public/a.txt")) and not os.path.exists(p("private/a.txt")), f"{kind}: the refused move left a.txt where it was")
                c.true("TOP-SECRET-CONTENT" not in json.dumps(res.get("steps")), f"{kind}: the secret file's content reached the client in no answer")
            # The server got the allowed calls and none of the refused ones.
            calls = [m for m in messages(read_record(record)) if m.get("method") == "tools/call"]
            seen = json.dumps(calls)
            c.true("public/a.txt" in seen and "archive" in seen, f"the allowed calls reached the server ({len(calls)} calls)")
            c.true("private" not in seen and "/etc/hostname" not in seen and "list_directory" not in seen, f"no refused call reached the server: {seen[:800]}")
            with open(audit) as f:
                events = [json.loads(line) for line in f if line.strip()]
            denies = [e for e in events if e.get("method") == "tools/call" and (e.get("decision") or {}).get("effect") == "deny"]
            c.eq(len(denies), 12, f"audit: one deny event per refused call ({[(e.get('tool'), e.get('decision')) for e in denies]})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- gw4: fetch + time, two upstreams, URL rules


class _Pages(BaseHTTPRequestHandler):
    served: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).served.append(self.path)
        if self.path == "/page":
            body = b"<html><head><title>Interop page</title></head><body><h1>Gateway interop</h1><p>The marker is PAGE-MARKER-4711, served on loopback.</p></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        else:
            body = b"not here"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def scenario_gw4_fetch_time_two_upstreams(env: R.Env, c: R.Checks) -> None:
    """mcp-server-fetch and mcp-server-time behind one gateway (config file), TS SDK v1: prefixed names; URL rules let fetch read only the loopback page; a forbidden URL is refused before the server sees it."""
    tmp = tempfile.mkdtemp(prefix="interop-gw4-")
    rec_fetch, rec_time = os.path.join(tmp, "fetch.jsonl"), os.path.join(tmp, "time.jsonl")
    c.logs += [rec_fetch, rec_time]
    _Pages.served = []
    pages = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    port = pages.server_address[1]
    config, policy = os.path.join(tmp, "gateway.toml"), os.path.join(tmp, "policy.toml")
    with open(policy, "w") as f:
        f.write("""[policy.arguments]
urls = ["url"]

[[policy.rule]]
id = "fetch-loopback-only"
tools = ["fetch__fetch"]
args.url = { schemes = ["http"], hosts = ["127.0.0.1"] }

[[policy.rule]]
id = "time"
tools = ["time__*"]
""")
    node, python = json.dumps(env.args.node), json.dumps(env.args.python)
    with open(config, "w") as f:
        f.write(f"""[[upstream]]
name = "fetch"
command = [{node}, {json.dumps(RECORDER)}, {json.dumps(rec_fetch)}, {python}, "-m", "mcp_server_fetch", "--allow-private-ips"]

[[upstream]]
name = "time"
command = [{node}, {json.dumps(RECORDER)}, {json.dumps(rec_time)}, {python}, "-m", "mcp_server_time", "--local-timezone", "UTC"]

[policy]
file = {json.dumps(policy)}
""")
    try:
        with gateway(env, c, "gw4-gateway", "--config", config) as gw:
            page, forbidden = f"http://127.0.0.1:{port}/page", f"http://localhost:{port}/forbidden"
            res = ts(env, c, gw, "gw4-v1", "v1", [
                {"op": "list", "as": "list"},
                # raw: the page as served. Without it the server simplifies HTML with readabilipy,
                # which runs `npm install` for its JavaScript at first use (a download at test time).
                {"op": "call", "name": "fetch__fetch", "args": {"url": page, "raw": True}, "as": "fetch_ok"},
                {"op": "call", "name": "fetch__fetch", "args": {"url": forbidden}, "as": "fetch_forbidden"},
                {"op": "call", "name": "fetch__fetch", "args": {"url": f"https://127.0.0.1:{port}/page"}, "as": "fetch_https"},
                {"op": "call", "name": "time__get_current_time", "args": {"timezone": "UTC"}, "as": "time"},
                {"op": "call", "name": "get_current_time", "args": {"timezone": "UTC"}, "as": "unprefixed"},
            ])
            assert_signed_in(c, gw, res, "v1")
            names = step(res, "list").get("names") or []
            c.true({"fetch__fetch", "time__get_current_time", "time__convert_time"} <= set(names), f"tools/list merges both upstreams under prefixed names: {names}")
            c.true(all(n.startswith(("fetch__", "time__")) for n in names), f"every name is prefixed: {names}")
            text = ok_text(c, step(res, "fetch_ok"), "fetch of the loopback page")
            c.true("PAGE-MARKER-4711" in text, f"fetch returned the page's content: {text[:300]!r}")
            refused(c, step(res, "fetch_forbidden"), "fetch of a host the rule does not list")
            refused(c, step(res, "fetch_https"), "fetch with a scheme the rule does not list")
            refused(c, step(res, "unprefixed"), "a tool name without its upstream's prefix")
            t = ok_text(c, step(res, "time"), "time__get_current_time")
            c.true('"timezone": "UTC"' in t or '"timezone":"UTC"' in t, f"the time server answered for UTC: {t[:200]!r}")
            c.true("/page" in _Pages.served and "/forbidden" not in _Pages.served, f"the page server saw the allowed fetch only: {_Pages.served}")
            fetched = json.dumps(messages(read_record(rec_fetch)))
            c.true(page in fetched and "forbidden" not in fetched and "https://" not in fetched, "the fetch server got the allowed call, never the refused ones")
            c.true(any(m.get("method") == "tools/call" for m in messages(read_record(rec_time))), "the time server got its call")
            assert_no_token(c, rec_fetch, [gw.info.get("token", ""), res.get("access_token") or ""], "fetch")
    finally:
        pages.shutdown()
        pages.server_close()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- gw5: one of two upstreams down


def scenario_gw5_one_upstream_down(env: R.Env, c: R.Checks) -> None:
    """Two upstreams (server-everything over HTTP, mcp-server-time over stdio), Python SDK: the HTTP one stops mid-session -> the list degrades and names it, the other's tools still work; it comes back -> its tools work again."""
    tmp = tempfile.mkdtemp(prefix="interop-gw5-")
    record, rec_time = os.path.join(tmp, "everything.jsonl"), os.path.join(tmp, "time.jsonl")
    ready, go, ready2, go2 = (os.path.join(tmp, n) for n in ("ready", "go", "ready2", "go2"))
    port = R.free_port()
    upstream = everything_http(env, c, "gw5-everything", port, record)
    config = os.path.join(tmp, "gateway.toml")
    with open(config, "w") as f:
        f.write(f"""[[upstream]]
name = "everything"
url = "http://127.0.0.1:{port}/mcp"

[[upstream]]
name = "time"
command = [{json.dumps(env.args.node)}, {json.dumps(RECORDER)}, {json.dumps(rec_time)}, {json.dumps(env.args.python)}, "-m", "mcp_server_time", "--local-timezone", "UTC"]
""")
    try:
        with gateway(env, c, "gw5-gateway", "--config", config) as gw:
            steps = [
                {"op": "list", "as": "list"},
                {"op": "call", "name": "everything__echo", "args": {"message": "both up"}, "as": "echo"},
                {"op": "pause", "ready": ready, "go": go, "as": "pause"},
                {"op": "list", "as": "list_down"},
                {"op": "call", "name": "time__get_current_time", "args": {"timezone": "UTC"}, "as": "time_down"},
                {"op": "call", "name": "everything__echo", "args": {"message": "while down"}, "as": "echo_down"},
                {"op": "pause", "ready": ready2, "go": go2, "as": "pause2"},
                {"op": "until_ok", "name": "everything__echo", "args": {"message": "back"}, "deadline_s": DEADLINE, "as": "echo_back"},
            ]
            out: dict = {}
            t = threading.Thread(target=lambda: out.update(res=_catch(lambda: py(env, c, gw, "gw5-py", steps))))
            t.start()
            try:
                if _wait_file(ready, t):
                    upstream.stop()
                    with open(go, "w") as f:
                        f.write("go")
                    if _wait_file(ready2, t):
                        upstream = everything_http(env, c, "gw5-everything-restarted", port, record)
            finally:
                for path in (go, go2):
                    with open(path, "w") as f:
                        f.write("go")
                t.join()
            res = out.get("res")
            if isinstance(res, BaseException):
                raise res
            assert_signed_in(c, gw, res, "py")
            names = step(res, "list").get("names") or []
            c.true({"everything__echo", "time__get_current_time"} <= set(names), f"both upstreams listed while up: {len(names)} tools")
            c.eq(ok_text(c, step(res, "echo"), "everything__echo while up"), "Echo: both up", "echo while up")
            down = step(res, "list_down")
            dnames = down.get("names") or []
            c.true("time__get_current_time" in dnames and not any(n.startswith("everything__") for n in dnames), f"with everything down the list degrades to the time tools: {dnames}")
            c.eq(((down.get("meta") or {}).get("io.github.mcp-oauth/unavailable")), ["everything"], f"the list's _meta names the unavailable upstream ({down.get('meta')})")
            ok_text(c, step(res, "time_down"), "time__get_current_time while everything is down")
            e = step(res, "echo_down")
            c.true(bool(e.get("error")) or e.get("isError") is True, f"everything__echo while it is down fails cleanly: {json.dumps(e)[:300]}")
            attempts = step(res, "echo_back").get("attempts") or []
            c.true(bool(attempts) and attempts[-1].get("text") == "Echo: back", f"everything__echo works again once it is back: {json.dumps(attempts)[:600]}")
            c.note(f"calls until everything answered again: {len(attempts)}")
    finally:
        upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_file(path: str, t: threading.Thread) -> bool:
    t0 = time.monotonic()
    while not os.path.exists(path):
        if not t.is_alive() or time.monotonic() - t0 > R.CLIENT_TIMEOUT:
            return False
        time.sleep(0.05)  # poll interval, bounded by the deadline and the client's life
    return True


# --------------------------------------------------------------------------- gw6: the stdio child killed


def scenario_gw6_stdio_child_killed(env: R.Env, c: R.Checks) -> None:
    """server-everything as a stdio child killed (SIGKILL) during a call, TS SDK v1: that call fails cleanly, the gateway restarts the child, the next calls work in the same session."""
    tmp = tempfile.mkdtemp(prefix="interop-gw6-")
    record = os.path.join(tmp, "everything.jsonl")
    c.logs.append(record)
    try:
        with gateway(env, c, "gw6-gateway", "--env", f"RECORD_OUT={record}", "--", env.args.node, EVERYTHING, "stdio") as gw:
            steps = [
                {"op": "call", "name": "echo", "args": {"message": "before"}, "as": "before"},
                {"op": "call", "name": LONG, "args": {"duration": 600, "steps": 600}, "as": "killed"},
                {"op": "call", "name": "echo", "args": {"message": "right after"}, "as": "right_after"},
                {"op": "until_ok", "name": "echo", "args": {"message": "after restart"}, "deadline_s": DEADLINE, "as": "after"},
            ]
            out: dict = {}
            t = threading.Thread(target=lambda: out.update(res=_catch(lambda: ts(env, c, gw, "gw6-v1", "v1", steps))))
            t.start()
            killed = None
            try:
                def long_call(rec: list[dict]) -> Any:
                    return any(m.get("method") == "tools/call" and (m.get("params") or {}).get("name") == LONG for m in messages(rec)) and starts(rec)

                pids = wait_record(record, long_call, "the long call")
                killed = pids[-1]
                os.kill(killed, signal.SIGKILL)
                c.note(f"killed the child {killed} during the long call")
            finally:
                t.join()
            res = out.get("res")
            if isinstance(res, BaseException):
                raise res
            assert_signed_in(c, gw, res, "v1")
            c.eq(ok_text(c, step(res, "before"), "echo before"), "Echo: before", "echo before the kill")
            k = step(res, "killed")
            err = (k.get("error") or {}).get("message") or ""
            c.true("exited" in err, f"the call in flight failed cleanly with the gateway's error (not a timeout): {json.dumps(k)[:300]}")
            ra = step(res, "right_after")
            c.true("text" in ra or "timed out" not in ((ra.get("error") or {}).get("message") or "").lower(), f"the call right after the kill answered (a result or a clean error, no timeout): {json.dumps(ra)[:300]}")
            attempts = step(res, "after").get("attempts") or []
            c.true(bool(attempts) and attempts[-1].get("text") == "Echo: after restart", f"echo works after the restart: {json.dumps(attempts)[:600]}")
            pids = starts(read_record(record))
            c.true(len(pids) == 2 and killed in pids and pids[-1] != killed, f"the gateway started a new child: {pids}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- gw7: an approval in a real browser


def _mcp_post(url: str, token: str, session: str | None, body: dict) -> tuple[dict[str, str], dict | None]:
    """One JSON-RPC POST to the gateway; its headers and its message (JSON or the last SSE data)."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "accept": "application/json, text/event-stream"}
    if session:
        headers["mcp-session-id"] = session
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as res:
        text = res.read().decode()
        got = {k.lower(): v for k, v in res.headers.items()}
    if not text.strip():
        return got, None
    if got.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
        return got, json.loads(data[-1]) if data else None
    return got, json.loads(text)


def scenario_gw7_approval_in_chromium(env: R.Env, c: R.Checks) -> None:
    """[[policy.approve]]: a call waits with a -32042 URL elicitation; the user opens the link in headless Chromium, signs in at the gateway, approves; the identical call passes once."""
    tmp = tempfile.mkdtemp(prefix="interop-gw7-")
    policy = os.path.join(tmp, "policy.toml")
    with open(policy, "w") as f:
        f.write('[[policy.rule]]\nid = "all"\ntools = ["*"]\n\n[[policy.approve]]\nid = "echo-approved"\ntools = ["echo"]\n')
    try:
        with gateway(env, c, "gw7-gateway", "--policy", policy, "--", env.args.node, EVERYTHING, "stdio") as gw:
            token = gw.info.get("token", "")
            got, init = _mcp_post(gw.mcp_url, token, None, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {"url": {}}}, "clientInfo": {"name": "gw7", "version": "1"}}})
            session = got.get("mcp-session-id")
            c.true(bool(init and init.get("result")), f"initialize: {init}")
            _mcp_post(gw.mcp_url, token, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            echo = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "approved in chromium"}}}
            _, waiting = _mcp_post(gw.mcp_url, token, session, echo)
            error = (waiting or {}).get("error") or {}
            c.eq(error.get("code"), -32042, f"the call waits for approval: {waiting}")
            elicitation = ((error.get("data") or {}).get("elicitations") or [{}])[0]
            c.eq(elicitation.get("mode"), "url", "a URL-mode elicitation")
            link = elicitation.get("url") or ""
            c.true(link.startswith(gw.mcp_url.rsplit("/mcp", 1)[0] + "/gateway/approve?ticket="), f"the link is the gateway's approval page: {link}")
            res = D.run_peer(env, c, "gw7-chromium", [env.args.node, os.path.join(R.PEERS, "approve-page.mjs"), link],
                             {"LOGIN_USER": D.DEV_USER, "LOGIN_PASSWORD": D.DEV_PASSWORD, "DECISION": "approve"})
            c.true(str(res.get("sign_in_url", "")).endswith("/authorize"), f"without a session the browser signs in first: {res.get('sign_in_url')}")
            c.true(bool(res.get("back_on_link")), "after signing in the browser is back on the link")
            page = res.get("page") or {}
            c.eq(page.get("tool"), "echo", "the page names the tool")
            c.eq(page.get("arguments"), '{"message":"approved in chromium"}', "the page shows the canonical arguments")
            session_cookie = [k for k in res.get("cookies") or [] if k.get("name") == "mcp_gateway_session"]
            c.true(bool(session_cookie) and session_cookie[0].get("httpOnly") and session_cookie[0].get("sameSite") == "Lax",
                   f"the session cookie is HttpOnly and SameSite=Lax: {res.get('cookies')}")
            c.eq((res.get("answer") or {}).get("heading"), "Approved", "the answer page")
            _, passed = _mcp_post(gw.mcp_url, token, session, echo)
            content = ((passed or {}).get("result") or {}).get("content") or [{}]
            c.eq(content[0].get("text"), "Echo: approved in chromium", f"the identical call passes: {passed}")
            _, again = _mcp_post(gw.mcp_url, token, session, echo)
            c.eq(((again or {}).get("error") or {}).get("code"), -32042, f"once: the next identical call waits again: {again}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _standalone(fn: Callable[[R.Env, R.Checks], None]) -> Callable[[R.Env, R.Checks], None]:
    fn.standalone = True  # type: ignore[attr-defined]  # needs no shared servers (scenario a)
    return fn


SCENARIOS: list[tuple[str, Callable[[R.Env, R.Checks], None]]] = [
    (name, _standalone(fn))
    for name, fn in [
        ("gw1-gateway-everything-stdio-three-clients", scenario_gw1_everything_stdio),
        ("gw2-gateway-everything-http-restarted", scenario_gw2_everything_http_restart),
        ("gw3-gateway-filesystem-path-rules", scenario_gw3_filesystem_policy),
        ("gw4-gateway-fetch-and-time-url-rules", scenario_gw4_fetch_time_two_upstreams),
        ("gw5-gateway-one-of-two-upstreams-down", scenario_gw5_one_upstream_down),
        ("gw6-gateway-stdio-child-killed", scenario_gw6_stdio_child_killed),
        ("gw7-gateway-approval-in-chromium", scenario_gw7_approval_in_chromium),
    ]
]
