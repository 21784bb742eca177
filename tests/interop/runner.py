#!/usr/bin/env python3
"""Interop scenarios: real third-party peers against the `oidc` example server (a–g), against
`mcp-oauth dev`, our own authorization server with the demo MCP server (h–n, dev_scenarios.py),
against `mcp-oauth proxy`, that server in proxy mode before an upstream identity provider
(o–r, proxy_scenarios.py), and real MCP servers behind `mcp-oauth gateway` (gw1–gw7,
gateway_scenarios.py; uo1–uo6, user_oauth_scenarios.py; the gateway's pages, pg1–pg2,
pages_scenarios.py).

Standard library only. Normally started by run.sh, which installs the peers (setup.sh) and
builds the example and the mcp-oauth command first; by hand:

    tests/interop/runner.py --server-bin target/debug/examples/oidc --dev-bin target/debug/mcp-oauth [-k FILTER]

Peers: oidc-provider (authorization server, peers/oidc-as.mjs), the MCP TypeScript SDK v1 and v2
clients (peers/ts-sdk-client.mjs, peers/ts-sdk-v2-client.mjs), the MCP Python SDK client
(peers/py_sdk_client.py, run with the venv's python) and headless Chromium driven by
playwright-core (peers/browser-authorize.mjs). Every process binds 127.0.0.1 on a free port and
is stopped on exit, failure or signal. Logs go to tests/interop/logs/ and are printed when a scenario fails.
Prints one PASS/FAIL line per scenario and a closing 'N passed, N failed' line; exits 1 on
any failure.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS = os.path.join(HERE, "peers")

AS_SCOPES = "mcp:read mcp:write admin"
SERVER_SCOPES = "mcp:read mcp:write"
EXPECTED_TOOLS = {"whoami", "echo", "admin_action"}
READY_DEADLINE = 30.0  # seconds, per server
CLIENT_TIMEOUT = 90.0  # seconds, per client run
PROTOCOL = "2025-11-25"


class Failure(Exception):
    """A failed assertion (its message says what was expected and what came)."""


# --------------------------------------------------------------------------- processes


def _set_pdeathsig() -> None:
    """Runs in the child before exec: the child gets SIGTERM if the runner dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A background server with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: str, stdout_path: str | None = None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "wb")
        # stdout_path: stdout to its own file (a server printing a machine-readable line), stderr to the log
        self.stdout_path = stdout_path
        self._out = open(stdout_path, "wb") if stdout_path else None
        self.popen = subprocess.Popen(
            argv,
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._out or self._log,
            stderr=self._log if self._out else subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
            preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"(no log: {e})"

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=5)
        self._log.close()
        if self._out:
            self._out.close()


# --------------------------------------------------------------------------- HTTP


@dataclass
class Resp:
    status: int
    headers: Any  # http.client.HTTPMessage
    body: bytes

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def json(self) -> Any:
        ctype = self.headers.get("content-type", "")
        text = self.body.decode("utf-8", "replace")
        if ctype.startswith("text/event-stream"):
            datas = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
            datas = [d for d in datas if d]
            if not datas:
                raise Failure(f"SSE response without data: {text[:300]!r}")
            return json.loads(datas[-1])
        return json.loads(text)

    def describe(self) -> str:
        hdrs = "".join(f"\n    {k}: {v}" for k, v in self.headers.items())
        return f"HTTP {self.status}{hdrs}\n    body: {self.body[:500]!r}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: D401 - urllib API
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http(method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None, timeout: float = 10) -> Resp:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as r:
            return Resp(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.headers, e.read())


