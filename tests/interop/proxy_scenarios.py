"""Scenarios o–r: real clients against `mcp-oauth proxy`, our authorization server in proxy mode
in front of an upstream identity provider without dynamic registration, with the demo MCP server.
Part of runner.py (standard library only).

Upstreams: peers/oidc-upstream.mjs (oidc-provider configured like Google: one pre-registered
confidential client, PKCE required, id_token with email and name, automatic sign-in) and
`GithubStandIn` below (GitHub's web flow and `/user` API on a stdlib HTTP server). Every
scenario starts its own upstream and `mcp-oauth proxy` instances (fresh data folders) and stops
them in `finally`; SIGTERM must end each proxy gracefully (exit 0).

The MCP clients (TS SDK v1, Python SDK) register with the proxy, approve our consent page
(hidden fields + `decision=approve`), are sent upstream, come back through
`<issuer>/oauth/callback` and get our tokens. With DUMP_RECEIVED the peers write everything they
received and stored; no upstream token (access, refresh, id_token) may appear in it.

Scenario q runs two proxy instances on one Redis (Debian's redis-server via scripts/redis-server,
a private server on a free port) behind `RoundRobin`, a stdlib load balancer that alternates
backends per request and closes every connection; q2 runs the same on one PostgreSQL database
(Debian's postgresql via scripts/postgres-server, a private server on a free port).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import runner as R  # the running runner.py (aliased in sys.modules before this import)

UPSTREAM_CLIENT_ID = "mcp-oauth-proxy"
UPSTREAM_SECRET = "upstream-secret-" + secrets.token_hex(8)
OIDC_USER = {"sub": "upstream-user-4711", "email": "ada@upstream.example", "name": "Ada Lovelace"}
GH_USER = {"login": "octocat", "id": 583231, "name": "The Octocat", "email": "octocat@github.example",
           "avatar_url": "https://avatars.github.example/u/583231"}
BASE_SCOPES = {"mcp:read", "mcp:write"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


# --------------------------------------------------------------------------- the proxy


class ProxyServer:
    """One `mcp-oauth proxy` process with what its JSON line says."""

    def __init__(self, env: R.Env, name: str, data_dir: str, args: list[str], port: int = 0):
        self.env, self.name, self.data_dir, self.args = env, name, data_dir, args
        self.port = port
        self.stdout_path = os.path.join(env.log_dir, f"{name}.stdout")
        self.proc: R.Proc | None = None
        self.info: dict[str, Any] = {}
        self.ready_s = 0.0
        self.stopped = False

    def start(self) -> None:
        # A chosen port (needed when the upstream must know the callback first, or behind the
        # load balancer) may have been taken since: retry with another one.
        for attempt in range(3):
            argv = [self.env.args.dev_bin, "proxy", "--port", str(self.port), "--data-dir", self.data_dir, "--json", *self.args]
            self.proc = self.env.start(self.name, argv, {"MCP_OAUTH_LOG": "info,mcp_oauth=debug", "RUST_BACKTRACE": "1"},
                                       stdout_path=self.stdout_path, shared=False)
            try:
                self._wait_ready()
                return
            except R.Failure:
                self.proc.stop()
                if "cannot listen" in self.log() and self.port and attempt < 2:
                    self.port = R.free_port()
                    continue
                raise

    def _wait_ready(self) -> None:
        assert self.proc is not None
        t0 = time.monotonic()
        while True:
            with open(self.stdout_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if "\n" in text:
                break
            if not self.proc.alive():
                raise R.Failure(f"{self.name} exited {self.proc.popen.returncode} before its JSON line; log:\n{R.indent(self.log()[-3000:])}")
            if time.monotonic() - t0 > R.READY_DEADLINE:
                raise R.Failure(f"{self.name} printed no JSON line within {R.READY_DEADLINE:.0f}s; log:\n{R.indent(self.log()[-3000:])}")
            time.sleep(0.02)  # poll interval, bounded by the deadline above
        line = text.split("\n", 1)[0]
        try:
            self.info = json.loads(line)
        except json.JSONDecodeError as e:
            raise R.Failure(f"{self.name}: first stdout line is not JSON ({e}): {line!r}")
        for key in ("mcp_url", "issuer", "callback_url", "data_dir"):
            if key not in self.info:
                raise R.Failure(f"{self.name}: JSON line lacks {key!r}: {line!r}")
        R.wait_ready(self.proc, f"{self.origin}/.well-known/oauth-protected-resource/mcp", R.READY_DEADLINE - (time.monotonic() - t0))
        self.ready_s = time.monotonic() - t0

    @property
    def origin(self) -> str:
        """Where this instance itself listens (the issuer unless --public-url says otherwise)."""
        return f"http://127.0.0.1:{self.port}" if self.port else self.info["issuer"]

    @property
    def issuer(self) -> str:
        return self.info["issuer"]

    @property
    def mcp_url(self) -> str:
        return self.info["mcp_url"]

    @property
    def callback_url(self) -> str:
        return self.info["callback_url"]

    def log(self) -> str:
        return ANSI.sub("", self.proc.log_text()) if self.proc else ""

    def stop(self, c: R.Checks) -> None:
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        self.proc.stop()
        c.eq(self.proc.popen.returncode, 0, f"{self.name}: exit code after SIGTERM (graceful shutdown)")
        c.true("mcp-oauth proxy stopped" in self.log(), f"{self.name}: logged 'mcp-oauth proxy stopped' on SIGTERM")


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[str]:
    tmp = tempfile.mkdtemp(prefix=f"interop-{prefix}-")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def need_binary(env: R.Env) -> None:
    if not env.args.dev_bin or not os.access(env.args.dev_bin, os.X_OK):
        raise R.Failure(f"mcp-oauth binary {env.args.dev_bin!r} missing (cargo build -p mcp-oauth-cli --features redis,postgres)")


# --------------------------------------------------------------------------- upstreams


class OidcUpstream:
    """peers/oidc-upstream.mjs: a Google-like OpenID provider that knows one client, the proxy."""

    def __init__(self, env: R.Env, c: R.Checks, name: str, redirect_uri: str):
        self.port = R.free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.record_path = os.path.join(env.log_dir, f"{name}.record.jsonl")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.record_path)  # appended to: nothing of an earlier run
        self.proc = env.start(name, [env.args.node, os.path.join(R.PEERS, "oidc-upstream.mjs")], {
            "PORT": str(self.port), "CLIENT_ID": UPSTREAM_CLIENT_ID, "CLIENT_SECRET": UPSTREAM_SECRET,
            "REDIRECT_URI": redirect_uri, "RECORD_OUT": self.record_path,
            "USER_ID": OIDC_USER["sub"], "USER_EMAIL": OIDC_USER["email"], "USER_NAME": OIDC_USER["name"],
        }, shared=False)
        c.logs.append(self.proc.log_path)
        try:
            waited = R.wait_ready(self.proc, f"{self.issuer}/.well-known/openid-configuration")
        except R.Failure:
            self.proc.stop()
            raise
        c.note(f"{name}: {self.issuer} ready in {waited:.2f}s, redirect_uri {redirect_uri}")
        meta = json.loads(R.http("GET", f"{self.issuer}/.well-known/openid-configuration").body)
        c.eq(meta.get("issuer"), self.issuer, f"{name}: discovery issuer")
        c.true("registration_endpoint" not in meta, f"{name}: no dynamic registration upstream (metadata {sorted(meta)})")

    def records(self) -> list[dict]:
        try:
            with open(self.record_path) as f:
                return [json.loads(line) for line in f if line.strip()]
        except OSError:
            return []

    def issued_tokens(self) -> list[tuple[str, str]]:
        out = []
        for r in self.records():
            if r.get("kind") == "token_response":
                body = r.get("body") or {}
                out += [(k, body[k]) for k in ("access_token", "refresh_token", "id_token") if body.get(k)]
        return out

    def stop(self) -> None:
        self.proc.stop()


class GithubStandIn:
    """GitHub's OAuth web flow (/login/oauth/authorize, /login/oauth/access_token) and REST API
    (/api/v3/user, the GitHub Enterprise Server layout) as far as the proxy uses them:
    authorize checks the app's registered callback and PKCE S256; the token endpoint answers
    HTTP 200 even for errors and form-encoded unless asked for JSON; /user wants a User-Agent
    and a token it issued."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.callback: str | None = None  # registered once the proxy printed it
        self.authorize: list[dict] = []
        self.token_requests: list[dict] = []
        self.user_calls: list[dict] = []
        self.codes: dict[str, tuple[str, str]] = {}
        self.access_tokens: list[str] = []
        self.issued: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def reply(self, status: int, body: bytes, ctype: str, location: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                u = urllib.parse.urlsplit(self.path)
                if u.path == "/login/oauth/authorize":
                    stand_in._authorize(self, dict(urllib.parse.parse_qsl(u.query)))
                elif u.path == "/api/v3/user":
                    stand_in._user(self)
                else:
                    self.reply(404, b'{"message":"Not Found"}', "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if urllib.parse.urlsplit(self.path).path == "/login/oauth/access_token":
                    stand_in._token(self, form)
                else:
                    self.reply(404, b'{"message":"Not Found"}', "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="github-stand-in", daemon=True)
        self.thread.start()

    def args(self) -> list[str]:
        return ["--provider", "github", "--client-id", UPSTREAM_CLIENT_ID, "--client-secret", UPSTREAM_SECRET,
                "--github-url", self.origin, "--github-api-url", f"{self.origin}/api/v3"]

    def _authorize(self, h: Any, q: dict) -> None:
        with self.lock:
            self.authorize.append(q)
            if q.get("client_id") != UPSTREAM_CLIENT_ID:
                return h.reply(404, b"no such OAuth app", "text/plain")
            if q.get("redirect_uri") != self.callback:
                return h.reply(400, b"The redirect_uri is not associated with this application.", "text/plain")
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                return h.reply(400, b"PKCE S256 expected", "text/plain")
            code = "ghcode_" + secrets.token_urlsafe(15)
            self.codes[code] = (q["code_challenge"], q["redirect_uri"])
        sep = "&" if "?" in q["redirect_uri"] else "?"
        h.reply(302, b"", "text/html", q["redirect_uri"] + sep + urllib.parse.urlencode({"code": code, "state": q.get("state", "")}))

    def _token(self, h: Any, form: dict) -> None:
        with self.lock:
            self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"} | {"client_secret_ok": form.get("client_secret") == UPSTREAM_SECRET})
            if form.get("client_id") != UPSTREAM_CLIENT_ID or form.get("client_secret") != UPSTREAM_SECRET:
                answer = {"error": "incorrect_client_credentials"}
            else:
                pending = self.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                s256 = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if pending is None or pending != (s256, form.get("redirect_uri")):
                    answer = {"error": "bad_verification_code"}
                else:
                    access, refresh = "gho_" + secrets.token_urlsafe(27), "ghr_" + secrets.token_urlsafe(54)
                    self.access_tokens.append(access)
                    self.issued += [("access_token", access), ("refresh_token", refresh)]
                    answer = {"access_token": access, "expires_in": "28800", "refresh_token": refresh,
                              "refresh_token_expires_in": "15897600", "scope": "read:user,user:email", "token_type": "bearer"}
        if "json" in (h.headers.get("Accept") or ""):
            h.reply(200, json.dumps(answer).encode(), "application/json; charset=utf-8")
        else:
            h.reply(200, urllib.parse.urlencode(answer).encode(), "application/x-www-form-urlencoded; charset=utf-8")

    def _user(self, h: Any) -> None:
        auth, agent = h.headers.get("Authorization") or "", h.headers.get("User-Agent") or ""
        with self.lock:
            self.user_calls.append({"authorization": auth, "user_agent": agent})
            known = auth.split(" ", 1)[-1] in self.access_tokens and auth.split(" ", 1)[0] in ("Bearer", "token")
        if not agent:
            return h.reply(403, b'{"message":"Request forbidden by administrative rules. Please make sure your request has a User-Agent header"}', "application/json")
        if not known:
            return h.reply(401, b'{"message":"Bad credentials"}', "application/json")
        h.reply(200, json.dumps(GH_USER).encode(), "application/json; charset=utf-8")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- load balancer


class RoundRobin:
    """A reverse proxy on 127.0.0.1 that sends each request to the next backend in turn (a
    backend refusing connections is skipped), streams the answer back and closes the
    connection (HTTP/1.0), so that every request is a new choice. Records (backend, method,
    path) per request."""

    HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}

    def __init__(self) -> None:
        self.backends: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.turn = 0
        self.log: list[dict] = []
        lb = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes | None:
                if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in RoundRobin.HOP}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                for _ in range(len(lb.backends)):
                    with lb.lock:
                        index = lb.turn % len(lb.backends)
                        lb.turn += 1
                    host, port = lb.backends[index]
                    conn = http.client.HTTPConnection(host, port, timeout=60)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                    except ConnectionRefusedError:
                        conn.close()
                        with lb.lock:
                            lb.log.append({"backend": index, "method": self.command, "path": self.path, "refused": True})
                        continue
                    with lb.lock:
                        lb.log.append({"backend": index, "method": self.command, "path": self.path, "status": resp.status})
                    try:
                        self.send_response_only(resp.status, resp.reason)
                        for k, v in resp.getheaders():
                            if k.lower() not in RoundRobin.HOP:
                                self.send_header(k, v)
                        self.send_header("Connection", "close")
                        self.end_headers()
                        while True:
                            chunk = resp.read1(65536)
                            if not chunk:
                                break
                            self.wfile.write(chunk)
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    finally:
                        conn.close()
                    return
                self.send_error(502, "no backend answered")

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="round-robin", daemon=True)
        self.thread.start()

    def entries(self, since: int = 0) -> list[dict]:
        with self.lock:
            return list(self.log[since:])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- Redis


@contextlib.contextmanager
def redis_server(env: R.Env, c: R.Checks, name: str) -> Iterator[str]:
    """A private redis-server (Debian's, through scripts/redis-server) on a free port, no
    persistence; yields its URL and stops it."""
    script = os.path.join(R.ROOT, "scripts", "redis-server")
    if not os.access(script, os.X_OK):
        raise R.Failure(f"{script} is missing or not executable")
    got = subprocess.run([script], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    binary = got.stdout.strip().splitlines()[-1] if got.stdout.strip() else ""
    if got.returncode != 0 or not os.access(binary, os.X_OK):
        raise R.Failure(f"scripts/redis-server failed ({got.returncode}): {got.stderr.strip()[-1500:]}")
    with scratch("redis") as tmp:
        port = R.free_port()
        proc = env.start(name, [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", tmp, "--daemonize", "no"], {}, shared=False)
        c.logs.append(proc.log_path)
        try:
            t0 = time.monotonic()
            while True:
                if not proc.alive():
                    raise R.Failure(f"{name} exited {proc.popen.returncode}:\n{R.indent(proc.log_text()[-2000:])}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(64).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if time.monotonic() - t0 > R.READY_DEADLINE:
                    raise R.Failure(f"{name} did not answer PING within {R.READY_DEADLINE:.0f}s")
                time.sleep(0.05)  # poll interval, bounded by the deadline above
            c.note(f"{name}: {binary} on 127.0.0.1:{port} ready in {time.monotonic() - t0:.2f}s")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.stop()


@contextlib.contextmanager
def postgres_server(env: R.Env, c: R.Checks, name: str) -> Iterator[str]:
    """A private PostgreSQL server (Debian's, through scripts/postgres-server: a fresh data
    directory, a free loopback port); yields its URL and stops it."""
    script = os.path.join(R.ROOT, "scripts", "postgres-server")
    if not os.access(script, os.X_OK):
        raise R.Failure(f"{script} is missing or not executable")
    t0 = time.monotonic()
    got = subprocess.run([script, "start"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    url = got.stdout.strip().splitlines()[-1] if got.stdout.strip() else ""
    if got.returncode != 0 or not url.startswith("postgres://"):
        raise R.Failure(f"scripts/postgres-server start failed ({got.returncode}): {got.stderr.strip()[-1500:]}")
    c.note(f"{name}: PostgreSQL at {url} ready in {time.monotonic() - t0:.2f}s")
    try:
        yield url
    finally:
        subprocess.run([script, "stop", url], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- a browser by hand


class Browser:
    """Follows redirects by hand with a cookie jar (by name: every server here is 127.0.0.1),
    approving our consent page, and keeps a transcript of what it received."""

    def __init__(self) -> None:
        self.jar: dict[str, str] = {}
        self.transcript: list[str] = []
        self.visited: list[str] = []

    def send(self, method: str, url: str, form: dict[str, str] | list[tuple[str, str]] | None = None, cookies: bool = True,
             headers: dict[str, str] | None = None, body: bytes | None = None) -> R.Resp:
        h = dict(headers or {})
        if cookies and self.jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if form is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode(form).encode()
        r = R.http(method, url, h, body)
        for sc in r.header_all("Set-Cookie"):
            k, _, v = sc.split(";", 1)[0].partition("=")
            self.jar[k.strip()] = v
        self.visited.append(f"{method} {url} -> {r.status}")
        self.transcript.append(f"{method} {url}\nHTTP {r.status}\n{r.headers}\n{r.body.decode('utf-8', 'replace')}")
        return r

    def follow(self, url: str, redirect_uri: str, on_page: Callable[[R.Resp], None] | None = None) -> urllib.parse.SplitResult:
        """From `url` to the client's redirect URI; our consent page is approved on the way."""
        r = self.send("GET", url)
        for _ in range(20):
            loc = r.headers.get("Location")
            if loc:
                nxt = urllib.parse.urljoin(url, loc)
                if nxt.startswith(redirect_uri):
                    return urllib.parse.urlsplit(nxt)
                url = nxt
                r = self.send("GET", url)
                continue
            html = r.body.decode("utf-8", "replace")
            if r.status != 200 or "<form" not in html:
                raise R.Failure(f"stuck at {url}: {r.describe()}")
            if on_page:
                on_page(r)
            action = re.search(r'<form method="post" action="([^"]+)"', html)
            fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
            url = urllib.parse.urljoin(url, action.group(1) if action else url)
            r = self.send("POST", url, fields + [("decision", "approve")])
        raise R.Failure(f"too many redirects: {self.visited}")


def pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def register(base: str, name: str, redirect: str, browser: Browser | None = None) -> str:
    body = json.dumps({"client_name": name, "redirect_uris": [redirect], "token_endpoint_auth_method": "none",
                       "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}).encode()
    headers = {"Content-Type": "application/json"}
    r = browser.send("POST", f"{base}/register", headers=headers, body=body) if browser else R.http("POST", f"{base}/register", headers, body)
    if r.status != 201:
        raise R.Failure(f"registration at {base}: {r.describe()}")
    return json.loads(r.body)["client_id"]


def authorize_url(base: str, client_id: str, redirect: str, challenge: str, resource: str, state: str = "client-state") -> str:
    return f"{base}/authorize?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect, "state": state, "scope": "mcp:read mcp:write",
        "code_challenge": challenge, "code_challenge_method": "S256", "resource": resource})


def form_post(url: str, form: dict[str, str]) -> R.Resp:
    return R.http("POST", url, {"Content-Type": "application/x-www-form-urlencoded"}, urllib.parse.urlencode(form).encode())


def tool_call(mcp_url: str, token: str, name: str = "whoami") -> R.Resp:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}}}
    return R.http("POST", mcp_url, {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                                    "MCP-Protocol-Version": R.PROTOCOL, "Authorization": f"Bearer {token}"}, json.dumps(body).encode())


def whoami_of(r: R.Resp) -> dict:
    msg = r.json()
    text = "".join(x.get("text", "") for x in ((msg.get("result") or {}).get("content") or []))
    return json.loads(text) if text else {}


# --------------------------------------------------------------------------- shared assertions


def expand_jwts(text: str) -> str:
    """text plus the decoded header and payload of every JWT in it."""
    extra = []
    for m in JWT.finditer(text):
        for part in m.group(0).split(".")[:2]:
            try:
                extra.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode("utf-8", "replace"))
            except ValueError:
                pass
    return text + "\n" + "\n".join(extra)


def assert_no_upstream_tokens(c: R.Checks, what: str, haystack: str, issued: list[tuple[str, str]], must_contain: list[str]) -> None:
    """None of the upstream tokens is in haystack (JWTs in it decoded too); the haystack does
    hold what it must (our own tokens), so that the search is meaningful."""
    kinds = sorted({k for k, _ in issued})
    c.true(bool(issued), f"{what}: the upstream issued tokens ({kinds})")
    text = expand_jwts(haystack)
    for needle in must_contain:
        c.true(bool(needle) and needle in text, f"{what}: the capture holds the client's own token {needle[:12]}… (capture incomplete?)")
    leaked = [k for k, v in issued if v in text]
    c.eq(leaked, [], f"{what}: upstream tokens found in what the client received or stored")
    c.note(f"{what}: searched {len(text)} characters for {len(issued)} upstream tokens ({', '.join(kinds)}): none found")


def _set_cookie_names(trace: list, method: str, path: str) -> list[str]:
    """Names of the cookies set by the first `method path` hop of a peer's trace (the TS peer
    records {name, attributes}, the Python one the raw Set-Cookie values)."""
    hop = next((h for h in trace if h.get("method") == method and h.get("path") == path), None)
    raw = (hop or {}).get("set_cookies") or []
    if isinstance(raw, str):
        raw = [raw]
    return [x["name"] if isinstance(x, dict) else str(x).split("=", 1)[0].strip() for x in raw]


def assert_proxy_client(proxy: ProxyServer, c: R.Checks, res: dict, *, client_name: str, user_id: str, email: str, name: str,
                        upstream_path: str, upstream_name: str, username: str | None = None) -> None:
    """A TS / Python peer's run through the proxy: consent page, upstream leg, callback, our
    token, whoami = the upstream user, refresh."""
    authz = res.get("authorize") or {}
    c.eq(authz.get("resource"), proxy.mcp_url, "authorize request resource (RFC 8707)")
    c.eq(authz.get("code_challenge_method"), "S256", "authorize request PKCE method")
    first = (res.get("authorizations") or [{}])[0]
    trace = first.get("trace") or []
    hops = [(h.get("method"), h.get("path"), h.get("status")) for h in trace]
    pages = [h for h in trace if h.get("page")]
    # Two pages the first time a user signs in to a client: our consent page before the
    # provider (this browser never allowed the client), and after the callback (this user
    # never allowed it: consent is recorded per user and client on the server, F2).
    if c.eq(len(pages), 2, f"two pages on the way (our consent page before the provider and after the callback): hops {hops}"):
        page = pages[0]["page"]
        c.eq((pages[0].get("path"), pages[0].get("status")), ("/authorize", 200), "consent page before the provider")
        c.true(client_name in (page.get("heading") or ""), f"consent page names the client {client_name!r}: {page.get('heading')!r}")
        names = {i.get("name") for i in page.get("inputs") or []}
        c.eq(names, {"request_id", "csrf"}, "consent form fields (no password in proxy mode)")
        c.true(any(b.get("value") == "approve" and f"sign in with {upstream_name}" in (b.get("text") or "") for b in page.get("buttons") or []),
               f"'Allow and sign in with {upstream_name}' button: {page.get('buttons')}")
        c.true(BASE_SCOPES <= set(page.get("scopes") or []), f"consent page lists the scopes: {page.get('scopes')}")
        after = pages[1]["page"]
        c.eq((pages[1].get("path"), pages[1].get("status")), ("/oauth/callback", 200), "consent page after the callback")
        c.true(client_name in (after.get("heading") or ""), f"the second consent page names the client {client_name!r}: {after.get('heading')!r}")
        c.eq({i.get("name") for i in after.get("inputs") or []}, {"request_id", "csrf"}, "second consent form fields")
        c.true(any(b.get("value") == "approve" and (b.get("text") or "") == "Allow" for b in after.get("buttons") or []),
               f"'Allow' button after the sign-in: {after.get('buttons')}")
    paths = [h[1] for h in hops]
    posts = [h for h in hops if h[0] == "POST"]
    c.true(len(posts) == 2 and all(p[1] == "/authorize" and p[2] == 302 for p in posts), f"both consent POSTs answered 302: {hops}")
    # The approval bound the upstream state to this browser: a cookie set on the first
    # consent POST, sent back on the way to /oauth/callback.
    binding = [n for n in _set_cookie_names(trace, "POST", "/authorize") if n.startswith("mcp_oauth_login_")]
    c.true(bool(binding), f"the consent POST set the cookie binding the sign-in to this browser: {binding}")
    sent = [h.get("sent_cookies") or [] for h in trace if h.get("path") == "/oauth/callback"]
    c.true(bool(sent) and bool(binding) and binding[0] in sent[0], f"the browser sent it to /oauth/callback: {sent}")
    c.true(upstream_path in paths, f"the browser went to the upstream {upstream_path}: {paths}")
    c.true("/oauth/callback" in paths, f"the upstream sent the browser to /oauth/callback: {paths}")
    cb = first.get("callback") or {}
    c.eq(cb.get("iss"), proxy.issuer, "callback iss (RFC 9207) is the proxy")
    if authz.get("state") is not None:
        c.eq(cb.get("state"), authz.get("state"), "callback state == the client's state")
    c.true(bool(res.get("client_id")), f"client registered dynamically with the proxy ({res.get('client_id')!r})")
    R._assert_tools_and_echo(c, res)
    claims, who = res.get("token_claims") or {}, res.get("whoami") or {}
    c.eq((res.get("token_header") or {}).get("typ"), "at+jwt", "access token typ")
    c.eq(claims.get("iss"), proxy.issuer, "token iss")
    c.eq(claims.get("aud"), proxy.mcp_url, "token aud")
    c.eq(claims.get("sub"), user_id, "token sub = the upstream user")
    user = who.get("user") or {}
    c.eq(user.get("id"), user_id, "whoami user.id = the upstream user")
    c.eq(user.get("email"), email, "whoami user.email")
    c.eq(user.get("name"), name, "whoami user.name")
    if username is not None:
        c.eq(user.get("username"), username, "whoami user.username (GitHub login)")
    c.eq(who.get("client_id"), res.get("client_id"), "whoami client_id == the registered client")
    c.eq(who.get("issuer"), proxy.issuer, "whoami issuer")
    ref = res.get("refresh") or {}
    if c.true(bool(ref), "the client ran the refresh step"):
        grants = [t for t in ref.get("requests") or [] if t.get("grant_type") == "refresh_token"]
        c.eq(len(grants), 1, f"refresh_token requests ({ref.get('requests')})")
        c.true(ref.get("access_token_changed") is True, "a new access token came with the refresh")
        c.true(bool(ref.get("new_refresh_token")) and ref.get("new_refresh_token") != ref.get("old_refresh_token"), "the refresh token rotated")
        c.true(ref.get("redirected") is False, "the refresh needed no new sign-in")
        c.eq((ref.get("token_claims") or {}).get("sub"), user_id, "refreshed token sub")
        c.eq(((ref.get("whoami") or {}).get("user") or {}).get("id"), user_id, "whoami with the refreshed token")


def client_capture(res: dict, dump_path: str) -> tuple[str, list[str]]:
    """Everything a peer received and stored (its dump, its RESULT and its log), and its own
    tokens (which must be in there)."""
    try:
        with open(dump_path) as f:
            dump_text = f.read()
        dump = json.loads(dump_text)
    except (OSError, ValueError) as e:
        raise R.Failure(f"the client wrote no dump at {dump_path}: {e}")
    try:
        with open(res.get("_log") or "") as f:
            log_text = f.read()
    except OSError:
        log_text = ""
    stored = (dump.get("stored") or {}).get("tokens") or {}
    own = [stored.get("access_token") or "", stored.get("refresh_token") or ""]
    return dump_text + "\n" + json.dumps(res) + "\n" + log_text, own


def run_sdk_peer(env: R.Env, c: R.Checks, kind: str, name: str, proxy: ProxyServer) -> tuple[dict, str]:
    dump = os.path.join(env.log_dir, f"client-{name}.dump.json")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dump)  # never search an earlier run's dump
    flags = {"MODE": "authcode", "AS_ISSUER": proxy.issuer, "SCOPE": "mcp:read mcp:write",
             "REDIRECT_URI": f"http://127.0.0.1:{R.free_port()}/callback", "LOGIN_USER": "", "LOGIN_PASSWORD": "",
             "REFRESH": "1", "DUMP_RECEIVED": dump}
    if kind == "ts":
        argv = [env.args.node, os.path.join(R.PEERS, "ts-sdk-client.mjs"), proxy.mcp_url]
    else:
        argv = [env.args.python, os.path.join(R.PEERS, "py_sdk_client.py"), proxy.mcp_url, "auto"]
    res = env.run_client(name, argv, flags)
    c.logs.append(res.get("_log") or "")
    c.note(f"{name}: client ran in {res['_seconds']}s")
    return res, dump


CLIENT_NAMES = {"ts": "ts-sdk-interop", "py": "py-sdk-interop"}


# --------------------------------------------------------------------------- scenarios


def _oidc_scenario(kind: str) -> Callable[[R.Env, R.Checks], None]:
    def run(env: R.Env, c: R.Checks) -> None:
        need_binary(env)
        with scratch("proxy-oidc") as tmp:
            port = R.free_port()
            upstream = OidcUpstream(env, c, f"oidc-upstream-{kind}", f"http://127.0.0.1:{port}/oauth/callback")
            proxy = ProxyServer(env, f"proxy-oidc-{kind}", os.path.join(tmp, "data"), [
                "--provider", "oidc", "--issuer", upstream.issuer, "--client-id", UPSTREAM_CLIENT_ID,
                "--client-secret", UPSTREAM_SECRET, "--store", "memory"], port=port)
            c.logs.append(os.path.join(env.log_dir, f"{proxy.name}.log"))
            try:
                proxy.start()
                # (Should the chosen port have been taken, the retry's callback differs: caught here.)
                c.eq(proxy.callback_url, f"http://127.0.0.1:{port}/oauth/callback", "JSON line: callback_url = the upstream's registered redirect URI")
                res, dump = run_sdk_peer(env, c, kind, f"proxy-oidc-{kind}", proxy)
                assert_proxy_client(proxy, c, res, client_name=CLIENT_NAMES[kind], user_id=OIDC_USER["sub"], email=OIDC_USER["email"],
                                    name=OIDC_USER["name"], upstream_path="/auth", upstream_name="127.0.0.1")
                rec = upstream.records()
                authz = [r["params"] for r in rec if r.get("kind") == "authorize"]
                if c.eq(len(authz), 1, "one authorization at the upstream (consent remembered, refresh local)"):
                    a = authz[0]
                    c.eq(a.get("client_id"), UPSTREAM_CLIENT_ID, "upstream authorize: our client id")
                    c.eq(a.get("redirect_uri"), proxy.callback_url, "upstream authorize: our callback")
                    c.eq(a.get("code_challenge_method"), "S256", "upstream authorize: PKCE S256")
                    c.eq(a.get("scope"), "openid email profile", "upstream authorize: scopes")
                    c.true(a.get("state") not in (None, "", (res.get("authorize") or {}).get("state")), "upstream authorize: a state of our own")
                treq = [r for r in rec if r.get("kind") == "token_request"]
                if c.eq(len(treq), 1, f"one token request upstream: {treq}"):
                    c.eq((treq[0].get("status"), treq[0].get("grant_type"), treq[0].get("client_id"), treq[0].get("code_verifier")),
                         (200, "authorization_code", UPSTREAM_CLIENT_ID, True), "upstream token request: code + verifier, our client")
                issued = upstream.issued_tokens()
                c.eq(sorted(k for k, _ in issued), ["access_token", "id_token", "refresh_token"], "the upstream issued access, refresh and id tokens")
                haystack, own = client_capture(res, dump)
                assert_no_upstream_tokens(c, "client capture", haystack, issued, own)
                c.true("upstream sign-in completed" in proxy.log(), "proxy logged 'upstream sign-in completed'")
            finally:
                proxy.stop(c)
                upstream.stop()

    run.__doc__ = (f"{'TS SDK v1' if kind == 'ts' else 'Python SDK'} through mcp-oauth proxy --provider oidc (oidc-provider, Google-like): "
                   "consent page, upstream PKCE leg, our tokens; whoami = the upstream user; refresh; no upstream token reaches the client.")
    return run


def _github_scenario(kind: str) -> Callable[[R.Env, R.Checks], None]:
    def run(env: R.Env, c: R.Checks) -> None:
        need_binary(env)
        gh = GithubStandIn()
        with scratch("proxy-github") as tmp:
            proxy = ProxyServer(env, f"proxy-github-{kind}", os.path.join(tmp, "data"), [*gh.args(), "--store", "memory"])
            c.logs.append(os.path.join(env.log_dir, f"{proxy.name}.log"))
            try:
                proxy.start()
                gh.callback = proxy.callback_url  # registered at "GitHub" for the OAuth app
                res, dump = run_sdk_peer(env, c, kind, f"proxy-github-{kind}", proxy)
                assert_proxy_client(proxy, c, res, client_name=CLIENT_NAMES[kind], user_id=str(GH_USER["id"]), email=GH_USER["email"],
                                    name=GH_USER["name"], username=GH_USER["login"], upstream_path="/login/oauth/authorize", upstream_name="GitHub")
                with gh.lock:
                    authz, treq, calls, issued = list(gh.authorize), list(gh.token_requests), list(gh.user_calls), list(gh.issued)
                if c.eq(len(authz), 1, "one authorization at GitHub"):
                    c.eq((authz[0].get("client_id"), authz[0].get("redirect_uri"), authz[0].get("scope"), authz[0].get("code_challenge_method")),
                         (UPSTREAM_CLIENT_ID, proxy.callback_url, "read:user user:email", "S256"), "GitHub authorize: client, callback, scopes, PKCE")
                if c.eq(len(treq), 1, "one token request at GitHub"):
                    c.true(treq[0].get("client_secret_ok") is True and bool(treq[0].get("code_verifier")), f"GitHub token request: secret + verifier ({treq[0]})")
                if c.eq(len(calls), 1, "one /user call"):
                    c.true(calls[0]["authorization"].startswith("Bearer gho_"), "the /user call carries the GitHub token")
                    c.true(calls[0]["user_agent"].startswith("mcp-oauth/"), f"the /user call has a User-Agent: {calls[0]['user_agent']!r}")
                haystack, own = client_capture(res, dump)
                assert_no_upstream_tokens(c, "client capture", haystack, issued, own)
            finally:
                proxy.stop(c)
                gh.stop()

    run.__doc__ = (f"{'TS SDK v1' if kind == 'ts' else 'Python SDK'} through mcp-oauth proxy --provider github (stdlib stand-in, /api/v3/user): "
                   "whoami = the GitHub user (id, login); refresh; no GitHub token reaches the client.")
    return run


def _instance_of(proxies: list[ProxyServer], needle: str) -> list[str]:
    return [p.name for p in proxies if needle in p.log()]


def scenario_q_redis_lb(env: R.Env, c: R.Checks) -> None:
    """Two mcp-oauth proxy instances on one Redis behind a round-robin balancer: a TS SDK client's flow spans both; a flow started on one finishes on the other after it stopped."""
    need_binary(env)
    with redis_server(env, c, "redis-q") as redis_url:
        _two_instances_lb(env, c, "q", f"redis {redis_url}",
                          ["--store", "redis", "--redis-url", redis_url, "--redis-prefix", f"interop-{secrets.token_hex(4)}:"])


def scenario_q2_postgres_lb(env: R.Env, c: R.Checks) -> None:
    """Two mcp-oauth proxy instances on one PostgreSQL database behind a round-robin balancer: the same flows as q (a TS SDK client's flow spans both; a flow started on one finishes on the other after it stopped)."""
    need_binary(env)
    with postgres_server(env, c, "postgres-q2") as postgres_url:
        _two_instances_lb(env, c, "q2", f"postgres {postgres_url}", ["--store", postgres_url])


def _two_instances_lb(env: R.Env, c: R.Checks, tag: str, store_note: str, store_args: list[str]) -> None:
    """Scenario q on the store `store_args` names: instances proxy-<tag>-a and proxy-<tag>-b."""
    lb = RoundRobin()
    try:
        with scratch(f"proxy-{tag}") as tmp:
            upstream = OidcUpstream(env, c, f"oidc-upstream-{tag}", f"{lb.url}/oauth/callback")
            key = base64.b64encode(os.urandom(32)).decode()
            common = ["--provider", "oidc", "--issuer", upstream.issuer, "--client-id", UPSTREAM_CLIENT_ID, "--client-secret", UPSTREAM_SECRET,
                      *store_args,
                      "--encryption-key", key, "--public-url", lb.url]
            data = os.path.join(tmp, "data")  # shared: the signing keys
            a = ProxyServer(env, f"proxy-{tag}-a", data, common, port=R.free_port())
            b = ProxyServer(env, f"proxy-{tag}-b", data, common, port=R.free_port())
            c.logs += [os.path.join(env.log_dir, f"{p.name}.log") for p in (a, b)]
            try:
                a.start()  # first: it creates the signing key the other one reads
                b.start()
                lb.backends = [("127.0.0.1", a.port), ("127.0.0.1", b.port)]
                for p in (a, b):
                    c.eq((p.issuer, p.mcp_url, p.callback_url), (lb.url, f"{lb.url}/mcp", f"{lb.url}/oauth/callback"), f"{p.name}: JSON line names the public URL")
                c.note(f"balancer {lb.url} -> a :{a.port}, b :{b.port}; {store_note}")

                # 1. A real client through the balancer: consecutive requests alternate.
                res, dump = run_sdk_peer(env, c, "ts", f"proxy-{tag}-ts", a)
                assert_proxy_client(a, c, res, client_name=CLIENT_NAMES["ts"], user_id=OIDC_USER["sub"], email=OIDC_USER["email"],
                                    name=OIDC_USER["name"], upstream_path="/auth", upstream_name="127.0.0.1")
                haystack, own = client_capture(res, dump)
                assert_no_upstream_tokens(c, "TS client via the balancer", haystack, upstream.issued_tokens(), own)
                log = lb.entries()
                served = [e for e in log if not e.get("refused")]
                c.eq({e["backend"] for e in served}, {0, 1}, "the balancer used both instances")
                path = lambda e: urllib.parse.urlsplit(e["path"]).path  # noqa: E731
                reg = [e for e in served if e["method"] == "POST" and path(e) == "/register"]
                flow = [e for e in served if (e["method"], path(e)) in {("GET", "/authorize"), ("POST", "/authorize"), ("GET", "/oauth/callback"), ("POST", "/token")}]
                if c.eq(len(reg), 1, "one registration through the balancer"):
                    other = [e for e in flow if e["backend"] != reg[0]["backend"]]
                    c.true(bool(other), f"the client registered on instance {'ab'[reg[0]['backend']]} continued on the other: {[(e['method'], path(e), 'ab'[e['backend']]) for e in flow]}")
                    c.note("TS flow: " + ", ".join(f"{e['method']} {path(e)}->{'ab'[e['backend']]}" for e in [*reg, *flow]))
                cid = res.get("client_id") or "?"
                c.eq(_instance_of([a, b], f"client registered client_id={cid}"), [[a.name, b.name][reg[0]["backend"]]] if reg else [],
                     "the registering instance logged 'client registered' (and only it)")
                c.eq(len(_instance_of([a, b], f"upstream sign-in completed client_id={cid}")), 1, "one instance logged the upstream sign-in of this client")

                # 2. Mid-flow stop: registered and consent page on a, then a stops; the rest on b.
                verifier, challenge = pkce()
                redirect = f"http://127.0.0.1:{R.free_port()}/callback"
                browser = Browser()
                cid2 = register(a.origin, "Mid-flow client", redirect, browser)
                page = browser.send("GET", authorize_url(a.origin, cid2, redirect, challenge, a.mcp_url, "mid-flow"))
                c.eq(page.status, 200, "consent page from instance a")
                fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.body.decode("utf-8", "replace"))
                a.stop(c)
                mark = len(lb.entries())
                r = browser.send("POST", f"{lb.url}/authorize", fields + [("decision", "approve")])
                if not c.eq(r.status, 302, f"consent POST through the balancer after a stopped ({r.describe() if r.status != 302 else ''})"):
                    return
                cb = browser.follow(urllib.parse.urljoin(lb.url, r.headers["Location"]), redirect)
                q = dict(urllib.parse.parse_qsl(cb.query))
                c.eq((q.get("state"), q.get("iss"), "code" in q), ("mid-flow", lb.url, True), f"callback on the client: {sorted(q)}")
                tok = form_post(f"{lb.url}/token", {"grant_type": "authorization_code", "code": q.get("code", ""), "client_id": cid2,
                                                    "redirect_uri": redirect, "code_verifier": verifier, "resource": a.mcp_url})
                if c.eq(tok.status, 200, f"code exchange on b ({tok.describe() if tok.status != 200 else ''})"):
                    tokens = json.loads(tok.body)
                    who = tool_call(a.mcp_url, tokens["access_token"])
                    c.eq(who.status, 200, "whoami through the balancer")
                    c.eq((whoami_of(who).get("user") or {}).get("id"), OIDC_USER["sub"], "whoami user after the mid-flow stop")
                    ref = form_post(f"{lb.url}/token", {"grant_type": "refresh_token", "refresh_token": tokens.get("refresh_token", ""),
                                                        "client_id": cid2, "resource": a.mcp_url})
                    c.eq(ref.status, 200, "refresh on b")
                    own = [tokens.get("access_token", ""), json.loads(ref.body).get("access_token", "") if ref.status == 200 else ""]
                    assert_no_upstream_tokens(c, "mid-flow browser + client", "\n".join(browser.transcript) + tok.body.decode() + ref.body.decode(),
                                              upstream.issued_tokens(), own)
                after = lb.entries(mark)
                c.eq({e["backend"] for e in after if not e.get("refused")}, {1}, "after a stopped, b served everything")
                c.true(any(e.get("refused") and e["backend"] == 0 for e in after), "the balancer found a down")
                c.eq(_instance_of([a, b], f"client registered client_id={cid2}"), [a.name], "the mid-flow client registered on a")
                c.eq(_instance_of([a, b], f"upstream sign-in completed client_id={cid2}"), [b.name], "its upstream sign-in completed on b")
            finally:
                b.stop(c)
                a.stop(c)
                upstream.stop()
    finally:
        lb.stop()


def scenario_r_negatives(env: R.Env, c: R.Checks) -> None:
    """Proxy negatives: unknown client_id and unregistered redirect_uri -> 400 page (no redirect); consent POST without the CSRF cookie -> 403; replayed upstream callback -> 400."""
    need_binary(env)
    gh = GithubStandIn()
    with scratch("proxy-neg") as tmp:
        proxy = ProxyServer(env, "proxy-r", os.path.join(tmp, "data"), [*gh.args(), "--store", "memory"])
        c.logs.append(os.path.join(env.log_dir, f"{proxy.name}.log"))
        try:
            proxy.start()
            gh.callback = proxy.callback_url
            iss, mcp = proxy.issuer, proxy.mcp_url
            verifier, challenge = pkce()
            redirect = f"http://127.0.0.1:{R.free_port()}/callback"
            cid = register(iss, "Negative client", redirect)

            def page_only(what: str, r: R.Resp, status: int, text: str) -> None:
                c.eq(r.status, status, f"{what}: status" + ("" if r.status == status else f" ({r.describe()})"))
                c.eq(r.headers.get("Location"), None, f"{what}: never a redirect")
                c.true((r.headers.get("Content-Type") or "").startswith("text/html"), f"{what}: an HTML page")
                c.true(text in r.body.decode("utf-8", "replace"), f"{what}: the page says {text!r}")

            page_only("unknown client_id", R.http("GET", authorize_url(iss, "no-such-client", redirect, challenge, mcp)), 400, "Unknown client")
            for bad in ("https://attacker.example/callback", redirect.replace("/callback", "/elsewhere")):
                page_only(f"redirect_uri {bad} not registered", R.http("GET", authorize_url(iss, cid, bad, challenge, mcp)), 400,
                          "The redirect_uri is not registered for this client.")

            # The consent form without the CSRF cookie (a cross-site POST), or with another token.
            page = R.http("GET", authorize_url(iss, cid, redirect, challenge, mcp))
            c.eq(page.status, 200, "consent page")
            html = page.body.decode("utf-8", "replace")
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
            cookie = next((sc.split(";")[0] for sc in page.header_all("Set-Cookie") if sc.startswith("mcp_oauth_csrf=")), "")
            c.true(bool(cookie) and "csrf" in fields and "request_id" in fields, f"page: csrf cookie and hidden fields ({sorted(fields)})")
            r = form_post(f"{iss}/authorize", {**fields, "decision": "approve"})
            page_only("consent POST without the CSRF cookie", r, 403, "could not be verified")
            forged = {**fields, "csrf": secrets.token_urlsafe(32)[:43], "decision": "approve"}
            r = R.http("POST", f"{iss}/authorize", {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}, urllib.parse.urlencode(forged).encode())
            page_only("consent POST with the cookie but another CSRF token", r, 403, "could not be verified")
            with gh.lock:
                c.eq(len(gh.authorize), 0, "nothing went upstream for refused consent")

            # A whole sign-in, then the provider's answer replayed at our callback.
            browser = Browser()
            cb = browser.follow(authorize_url(iss, cid, redirect, challenge, mcp, "neg-state"), redirect)
            q = dict(urllib.parse.parse_qsl(cb.query))
            c.eq((q.get("state"), q.get("iss"), "code" in q), ("neg-state", iss, True), "the control flow reached the client")
            callbacks = [v.split(" ")[1] for v in browser.visited if v.startswith(f"GET {proxy.callback_url}?")]
            if c.eq(len(callbacks), 1, f"the browser passed our callback once: {browser.visited}"):
                with gh.lock:
                    exchanges = len(gh.token_requests)
                page_only("replayed upstream callback (state used)", R.http("GET", callbacks[0]), 400, "expired or was already completed")
                page_only("forged upstream state", R.http("GET", f"{proxy.callback_url}?code=x&state=forged"), 400, "expired or was already completed")
                with gh.lock:
                    c.eq(len(gh.token_requests), exchanges, "no second code exchange at GitHub")
            tok = form_post(f"{iss}/token", {"grant_type": "authorization_code", "code": q.get("code", ""), "client_id": cid,
                                             "redirect_uri": redirect, "code_verifier": verifier, "resource": mcp})
            c.eq(tok.status, 200, "the control flow's code still works")
        finally:
            proxy.stop(c)
            gh.stop()


def scenario_o3_oidc_allow_domain(env: R.Env, c: R.Checks) -> None:
    """mcp-oauth proxy --provider oidc --allow-domain: the upstream user (ada@upstream.example) signs in at oidc-provider; outside the allowed domain she comes back to the client with error=access_denied, her state and no code, and nothing is minted; with her domain allowed, the code works and whoami is her."""
    need_binary(env)
    for allowed, refused in (("other.example", True), ("upstream.example", False)):
        with scratch("proxy-allow") as tmp:
            port = R.free_port()
            upstream = OidcUpstream(env, c, f"oidc-upstream-allow-{allowed}", f"http://127.0.0.1:{port}/oauth/callback")
            proxy = ProxyServer(env, f"proxy-allow-{allowed}", os.path.join(tmp, "data"), [
                "--provider", "oidc", "--issuer", upstream.issuer, "--client-id", UPSTREAM_CLIENT_ID,
                "--client-secret", UPSTREAM_SECRET, "--store", "memory", "--allow-domain", allowed], port=port)
            c.logs.append(os.path.join(env.log_dir, f"{proxy.name}.log"))
            try:
                proxy.start()
                iss, mcp = proxy.issuer, proxy.mcp_url
                verifier, challenge = pkce()
                redirect = f"http://127.0.0.1:{R.free_port()}/callback"
                cid = register(iss, "Allow-domain client", redirect)
                cb = Browser().follow(authorize_url(iss, cid, redirect, challenge, mcp, "allow-state"), redirect)
                q = dict(urllib.parse.parse_qsl(cb.query))
                signed_in = [r for r in upstream.records() if r.get("kind") == "token_request"]
                c.eq(len(signed_in), 1, f"--allow-domain {allowed}: she signed in at the upstream once")
                if refused:
                    c.eq((q.get("error"), q.get("state"), "code" in q), ("access_denied", "allow-state", False),
                         f"--allow-domain {allowed}: {OIDC_USER['email']} is refused back at the client")
                    c.true("sign-in refused by the policy" in proxy.log(), "the proxy logged the policy's refusal")
                else:
                    c.eq((q.get("state"), "code" in q), ("allow-state", True), f"--allow-domain {allowed}: a code for her")
                    tok = form_post(f"{iss}/token", {"grant_type": "authorization_code", "code": q.get("code", ""), "client_id": cid,
                                                     "redirect_uri": redirect, "code_verifier": verifier, "resource": mcp})
                    if c.eq(tok.status, 200, "her code gets a token"):
                        who = whoami_of(tool_call(mcp, json.loads(tok.body)["access_token"]))
                        c.eq((who.get("user") or {}).get("email"), OIDC_USER["email"], f"whoami is her: {who}")
            finally:
                proxy.stop(c)
                upstream.stop()


def _standalone(fn: Callable[[R.Env, R.Checks], None]) -> Callable[[R.Env, R.Checks], None]:
    fn.standalone = True  # type: ignore[attr-defined]  # needs no shared servers (scenario a)
    return fn


SCENARIOS: list[tuple[str, Callable[[R.Env, R.Checks], None]]] = [
    (name, _standalone(fn))
    for name, fn in [
        ("o1-proxy-oidc-ts-sdk-v1", _oidc_scenario("ts")),
        ("o2-proxy-oidc-py-sdk", _oidc_scenario("py")),
        ("o3-proxy-oidc-allow-domain", scenario_o3_oidc_allow_domain),
        ("p1-proxy-github-ts-sdk-v1", _github_scenario("ts")),
        ("p2-proxy-github-py-sdk", _github_scenario("py")),
        ("q-proxy-redis-two-instances-round-robin", scenario_q_redis_lb),
        ("q2-proxy-postgres-two-instances-round-robin", scenario_q2_postgres_lb),
        ("r-proxy-negatives", scenario_r_negatives),
    ]
]