def wait_ready(proc: Proc, url: str, deadline_s: float = READY_DEADLINE) -> float:
    """Polls url until 200; fails at once if the process exits. Returns seconds waited."""
    t0 = time.monotonic()
    last = "no attempt"
    while True:
        if not proc.alive():
            raise Failure(f"{proc.name} exited with {proc.popen.returncode} before {url} answered 200")
        try:
            r = http("GET", url, timeout=2)
            if r.status == 200:
                return time.monotonic() - t0
            last = f"HTTP {r.status}"
        except (OSError, urllib.error.URLError) as e:
            last = repr(e)
        if time.monotonic() - t0 > deadline_s:
            raise Failure(f"{proc.name} not ready after {deadline_s:.0f}s: GET {url} -> {last}")
        time.sleep(0.05)  # poll interval, bounded by the deadline above


def b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """Splits `Bearer k="v", k2="v2"` (our values never contain quotes or commas in keys)."""
    scheme, _, rest = value.partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme, params


# --------------------------------------------------------------------------- checks


class Checks:
    """Collects failed expectations so one scenario reports all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.logs: list[str] = []  # extra log files to print when the scenario fails

    def true(self, cond: bool, what: str) -> bool:
        if not cond:
            self.failures.append(what)
        return bool(cond)

    def eq(self, actual: Any, expected: Any, what: str) -> bool:
        return self.true(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")

    def note(self, text: str) -> None:
        self.notes.append(text)


# --------------------------------------------------------------------------- the environment


@dataclass
class Env:
    args: argparse.Namespace
    log_dir: str
    procs: list[Proc] = field(default_factory=list)
    dev_procs: list[Proc] = field(default_factory=list)  # per-scenario `mcp-oauth dev` servers
    as_port: int = 0
    issuer: str = ""
    mcp_port: int = 0
    mcp_url: str = ""
    mcp_origin: str = ""
    as_proc: Proc | None = None
    mcp_proc: Proc | None = None
    client_logs: list[str] = field(default_factory=list)

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"CI": env.get("CI", "true"), "NO_COLOR": "1", "NODE_NO_WARNINGS": "1"})
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(k, None)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def start(self, name: str, argv: list[str], extra_env: dict[str, str], stdout_path: str | None = None, shared: bool = True) -> Proc:
        env = self.base_env()
        env.update(extra_env)
        p = Proc(name, argv, env, self.log_dir, stdout_path)
        (self.procs if shared else self.dev_procs).append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs + self.dev_procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                print(f"warning: stopping {p.name}: {e}", file=sys.stderr)

    # ---- tokens straight from the AS (client_credentials, static client svc/svc-secret)
    def cc_token(self, resource: str, scope: str) -> str:
        body = urllib.parse.urlencode({"grant_type": "client_credentials", "resource": resource, "scope": scope}).encode()
        basic = base64.b64encode(b"svc:svc-secret").decode()
        r = http("POST", f"{self.issuer}/token", {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}, body)
        if r.status != 200:
            raise Failure(f"AS token request (resource={resource}, scope={scope!r}) failed: {r.describe()}")
        tok = json.loads(r.body)["access_token"]
        claims = b64json(tok.split(".")[1])
        if claims.get("aud") != resource:
            raise Failure(f"AS token has aud {claims.get('aud')!r}, wanted {resource!r}: {claims}")
        return tok

    def mcp_post(self, payload: dict, token: str | None, extra: dict[str, str] | None = None) -> Resp:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        return http("POST", self.mcp_url, headers, json.dumps(payload).encode())

    # ---- client runs
    def run_client(self, name: str, argv: list[str], extra_env: dict[str, str], check: bool = True) -> dict:
        """Runs a peer client to completion and returns its `RESULT {json}` line.

        check=False: never raises for the client's own failure; returns its RESULT (or, when it
        failed, its `PARTIAL {json}` line from stderr, or {}) with `_rc` and `_output` added.
        """
        env = self.base_env()
        env.update(extra_env)
        log_path = os.path.join(self.log_dir, f"client-{name}.log")
        self.client_logs.append(log_path)
        t0 = time.monotonic()
        p = subprocess.Popen(
            argv, cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None,
        )
        try:
            out, err = p.communicate(timeout=CLIENT_TIMEOUT)
            rc: int | str = p.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = p.communicate()
            rc = f"timeout after {CLIENT_TIMEOUT:.0f}s"
        except BaseException:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            raise
        took = time.monotonic() - t0
        text_out, text_err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        with open(log_path, "w") as f:
            f.write(f"$ {' '.join(argv)}\n# env: {json.dumps(extra_env)}\n# exit: {rc} in {took:.2f}s\n")
            f.write("----- stdout\n" + text_out + "\n----- stderr\n" + text_err)
        lines = [ln for ln in text_out.splitlines() if ln.startswith("RESULT ")]
        if check:
            if rc != 0:
                raise Failure(f"client {name} exited {rc} ({took:.1f}s); log {log_path}:\n{indent(text_out + text_err)}")
            if not lines:
                raise Failure(f"client {name} printed no RESULT line; log {log_path}:\n{indent(text_out + text_err)}")
        partial = [ln for ln in text_err.splitlines() if ln.startswith("PARTIAL ")]
        result: dict = {}
        if lines and rc == 0:
            result = json.loads(lines[-1][len("RESULT ") :])
        elif partial:
            result = json.loads(partial[-1][len("PARTIAL ") :])
        result["_seconds"] = round(took, 2)
        result["_rc"] = rc
        result["_log"] = log_path
        if rc != 0:
            result["_output"] = "\n".join(ln for ln in (text_out + "\n" + text_err).splitlines() if not ln.startswith("PARTIAL "))
        return result


def indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + ln for ln in text.rstrip().splitlines())


# --------------------------------------------------------------------------- scenarios


def scenario_a_start(env: Env, c: Checks) -> None:
    """oidc-provider AS + the example server, both ready."""
    env.as_port = free_port()
    env.issuer = f"http://127.0.0.1:{env.as_port}"
    env.as_proc = env.start(
        "oidc-provider",
        [env.args.node, os.path.join(PEERS, "oidc-as.mjs")],
        {"PORT": str(env.as_port), "AUTO_APPROVE": "1", "SCOPES": AS_SCOPES},
    )
    waited = wait_ready(env.as_proc, f"{env.issuer}/.well-known/openid-configuration")
    c.note(f"AS {env.issuer} ready in {waited:.2f}s")
    meta = json.loads(http("GET", f"{env.issuer}/.well-known/openid-configuration").body)
    c.eq(meta.get("issuer"), env.issuer, "AS discovery issuer")

    env.mcp_port = free_port()
    env.mcp_origin = f"http://127.0.0.1:{env.mcp_port}"
    env.mcp_url = f"{env.mcp_origin}/mcp"
    env.mcp_proc = env.start(
        "mcp-server",
        [env.args.server_bin],
        {
            "OIDC_ISSUER": env.issuer,
            "MCP_URL": env.mcp_url,
            "OIDC_SCOPES": SERVER_SCOPES,
            "RUST_LOG": os.environ.get("RUST_LOG", "info,mcp_oauth=debug"),
            "RUST_BACKTRACE": "1",
        },
    )
    waited = wait_ready(env.mcp_proc, f"{env.mcp_origin}/.well-known/oauth-protected-resource/mcp")
    c.note(f"MCP server {env.mcp_url} ready in {waited:.2f}s")
    # The banner is printed before listening; by now it is in the log.
    c.true(f"MCP endpoint: {env.mcp_url}" in env.mcp_proc.log_text(), f"server printed 'MCP endpoint: {env.mcp_url}'")


def scenario_b_discovery(env: Env, c: Checks) -> None:
    """RFC 9728 / RFC 8414 metadata, and the 401 challenge without a token."""
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        r = http("GET", env.mcp_origin + path)
        if not c.eq(r.status, 200, f"GET {path} status"):
            continue
        c.true(r.headers.get("content-type", "").startswith("application/json"), f"GET {path} content-type is JSON: {r.headers.get('content-type')!r}")
        prm = json.loads(r.body)
        c.eq(prm.get("resource"), env.mcp_url, f"{path} resource")
        c.eq(prm.get("authorization_servers"), [env.issuer], f"{path} authorization_servers")
        c.eq(prm.get("scopes_supported"), SERVER_SCOPES.split(), f"{path} scopes_supported")

    as_meta = json.loads(http("GET", f"{env.issuer}/.well-known/openid-configuration").body)
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        r = http("GET", env.mcp_origin + path)
        if not c.eq(r.status, 200, f"GET {path} status"):
            continue
        doc = json.loads(r.body)
        c.eq(doc.get("issuer"), env.issuer, f"{path} issuer (byte for byte)")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint"):
            c.eq(doc.get(key), as_meta.get(key), f"{path} {key} mirrors the AS")

    want = f'Bearer resource_metadata="{env.mcp_origin}/.well-known/oauth-protected-resource/mcp", scope="{SERVER_SCOPES}"'
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "interop", "version": "0"}}}
    cases = [
        ("POST /mcp (initialize, no token)", lambda: env.mcp_post(init, None)),
        ("POST /mcp (tools/list, no token)", lambda: env.mcp_post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, None)),
        ("GET /mcp (no token)", lambda: http("GET", env.mcp_url, {"Accept": "text/event-stream", "MCP-Protocol-Version": PROTOCOL})),
    ]
    for what, send in cases:
        r = send()
        c.eq(r.status, 401, f"{what} status")
        wa = r.header_all("WWW-Authenticate")
        if c.eq(len(wa), 1, f"{what} number of WWW-Authenticate headers ({wa})"):
            c.eq(wa[0], want, f"{what} WWW-Authenticate")
            c.true("error=" not in wa[0], f"{what} challenge has no error: {wa[0]!r}")


def scenario_b2_default_scopes(env: Env, c: Checks) -> None:
    """Without OIDC_SCOPES the example advertises the issuer's resource scopes (never openid, offline_access)."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    proc = env.start(
        "mcp-server-default-scopes",
        [env.args.server_bin],
        {"OIDC_ISSUER": env.issuer, "MCP_URL": f"{origin}/mcp", "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        shared=False,
    )
    wait_ready(proc, f"{origin}/.well-known/oauth-protected-resource/mcp")
    as_scopes = json.loads(http("GET", f"{env.issuer}/.well-known/openid-configuration").body).get("scopes_supported") or []
    want = [s for s in as_scopes if s not in ("openid", "offline_access")]
    c.eq(want, AS_SCOPES.split(), "oidc-provider offers the resource scopes it was started with")
    prm = json.loads(http("GET", f"{origin}/.well-known/oauth-protected-resource/mcp").body)
    c.eq(prm.get("scopes_supported"), want, "scopes_supported defaults to the issuer's resource scopes")
    r = http("POST", f"{origin}/mcp", {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": PROTOCOL},
             json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode())
    c.eq(r.status, 401, "no token: 401")
    challenge = " ".join(r.header_all("WWW-Authenticate"))
    c.true(f'scope="{" ".join(want)}"' in challenge, f"the challenge names the scopes: {challenge!r}")
    proc.stop()


def _assert_tools_and_echo(c: Checks, res: dict) -> None:
    c.eq(set(res.get("tools") or []), EXPECTED_TOOLS, "tools/list names")
    c.eq(res.get("echo"), "hello interop", "echo result")


def _assert_cc_whoami(env: Env, c: Checks, res: dict, scope: str) -> None:
    who, claims = res.get("whoami") or {}, res.get("token_claims") or {}
    c.eq(claims.get("aud"), env.mcp_url, "token aud")
    c.eq(claims.get("client_id"), "svc", "token client_id")
    c.eq(set((claims.get("scope") or "").split()), set(scope.split()), "token scope")
    c.eq(who.get("client_id"), "svc", "whoami client_id")
    c.eq(sorted(who.get("scopes") or []), sorted((claims.get("scope") or "").split()), "whoami scopes == token scopes")
    c.eq(who.get("issuer"), env.issuer, "whoami issuer")
    c.eq((who.get("user") or {}).get("id"), claims.get("sub"), "whoami user.id == token sub")


def _assert_authcode_whoami(env: Env, c: Checks, res: dict) -> None:
    who, claims = res.get("whoami") or {}, res.get("token_claims") or {}
    authz = res.get("authorize") or {}
    c.eq(authz.get("resource"), env.mcp_url, "authorize request resource (RFC 8707)")
    c.eq(authz.get("code_challenge_method"), "S256", "authorize request PKCE method")
    c.true(bool(res.get("client_id")), f"client was registered dynamically (client_id {res.get('client_id')!r})")
    c.eq(claims.get("aud"), env.mcp_url, "token aud")
    c.eq(claims.get("sub"), "test-user", "token sub")
    c.eq((who.get("user") or {}).get("id"), "test-user", "whoami user.id")
    c.eq(who.get("client_id"), res.get("client_id"), "whoami client_id == the registered client")
    c.true({"mcp:read", "mcp:write"} <= set(who.get("scopes") or []), f"whoami scopes include mcp:read and mcp:write: {who.get('scopes')}")
    c.eq(sorted(who.get("scopes") or []), sorted((claims.get("scope") or "").split()), "whoami scopes == token scopes")
    c.eq(who.get("issuer"), env.issuer, "whoami issuer")


def _ts(env: Env, name: str, mode: str) -> dict:
    return env.run_client(
        name,
        [env.args.node, os.path.join(PEERS, "ts-sdk-client.mjs"), env.mcp_url],
        {"MODE": mode, "AS_ISSUER": env.issuer, "SCOPE": "mcp:read mcp:write", "REDIRECT_URI": f"http://127.0.0.1:{free_port()}/callback"},
    )


def _py(env: Env, name: str, mode: str, connect: str) -> dict:
    return env.run_client(
        name,
        [env.args.python, os.path.join(PEERS, "py_sdk_client.py"), env.mcp_url, connect],
        {"MODE": mode, "AS_ISSUER": env.issuer, "SCOPE": "mcp:read mcp:write", "REDIRECT_URI": f"http://127.0.0.1:{free_port()}/callback"},
    )


def scenario_c_ts_cc(env: Env, c: Checks) -> None:
    """TS SDK v1, client_credentials (svc/svc-secret, resource = MCP URL)."""
    res = _ts(env, "ts-cc", "cc")
    c.note(f"client ran in {res['_seconds']}s; server {res.get('server')}")
    _assert_tools_and_echo(c, res)
    _assert_cc_whoami(env, c, res, "mcp:read mcp:write")
    grants = [t for t in res.get("token_requests", []) if t.get("grant_type") == "client_credentials"]
    if c.true(bool(grants), f"a client_credentials token request was seen: {res.get('token_requests')}"):
        c.eq(grants[0].get("resource"), env.mcp_url, "token request resource")


def scenario_d_ts_authcode(env: Env, c: Checks) -> None:
    """TS SDK v1, authorization_code + PKCE + DCR + resource, headless redirect follower."""
    res = _ts(env, "ts-authcode", "authcode")
    c.note(f"client ran in {res['_seconds']}s; authorize params {sorted(res.get('authorize') or {})}")
    _assert_tools_and_echo(c, res)
    _assert_authcode_whoami(env, c, res)
    grants = [t for t in res.get("token_requests", []) if t.get("grant_type") == "authorization_code"]
    if c.true(bool(grants), f"an authorization_code token request was seen: {res.get('token_requests')}"):
        c.eq(grants[0].get("resource"), env.mcp_url, "token request resource")


def _assert_py_connect(env: Env, c: Checks, res: dict, connect: str) -> None:
    ex = [e for e in res.get("exchanges", []) if e.get("url") == env.mcp_url and e.get("method") == "POST"]
    first_authorized = next((e for e in ex if e.get("authorized")), None)
    if connect == "auto":
        c.true(bool(ex) and ex[0].get("mcp_method") == "server/discover", f"auto mode: first POST is server/discover ({ex[:1]})")
        if first_authorized:
            c.note(
                f"server/discover (authorized) -> HTTP {first_authorized.get('status')} "
                f"{(first_authorized.get('body') or '')[:160]}; negotiated protocol {res.get('protocol_version')}"
            )
    else:
        c.true(bool(ex) and ex[0].get("mcp_method") in (None, "initialize"), f"legacy mode: first POST is initialize ({ex[:1]})")
        c.note(f"negotiated protocol {res.get('protocol_version')}")
    c.true(bool(res.get("protocol_version")), f"a protocol version was negotiated: {res.get('protocol_version')!r}")


def _py_scenario(mode: str, connect: str) -> Callable[[Env, Checks], None]:
    def run(env: Env, c: Checks) -> None:
        res = _py(env, f"py-{mode}-{connect}", mode, connect)
        c.note(f"client ran in {res['_seconds']}s")
        _assert_py_connect(env, c, res, connect)
        _assert_tools_and_echo(c, res)
        if mode == "cc":
            _assert_cc_whoami(env, c, res, "mcp:read mcp:write")
        else:
            _assert_authcode_whoami(env, c, res)

    run.__doc__ = f"Python SDK (mcp), {'client_credentials' if mode == 'cc' else 'authorization_code + PKCE + DCR'}, connect mode {connect!r}."
    return run


def _tool_call(name: str, args: dict | None = None, rid: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": args or {}}}


def scenario_f_wrong_resource(env: Env, c: Checks) -> None:
    """A token minted for another resource (and a garbage token) is refused with invalid_token."""
    other = f"http://127.0.0.1:{free_port()}/mcp"
    tok = env.cc_token(other, "mcp:read mcp:write")
    for what, token in (("token for " + other, tok), ("garbage token", "not.a.jwt")):
        r = env.mcp_post(_tool_call("whoami"), token)
        c.eq(r.status, 401, f"{what}: status ({r.describe()})" if r.status != 401 else f"{what}: status")
        wa = r.header_all("WWW-Authenticate")
        if c.eq(len(wa), 1, f"{what}: number of WWW-Authenticate headers ({wa})"):
            scheme, params = parse_challenge(wa[0])
            c.eq(scheme, "Bearer", f"{what}: challenge scheme")
            c.eq(params.get("error"), "invalid_token", f"{what}: challenge error ({wa[0]})")
            c.eq(params.get("resource_metadata"), f"{env.mcp_origin}/.well-known/oauth-protected-resource/mcp", f"{what}: resource_metadata")
            c.note(f"{what}: {wa[0]}")


def scenario_g_step_up(env: Env, c: Checks) -> None:
    """admin_action: 403 insufficient_scope with scope "mcp:read", 200 with "mcp:read admin"."""
    tok = env.cc_token(env.mcp_url, "mcp:read")
    r = env.mcp_post(_tool_call("admin_action"), tok)
    c.eq(r.status, 403, "scope 'mcp:read': status" + ("" if r.status == 403 else f" ({r.describe()})"))
    wa = r.header_all("WWW-Authenticate")
    if c.eq(len(wa), 1, f"scope 'mcp:read': number of WWW-Authenticate headers ({wa})"):
        scheme, params = parse_challenge(wa[0])
        c.eq(scheme, "Bearer", "403 challenge scheme")
        c.eq(params.get("error"), "insufficient_scope", f"403 challenge error ({wa[0]})")
        c.true("admin" in (params.get("scope") or "").split(), f"403 challenge scope contains admin ({wa[0]})")
        c.eq(params.get("resource_metadata"), f"{env.mcp_origin}/.well-known/oauth-protected-resource/mcp", "403 challenge resource_metadata")
        c.note(f"403: {wa[0]}")

    # Other tools still work with the smaller token.
    r = env.mcp_post(_tool_call("echo", {"text": "x"}), tok)
    c.eq(r.status, 200, "scope 'mcp:read': echo status" + ("" if r.status == 200 else f" ({r.describe()})"))

    tok = env.cc_token(env.mcp_url, "mcp:read admin")
    r = env.mcp_post(_tool_call("admin_action"), tok)
    if c.eq(r.status, 200, "scope 'mcp:read admin': status" + ("" if r.status == 200 else f" ({r.describe()})")):
        msg = r.json()
        result = msg.get("result") or {}
        text = "".join(x.get("text", "") for x in result.get("content") or [])
        c.true("error" not in msg and not result.get("isError"), f"admin_action succeeded: {msg}")
        c.true("admin action done" in text, f"result text contains 'admin action done': {text!r}")
        c.note(f"200: {text!r}")


SCENARIOS: list[tuple[str, Callable[[Env, Checks], None]]] = [
    ("a-start-as-and-server", scenario_a_start),
    ("b-discovery-and-401", scenario_b_discovery),
    ("b2-default-scopes-from-the-issuer", scenario_b2_default_scopes),
    ("c-ts-sdk-client-credentials", scenario_c_ts_cc),
    ("d-ts-sdk-authcode-pkce-dcr", scenario_d_ts_authcode),
    ("e1-py-sdk-client-credentials-auto", _py_scenario("cc", "auto")),
    ("e2-py-sdk-authcode-pkce-dcr-auto", _py_scenario("authcode", "auto")),
    ("e3-py-sdk-client-credentials-legacy", _py_scenario("cc", "legacy")),
    ("e4-py-sdk-authcode-pkce-dcr-legacy", _py_scenario("authcode", "legacy")),
    ("f-token-for-other-resource-refused", scenario_f_wrong_resource),
    ("g-step-up-admin-scope", scenario_g_step_up),
]

# Scenarios h–n (dev_scenarios.py) run against `mcp-oauth dev`, each with its own server; they
# import this module as `runner`, so alias it when it runs as a script.
if __name__ == "__main__":
    sys.modules.setdefault("runner", sys.modules[__name__])
import dev_scenarios  # noqa: E402
import dpop_scenarios  # noqa: E402
import gateway_scenarios  # noqa: E402
import issuer_scenarios  # noqa: E402
import pages_scenarios  # noqa: E402
import proxy_scenarios  # noqa: E402
import user_oauth_scenarios  # noqa: E402

SCENARIOS += dev_scenarios.SCENARIOS
SCENARIOS += proxy_scenarios.SCENARIOS  # o–r: `mcp-oauth proxy`
SCENARIOS += dpop_scenarios.SCENARIOS  # dpop1–dpop5: DPoP with oidc-provider and oauth4webapi
SCENARIOS += issuer_scenarios.SCENARIOS  # s: `mcp-oauth serve` trusting two issuers
SCENARIOS += gateway_scenarios.SCENARIOS  # gw1–gw7: real MCP servers behind `mcp-oauth gateway`
SCENARIOS += user_oauth_scenarios.SCENARIOS  # uo1–uo6: a SaaS upstream behind its own AS, user-oauth
SCENARIOS += pages_scenarios.SCENARIOS  # pg1–pg2: the gateway's pages in Chromium (token page, sign-in through a provider)


# --------------------------------------------------------------------------- main


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-bin", default=os.path.join(ROOT, "target", "debug", "examples", "oidc"), help="the built oidc example")
    ap.add_argument("--dev-bin", default=os.path.join(ROOT, "target", "debug", "mcp-oauth"), help="the built mcp-oauth command (scenarios h-n: mcp-oauth dev; o-r: mcp-oauth proxy, built with --features redis)")
    ap.add_argument("--chromium", default=os.environ.get("INTEROP_CHROMIUM", "/usr/bin/chromium"), help="Chromium for the browser scenarios")
    ap.add_argument("--node", default=os.environ.get("INTEROP_NODE", "node"))
    ap.add_argument("--python", default=os.path.join(HERE, ".venv", "bin", "python"), help="python with the mcp SDK (the setup venv)")
    ap.add_argument("--log-dir", default=os.path.join(HERE, "logs"))
    ap.add_argument("-k", dest="filter", default="", help="run only scenarios whose name contains this (comma: any of several); a-start runs when a selected scenario needs its servers")
    ap.add_argument("-v", "--verbose", action="store_true", help="print notes of passing scenarios too")
    args = ap.parse_args()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    wanted = [w for w in args.filter.split(",") if w]
    selected = [(n, f) for n, f in SCENARIOS if not wanted or any(w in n for w in wanted)]
    needs_shared = any(not getattr(f, "standalone", False) for n, f in selected if not n.startswith("a-"))
    if needs_shared and not any(n.startswith("a-") for n, _ in selected):
        selected = [SCENARIOS[0]] + selected
    if not needs_shared:
        selected = [(n, f) for n, f in selected if not n.startswith("a-")]
    if not selected:
        print(f"FAIL setup: no scenario matches -k {args.filter!r}")
        return 1
    if needs_shared and not os.access(args.server_bin, os.X_OK):
        print(f"FAIL setup: server binary {args.server_bin} missing (cargo build -p mcp-oauth --example oidc)")
        return 1
    os.makedirs(args.log_dir, exist_ok=True)
    for name in os.listdir(args.log_dir):
        if name.endswith((".log", ".stdout", ".png")):
            os.unlink(os.path.join(args.log_dir, name))

    env = Env(args=args, log_dir=args.log_dir)
    passed = failed = 0
    t_start = time.monotonic()
    try:
        started = False
        for name, fn in selected:
            standalone = getattr(fn, "standalone", False)
            c = Checks()
            t0 = time.monotonic()
            if name.startswith("a-") or started or standalone:
                try:
                    fn(env, c)
                except Failure as e:
                    c.failures.append(str(e))
                except Exception:
                    c.failures.append("harness error:\n" + indent(traceback.format_exc()))
            else:
                c.failures.append("not run: scenario a (servers) failed")
            if name.startswith("a-"):
                started = not c.failures
            took = time.monotonic() - t0
            if c.failures:
                failed += 1
                print(f"FAIL {name} ({took:.2f}s) - {fn.__doc__.strip().splitlines()[0]}")
                for f in c.failures:
                    print(indent(f, "    - "))
                for n in c.notes:
                    print(f"    note: {n}")
                if not standalone and (name.startswith("a-") or started):
                    for p in env.procs:
                        print(f"  ----- {p.name} log ({p.log_path}, {'running' if p.alive() else f'exited {p.popen.returncode}'}), last 120 lines:")
                        print(indent("\n".join(p.log_text().splitlines()[-120:]), "  | "))
                for path in c.logs:
                    try:
                        with open(path, "rb") as fh:
                            lines = fh.read().decode("utf-8", "replace").splitlines()
                    except OSError as e:
                        lines = [f"(unreadable: {e})"]
                    print(f"  ----- {path}, last 80 lines:")
                    print(indent("\n".join(ln[:2000] for ln in lines[-80:]), "  | "))
            else:
                passed += 1
                print(f"PASS {name} ({took:.2f}s) - {fn.__doc__.strip().splitlines()[0]}")
                if args.verbose:
                    for n in c.notes:
                        print(f"    note: {n}")
            sys.stdout.flush()
        # A server that died during the run is a failure even if no scenario noticed.
        for p in env.procs if started else []:
            if not p.alive():
                failed += 1
                print(f"FAIL {p.name}-still-running - exited {p.popen.returncode} during the run; log {p.log_path}:")
                print(indent(p.log_text()[-6000:], "  | "))
    except (KeyboardInterrupt, SystemExit) as e:
        failed += 1
        print(f"FAIL interrupted ({type(e).__name__} {getattr(e, 'code', '')}); stopping the servers")
        print(f"{passed} passed, {failed} failed")
        raise
    finally:
        env.stop_all()
    print(f"scenarios took {time.monotonic() - t_start:.2f}s; logs in {args.log_dir}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
