"""Scenario uo1: `mcp-oauth gateway` with `credentials = { kind = "user-oauth", … }` in front of a
stand-in SaaS MCP server protected by its own authorization server, end to end with a real MCP
client and a real browser. Part of runner.py (standard library only).

- peers/saas-upstream.mjs: oidc-provider as the SaaS's authorization server (open dynamic
  registration, PKCE S256, resource indicators, JWT access tokens for the MCP URL only, rotated
  refresh tokens, devInteractions login and consent forms) and an MCP server (TS SDK v1) that
  wants its tokens (401 with `resource_metadata` otherwise), reports the caller in `whoami`,
  and records every Authorization header and token request;
- `mcp-oauth gateway --config …` (embedded authorization server, dev user, store memory) with
  that upstream under `credentials = { kind = "user-oauth", scopes = ["notes:read"] }`:
  everything discovered, the gateway registered there by dynamic registration;
- peers/user-oauth-client.mjs (TS SDK v1 and v2) signing in at the gateway, and
  peers/user-oauth-browser.mjs (headless Chromium) connecting the account and revoking it, paced
  by files the runner writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator

import dev_scenarios as D
import gateway_scenarios as G
import runner as R  # the running runner.py (aliased in sys.modules before this import)

UPSTREAM = "saas"
SAAS_LOGIN = "saas-user-42"
ACTION_REQUIRED = -32042
CLIENT_NAMES = {"v1": "user-oauth-v1-interop", "v2": "user-oauth-v2-interop", "py": "py-sdk-interop"}
SDK_NAMES = {"v1": "TS SDK v1", "v2": "TS SDK v2", "py": "Python SDK"}
DEADLINE = 60.0  # seconds: for a peer to reach its next step (it signs in, drives Chromium)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _catch(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BaseException as e:  # handed to the scenario's thread
        return e


def _wait_file(path: str, threads: list[threading.Thread], what: str) -> dict:
    """Polls until a peer wrote `path` (its JSON); fails when the peers ended or the deadline passed."""
    t0 = time.monotonic()
    while not os.path.exists(path):
        if not all(t.is_alive() for t in threads):
            raise R.Failure(f"a peer ended before {what}")
        if time.monotonic() - t0 > DEADLINE:
            raise R.Failure(f"no {what} within {DEADLINE:.0f}s")
        time.sleep(0.05)  # poll interval, bounded by the deadline above
    t0 = time.monotonic()
    while True:  # the file appears before its content: read until it parses
        with open(path) as f:
            text = f.read()
        try:
            return json.loads(text)
        except ValueError:
            if time.monotonic() - t0 > 5:
                raise R.Failure(f"{path} never held JSON: {text[:300]!r}") from None
            time.sleep(0.01)  # poll interval, bounded by the deadline above


def _touch(path: str) -> None:
    with open(path, "w") as f:
        f.write("go")


def _error_with_link(c: R.Checks, rec: dict, link: str, what: str) -> None:
    err = rec.get("error") or {}
    c.eq(err.get("code"), ACTION_REQUIRED, f"{what}: JSON-RPC error code ({json.dumps(rec)[:600]})")
    c.true(link in (err.get("message") or ""), f"{what}: the message names the connect link {link}: {err.get('message')!r}")
    elicitations = (err.get("data") or {}).get("elicitations") or [{}]
    c.eq((elicitations[0].get("mode"), elicitations[0].get("url")), ("url", link), f"{what}: data.elicitations[0] is the URL-mode link")


class _Instance(G.Gateway):
    """A gateway started with exactly `args` (several instances: a port, a shared store and
    data folder, one public URL), polled at its own port."""

    def __init__(self, env: R.Env, name: str, port: int, args: list[str]):
        self.name, self.port, self.tmp = name, port, tempfile.mkdtemp(prefix="interop-uo-gw-")  # not super(): it adds --port 0
        self.stdout_path = os.path.join(env.log_dir, f"{name}.stdout")
        argv = [env.args.dev_bin, "gateway", "--port", str(port), *args]
        self.proc = env.start(name, argv, {"MCP_OAUTH_LOG": os.environ.get("MCP_OAUTH_LOG", "info,mcp_oauth=debug")},
                              stdout_path=self.stdout_path, shared=False)
        self.info: dict[str, Any] = {}

    @property
    def prm_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/oauth-protected-resource/mcp"


@contextlib.contextmanager
def _instance(env: R.Env, c: R.Checks, name: str, port: int, args: list[str]) -> Iterator[_Instance]:
    gw = _Instance(env, name, port, args)
    c.logs.append(gw.proc.log_path)
    try:
        gw.wait_ready()
        yield gw
    finally:
        gw.proc.stop()
        shutil.rmtree(gw.tmp, ignore_errors=True)
        c.eq(gw.proc.popen.returncode, 0, f"{name}: exit code after SIGTERM (graceful shutdown)")


class _RawSession:
    """An MCP session over plain HTTP at one gateway instance, with the client's gateway token
    (the instances share one public URL, so the `Host` is that URL's)."""

    def __init__(self, port: int, host: str, token: str):
        self.url, self.host, self.token, self.session, self.rid = f"http://127.0.0.1:{port}/mcp", host, token, None, 0

    def post(self, msg: dict) -> tuple[int, dict | None]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "Authorization": f"Bearer {self.token}", "Host": self.host}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
            headers["MCP-Protocol-Version"] = "2025-06-18"
        req = urllib.request.Request(self.url, data=json.dumps(msg).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, ctype, body = r.status, r.headers.get("Content-Type") or "", r.read().decode()
                self.session = r.headers.get("Mcp-Session-Id") or self.session
        except urllib.error.HTTPError as e:
            status, ctype, body = e.code, e.headers.get("Content-Type") or "", e.read().decode()
        if "event-stream" in ctype:
            datas = [ln[5:].strip() for ln in body.splitlines() if ln.startswith("data:")]
            body = next((d for d in reversed(datas) if '"id"' in d), "")
        try:
            return status, json.loads(body) if body.strip() else None
        except ValueError:
            return status, {"unparsed": body[:300]}

    def initialize(self) -> tuple[int, dict | None]:
        got = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "uo-raw", "version": "1"}}})
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return got

    def whoami(self) -> dict:
        self.rid += 1
        status, msg = self.post({"jsonrpc": "2.0", "id": self.rid, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
        result = (msg or {}).get("result") or {}
        text = "".join(x.get("text", "") for x in result.get("content") or [])
        try:
            who = json.loads(text) if text else None
        except ValueError:
            who = None
        return {"status": status, "who": who, "error": (msg or {}).get("error"), "isError": result.get("isError", False)}


def _race(c: R.Checks, port: int, sessions: dict[str, _RawSession]) -> dict[str, list[dict]]:
    """The upstream refuses the tokens it has seen; both instances call at once until a call
    succeeds: one refresh between them, the same new token at both."""
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/control/expire", method="POST"), timeout=10) as r:
        c.note(f"the upstream now refuses its tokens so far as expired: {r.read().decode()}")
    barrier = threading.Barrier(len(sessions))
    out: dict[str, list[dict]] = {}

    def calls(name: str, s: _RawSession) -> None:
        attempts = [s.whoami()]  # each instance learns of the refusal (401) itself
        barrier.wait(timeout=DEADLINE)
        t0 = time.monotonic()
        while attempts[-1].get("who") is None and time.monotonic() - t0 < 20:
            attempts.append(s.whoami())
        out[name] = attempts

    threads = [threading.Thread(target=calls, args=(n, s)) for n, s in sessions.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


STATIC_CLIENT = "mcp-gateway-static"


def _uo_scenario(sdk: str, two: bool = False, static: bool = False) -> Callable[[R.Env, R.Checks], None]:
    def run(env: R.Env, c: R.Checks) -> None:
        tmp = tempfile.mkdtemp(prefix=f"interop-uo-{sdk}-")
        record = os.path.join(tmp, "saas.jsonl")
        c.logs.append(record)
        port = R.free_port()
        saas_mcp, saas_issuer = f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{port}"
        saas_env = {"PORT": str(port), "RECORD_OUT": record, "TOKEN_TTL": "600"}
        credentials = 'kind = "user-oauth", scopes = ["notes:read"]'
        if static:
            # A client registered by hand at the SaaS, for the gateway's callback on a port chosen here.
            gw_port, secret_file, secret = R.free_port(), os.path.join(tmp, "saas-secret"), "static-secret-" + os.urandom(8).hex()
            with open(secret_file, "w") as f:
                f.write(secret)
            saas_env.update(STATIC_CLIENT_ID=STATIC_CLIENT, STATIC_CLIENT_SECRET=secret,
                            STATIC_REDIRECT_URI=f"http://127.0.0.1:{gw_port}/gateway/connect/{UPSTREAM}/callback")
            credentials += f', client_id = "{STATIC_CLIENT}", client_secret = {json.dumps("file:" + secret_file)}'
        saas = env.start(f"uo-{sdk}-saas", [env.args.node, os.path.join(R.PEERS, "saas-upstream.mjs")], saas_env, shared=False)
        c.logs.append(saas.log_path)
        files = {k: os.path.join(tmp, k) for k in ("ready1", "go1", "ready2", "go2", "ready3", "go3", "connected", "revoke")}
        config = os.path.join(tmp, "gateway.toml")
        with open(config, "w") as f:
            f.write(f"""[[upstream]]
name = "{UPSTREAM}"
url = "{saas_mcp}"
credentials = {{ {credentials} }}
""")
        threads: list[threading.Thread] = []
        try:
            G.wait_port(saas, port)
            t_start = time.monotonic()
            with contextlib.ExitStack() as stack:
                race: dict[str, Any] = {}
                if two:
                    # Two instances on one SQLite store and data folder (the same keys), under one public URL.
                    pa, pb = R.free_port(), R.free_port()
                    common = ["--json", "--store", "sqlite", "--data-dir", os.path.join(tmp, "data"),
                              "--public-url", f"http://127.0.0.1:{pa}", "--config", config]
                    gw = stack.enter_context(_instance(env, c, f"uo-{sdk}-gateway-a", pa, common))
                    stack.enter_context(_instance(env, c, f"uo-{sdk}-gateway-b", pb, common))
                elif static:
                    gw = stack.enter_context(_instance(env, c, f"uo-{sdk}-gateway", gw_port, [
                        "--json", "--store", "memory", "--data-dir", os.path.join(tmp, "data"), "--config", config]))
                else:
                    gw = stack.enter_context(G.gateway(env, c, f"uo-{sdk}-gateway", "--config", config))
                origin = gw.mcp_url.rsplit("/mcp", 1)[0]
                link = f"{origin}/gateway/connect/{UPSTREAM}"
                out: dict[str, Any] = {}
                problem: R.Failure | None = None
                client_env = {"SDK": sdk, "REDIRECT_URI": D.redirect_uri(), "SCOPE": "mcp:read mcp:write",
                              "LOGIN_USER": D.DEV_USER, "LOGIN_PASSWORD": D.DEV_PASSWORD,
                              **{k.upper(): v for k, v in files.items() if k[:-1] in ("ready", "go")}}
                argv = ([env.args.python, os.path.join(R.PEERS, "user_oauth_py_client.py"), gw.mcp_url, "legacy"] if sdk == "py"
                        else [env.args.node, os.path.join(R.PEERS, "user-oauth-client.mjs"), gw.mcp_url])
                tc = threading.Thread(target=lambda: out.update(client=_catch(lambda: D.run_peer(env, c, f"uo-{sdk}-client", argv, client_env))))
                tc.start()
                threads.append(tc)
                try:
                    # 1. the client signed in and got the link; nothing was accepted upstream.
                    first = _wait_file(files["ready1"], threads, "the client's first connect")
                    t_link = time.monotonic()
                    _error_with_link(c, first, link, "first connect (no connection yet)")
                    c.true(not any(e.get("accepted") for e in G.read_record(record) if e.get("kind") == "mcp"),
                           "before the connection nothing reached the upstream's MCP endpoint with a token it accepts")
                    # The browser: gateway sign-in, consent at the SaaS, "Connected".
                    tb = threading.Thread(target=lambda: out.update(browser=_catch(lambda: D.run_peer(
                        env, c, f"uo-{sdk}-browser", [env.args.node, os.path.join(R.PEERS, "user-oauth-browser.mjs"), link, saas_issuer],
                        {"LOGIN_USER": D.DEV_USER, "LOGIN_PASSWORD": D.DEV_PASSWORD, "SAAS_LOGIN": SAAS_LOGIN, "UPSTREAM": UPSTREAM,
                         "CONNECTED": files["connected"], "REVOKE": files["revoke"], "CHROMIUM": env.args.chromium,
                         "SCREENSHOT_DIR": env.log_dir}))))
                    tb.start()
                    threads.append(tb)
                    browser = _wait_file(files["connected"], threads, "the browser's connection")
                    t_connected = time.monotonic()
                    _touch(files["go1"])
                    # 2. the calls with the sealed grant.
                    _wait_file(files["ready2"], threads, "the client's calls after the connection")
                    if two:
                        # Sessions at both instances with the client's token; B reads the grant A sealed.
                        host = f"127.0.0.1:{pa}"
                        sessions = {"a": _RawSession(pa, host, first.get("access_token") or ""), "b": _RawSession(pb, host, first.get("access_token") or "")}
                        for n, sess in sessions.items():
                            status, msg = sess.initialize()
                            c.eq(status, 200, f"instance {n}: initialize with the client's token ({json.dumps(msg)[:300]})")
                            race[f"before_{n}"] = sess.whoami()
                        race["attempts"] = _race(c, port, sessions)
                    else:
                        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/control/expire", method="POST"), timeout=10) as r:
                            c.note(f"the upstream now refuses its tokens so far as expired: {r.read().decode()}")
                    _touch(files["go2"])
                    # 3. refreshed; then the revocation in the browser.
                    _wait_file(files["ready3"], threads, "the client's calls after the expiry")
                    _touch(files["revoke"])
                    tb.join(timeout=R.CLIENT_TIMEOUT)
                    _touch(files["go3"])
                except R.Failure as e:
                    problem = e
                finally:
                    for k in ("go1", "go2", "go3", "revoke"):
                        _touch(files[k])
                    for t in threads:
                        t.join()
                t_end = time.monotonic()
                # A peer's own failure says more than the runner's wait for it.
                for k in ("client", "browser"):
                    if isinstance(out.get(k), BaseException):
                        raise R.Failure(f"{problem or ''}\n{k}: {out[k]}")
                if problem:
                    raise problem
                res, browser = out["client"], out["browser"]
                c.note(f"{sdk}: sign-in + first call {t_link - t_start:.2f}s; browser connect {t_connected - t_link:.2f}s; "
                       f"the rest (calls, expiry, revocation) {t_end - t_connected:.2f}s; total {t_end - t_start:.2f}s")
                _assert(c, gw, res, browser, record, link, saas_mcp, saas_issuer, sdk, race, static)
                if static:
                    # oidc-provider takes this client's secret only by HTTP Basic: the 200s above say the gateway sent it so.
                    c.true(secret not in gw.proc.log_text(), "the client secret is in no line of the gateway's log")
        finally:
            for k in files:
                if k.startswith(("go", "revoke")) and os.path.isdir(tmp):
                    _touch(files[k])
            saas.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    run.__doc__ = (f"user-oauth upstream (a SaaS MCP server behind its own oidc-provider), {SDK_NAMES[sdk]} + Chromium"
                   f"{', two gateway instances on one SQLite store racing to renew' if two else ''}"
                   f"{', a client registered by hand at the SaaS (client_secret_basic)' if static else ''}: the first call "
                   "gets the connect link, the browser signs in at the gateway and consents at the SaaS, the next calls carry the "
                   "user's own token (never the gateway's), an expired token is refreshed once, revoking on the connections page "
                   "stops access.")
    return run


def _assert(c: R.Checks, gw: G.Gateway, res: dict, browser: dict, record: str, link: str, saas_mcp: str, saas_issuer: str, sdk: str,
            race: dict[str, Any], static: bool) -> None:
    origin = link.rsplit("/gateway/", 1)[0]
    callback = f"{link}/callback"
    rec = G.read_record(record)
    registers = [e for e in rec if e.get("kind") == "register"]
    authorizes = [e for e in rec if e.get("kind") == "authorize"]
    tokens = [e for e in rec if e.get("kind") == "token"]
    mcp = [e for e in rec if e.get("kind") == "mcp"]

    # The client signed in at the gateway (the login page, its own token).
    auths = res.get("authorizations") or []
    if c.true(bool(auths), f"{sdk}: the client signed in at the gateway"):
        D.assert_login_page(c, auths[0], CLIENT_NAMES[sdk], f"{sdk}: gateway sign-in")
        c.eq((auths[0].get("callback") or {}).get("iss"), gw.issuer, f"{sdk}: callback iss (RFC 9207)")

    # The gateway registered itself at the SaaS's server (no client configured, no CIMD support
    # there), or used the client configured for it.
    if static:
        c.eq(registers, [], "no registration: the configured client is used")
        client_id = STATIC_CLIENT
    elif c.eq(len(registers), 1, f"one dynamic registration at the SaaS's server ({registers})"):
        reg = registers[0]
        c.eq(reg.get("status"), 201, "registration status")
        c.eq(reg.get("redirect_uris"), [callback], "the registered redirect URI is the gateway's callback")
        c.eq(reg.get("token_endpoint_auth_method"), "none", "a public client (PKCE)")
        client_id = reg.get("client_id")
    else:
        client_id = None

    # The browser: the gateway's sign-in, then the SaaS's login and consent, then "Connected".
    nav = browser.get("navigations") or []
    c.true(any(u.startswith(f"{gw.issuer}/authorize") or u.startswith(f"{origin}/authorize") for u in nav) or bool(browser.get("gateway_login")),
           f"the browser signed in at the gateway first: {nav}")
    c.true((browser.get("saas_login") or {}).get("url", "").startswith(f"{saas_issuer}/interaction/"), f"then the SaaS's login form: {browser.get('saas_login')}")
    conn = browser.get("connected") or {}
    c.eq(conn.get("heading"), "Connected", f"the gateway's callback page says Connected: {conn.get('text', '')[:300]!r}")
    c.true(UPSTREAM in (conn.get("text") or ""), f"the page names the upstream: {conn.get('text', '')[:300]!r}")
    c.true(conn.get("url", "").startswith(callback), f"it is the gateway's callback: {conn.get('url')}")

    # The authorization request at the SaaS: PKCE S256, resource, state, the gateway's client.
    if c.eq(len(authorizes), 1, f"one authorization request at the SaaS ({len(authorizes)})"):
        p = authorizes[0].get("params") or {}
        c.eq((p.get("client_id"), p.get("redirect_uri"), p.get("code_challenge_method"), p.get("resource"), p.get("scope")),
             (client_id, callback, "S256", saas_mcp, "notes:read"), "authorize: client, redirect URI, PKCE, resource, scope")
        c.true(len(p.get("state") or "") >= 16, f"authorize: a state ({p.get('state')!r})")
    codes = [t for t in tokens if t.get("grant_type") == "authorization_code"]
    refreshes = [t for t in tokens if t.get("grant_type") == "refresh_token"]
    if not c.eq(len(codes), 1, f"one code redeemed ({codes})"):
        return
    code = codes[0]
    c.eq((code.get("status"), code.get("client_id"), code.get("code_verifier"), code.get("resource")), (200, client_id, True, saas_mcp),
         "code grant: 200, the gateway's client, the PKCE verifier, resource")

    # 1. the first connect: the link (checked while running); 2. calls with the user's token.
    s = res.get("steps") or {}
    c.eq(s.get("second_connect"), {"connected": True}, f"{sdk}: connects once the account is connected")
    who1, who2 = (s.get("whoami1") or {}).get("who") or {}, (s.get("whoami2") or {}).get("who") or {}
    c.eq(who1.get("sub"), SAAS_LOGIN, f"whoami: the upstream saw the SaaS account ({json.dumps(s.get('whoami1'))[:400]})")
    c.eq(who1.get("client_id"), client_id, "whoami: the token was issued to the gateway's client there")
    c.eq(who1.get("token_sha256"), code.get("access_sha256"), "whoami: the token the upstream saw is the one the code grant issued")
    c.eq(who2.get("token_sha256"), code.get("access_sha256"), "the second call used the same sealed token (no refresh)")

    # 3. expiry: exactly one refresh with the code's refresh token; the upstream sees the new token.
    attempts = (s.get("after_expiry") or {}).get("attempts") or []
    last = attempts[-1] if attempts else {}
    c.note(f"after the expiry: {len(attempts)} call(s); the first {json.dumps(attempts[0])[:300] if attempts else None}")
    if c.eq(len(refreshes), 1, f"exactly one refresh ({refreshes})"):
        ref = refreshes[0]
        c.eq((ref.get("status"), ref.get("client_id"), ref.get("resource")), (200, client_id, saas_mcp), "refresh: 200, the gateway's client, resource")
        c.eq(ref.get("presented_refresh_sha256"), code.get("refresh_sha256"), "refresh: presented the refresh token of the code grant")
        c.true(ref.get("refresh_sha256") not in (None, code.get("refresh_sha256")), "refresh: the refresh token was rotated")
        new = (last.get("who") or {}).get("token_sha256")
        c.eq(new, ref.get("access_sha256"), f"after the expiry the upstream saw the refreshed token ({json.dumps(last)[:300]})")
        c.true(new != code.get("access_sha256"), "a new token, not the expired one")
        c.eq(((s.get("whoami_again") or {}).get("who") or {}).get("token_sha256"), ref.get("access_sha256"), "the next call used the refreshed token (no second refresh)")
    c.eq((last.get("who") or {}).get("sub"), SAAS_LOGIN, "after the refresh: the same SaaS account")
    if race:
        # Two instances: B used the grant A sealed; after the expiry both renewed at once, one
        # refresh between them (checked above), and both send the new token.
        for n in ("a", "b"):
            c.eq(((race.get(f"before_{n}") or {}).get("who") or {}).get("token_sha256"), code.get("access_sha256"),
                 f"instance {n}: whoami before the expiry with the sealed token ({json.dumps(race.get(f'before_{n}'))[:300]})")
            att = (race.get("attempts") or {}).get(n) or [{}]
            got = (att[-1].get("who") or {}).get("token_sha256")
            c.true(got is not None and refreshes and got == refreshes[0].get("access_sha256"),
                   f"instance {n}: after the expiry the refreshed token ({len(att)} calls: {json.dumps(att)[:500]})")
        c.note(f"racing instances: calls until success a={len((race.get('attempts') or {}).get('a') or [])}, "
               f"b={len((race.get('attempts') or {}).get('b') or [])}")
    c.true(len(attempts) <= 2, f"at most one call failed while the token was renewed ({len(attempts)} attempts)")

    # 4. revocation on the connections page.
    cons, after = browser.get("connections") or {}, browser.get("connections_after") or {}
    c.eq(cons.get("status"), 200, "the connections page (200)")
    c.true((cons.get("rows") or 0) >= 1, f"the connections page lists {UPSTREAM}: {cons.get('text', '')[:400]!r}")
    c.true((browser.get("revoke") or {}).get("status") in (200, 303), f"revoke answered {browser.get('revoke', {}).get('status')}")
    c.eq(after.get("rows"), 0, f"after the revocation {UPSTREAM} is no longer listed: {after.get('text', '')[:400]!r}")
    _error_with_link(c, s.get("after_revoke") or {}, link, "a call after the revocation")
    c.eq(len([t for t in G.read_record(record) if t.get("kind") == "token"]), 2, "no token request after the revocation")

    # The upstream never saw a gateway token: every Authorization it got carries a token its own
    # server issued; the gateway's tokens appear nowhere in what it recorded.
    issued = {t.get("access_sha256") for t in tokens if t.get("access_sha256")}
    bearer = [e.get("authorization") for e in mcp if e.get("authorization")]
    c.true(bool(bearer), "the upstream got requests with a token")
    foreign = [b[:20] + "…" for b in bearer if not b.startswith("Bearer ") or _sha(b[len("Bearer "):]) not in issued]
    c.eq(foreign, [], f"every Authorization the upstream got is a token its own server issued ({len(bearer)} requests)")
    gateway_tokens = [t for t in (gw.info.get("token"), res.get("access_token"), res.get("access_token_final")) if t]
    c.true(len(gateway_tokens) >= 2, "the gateway's tokens are known to the runner")
    with open(record) as f:
        text = f.read()
    for i, tok in enumerate(gateway_tokens):
        c.true(tok not in text and tok.split(".")[-1] not in text, f"gateway token #{i + 1} (…{tok[-8:]}) appears nowhere in what the upstream and its server received")
    accepted = [e for e in mcp if e.get("accepted")]
    c.note(f"the upstream got {len(mcp)} requests, {len(accepted)} with an accepted token; token requests: "
           f"{[(t.get('grant_type'), t.get('status')) for t in tokens]}")


RENEWAL_TTL = 63  # seconds: the gateway renews 60 s before `exp`, so a token is fresh for 3 s
RENEWAL_DEADLINE = 30.0  # seconds: for the calls to see a renewal


def scenario_uo6_proactive_renewal(env: R.Env, c: R.Checks) -> None:
    """user-oauth's proactive renewal: the SaaS issues tokens for 63 s; the gateway renews each one before it expires (60 s ahead), with no call failing and no refusal at the upstream."""
    tmp = tempfile.mkdtemp(prefix="interop-uo6-")
    record = os.path.join(tmp, "saas.jsonl")
    c.logs.append(record)
    port = R.free_port()
    saas_mcp, saas_issuer = f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{port}"
    saas = env.start("uo6-saas", [env.args.node, os.path.join(R.PEERS, "saas-upstream.mjs")],
                     {"PORT": str(port), "RECORD_OUT": record, "TOKEN_TTL": str(RENEWAL_TTL)}, shared=False)
    c.logs.append(saas.log_path)
    files = {k: os.path.join(tmp, k) for k in ("connected", "revoke")}
    config = os.path.join(tmp, "gateway.toml")
    with open(config, "w") as f:
        f.write(f"""[[upstream]]
name = "{UPSTREAM}"
url = "{saas_mcp}"
credentials = {{ kind = "user-oauth", scopes = ["notes:read"] }}
""")
    threads: list[threading.Thread] = []
    out: dict[str, Any] = {}
    try:
        G.wait_port(saas, port)
        with G.gateway(env, c, "uo6-gateway", "--config", config) as gw:
            origin = gw.mcp_url.rsplit("/mcp", 1)[0]
            link = f"{origin}/gateway/connect/{UPSTREAM}"
            gw_port = int(urllib.parse.urlsplit(gw.mcp_url).port or 0)
            host = urllib.parse.urlsplit(gw.mcp_url).netloc
            tb = threading.Thread(target=lambda: out.update(browser=_catch(lambda: D.run_peer(
                env, c, "uo6-browser", [env.args.node, os.path.join(R.PEERS, "user-oauth-browser.mjs"), link, saas_issuer],
                {"LOGIN_USER": D.DEV_USER, "LOGIN_PASSWORD": D.DEV_PASSWORD, "SAAS_LOGIN": SAAS_LOGIN, "UPSTREAM": UPSTREAM,
                 "CONNECTED": files["connected"], "REVOKE": files["revoke"], "CHROMIUM": env.args.chromium, "SCREENSHOT_DIR": env.log_dir}))))
            tb.start()
            threads.append(tb)
            problem: R.Failure | None = None
            calls: list[dict] = []
            t0 = time.monotonic()
            try:
                _wait_file(files["connected"], threads, "the browser's connection")
                t_connected = time.monotonic()
                # The user's calls, one after the other, until the upstream has seen a renewed token.
                s = _RawSession(gw_port, host, gw.info.get("token") or "")
                status, init = s.initialize()
                c.true(status == 200 and bool((init or {}).get("result")), f"initialize once connected: {json.dumps(init)[:300]}")
                renewed: set[str] = set()
                while True:
                    calls.append(s.whoami())
                    renewed = {t.get("access_sha256") for t in G.read_record(record) if t.get("kind") == "token" and t.get("grant_type") == "refresh_token"}
                    if (calls[-1].get("who") or {}).get("token_sha256") in renewed:
                        break
                    if calls[-1].get("who") is None:
                        break  # a failed call: asserted below
                    if time.monotonic() - t_connected > RENEWAL_DEADLINE:
                        raise R.Failure(f"no call carried a renewed token within {RENEWAL_DEADLINE:.0f}s ({len(calls)} calls)")
                    time.sleep(0.1)  # poll interval, bounded by the deadline above
                t_renewed = time.monotonic()
            except R.Failure as e:
                problem = e
            finally:
                _touch(files["revoke"])
                for t in threads:
                    t.join()
            if isinstance(out.get("browser"), BaseException):
                raise R.Failure(f"{problem or ''}\nbrowser: {out['browser']}")
            if problem:
                raise problem
            c.note(f"connected in {t_connected - t0:.2f}s; {len(calls)} calls until one carried a renewed token, {t_renewed - t_connected:.2f}s")
            _assert_uo6(c, calls, G.read_record(record), (out.get("browser") or {}))
    finally:
        if os.path.isdir(tmp):
            _touch(files["revoke"])
        saas.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _assert_uo6(c: R.Checks, calls: list[dict], rec: list[dict], browser: dict) -> None:
    c.eq((browser.get("connected") or {}).get("heading"), "Connected", "the browser connected the account")
    tokens = [t for t in rec if t.get("kind") == "token"]
    codes = [t for t in tokens if t.get("grant_type") == "authorization_code"]
    refreshes = [t for t in tokens if t.get("grant_type") == "refresh_token"]
    if not c.eq(len(codes), 1, f"one code redeemed ({codes})"):
        return
    c.eq((codes[0].get("status"), codes[0].get("expires_in")), (200, RENEWAL_TTL), f"the code grant's token lives {RENEWAL_TTL} s")
    # Every call succeeded, as the SaaS account, and the upstream refused nothing.
    failed = [x for x in calls if x.get("status") != 200 or x.get("error") or x.get("isError") or (x.get("who") or {}).get("sub") != SAAS_LOGIN]
    c.eq(failed, [], f"every one of the {len(calls)} calls succeeded as {SAAS_LOGIN}")
    mcp = [e for e in rec if e.get("kind") == "mcp"]
    refused = [e for e in mcp if e.get("authorization") and not e.get("accepted")]
    c.eq(refused, [], f"the upstream refused none of the {len(mcp)} requests it got with a token")
    # At least one renewal: each a 200 refresh grant presenting the refresh token issued just before, before its access token expired.
    if not c.true(bool(refreshes), f"a refresh_token grant at the SaaS ({[(t.get('grant_type'), t.get('status')) for t in tokens]})"):
        return
    prev = codes[0]
    for i, ref in enumerate(refreshes):
        c.eq((ref.get("status"), ref.get("presented_refresh_sha256")), (200, prev.get("refresh_sha256")),
             f"renewal #{i + 1}: 200, presenting the refresh token of the grant before it")
        expires_at = (prev.get("at") or 0) + 1000 * (prev.get("expires_in") or 0)
        c.true(isinstance(ref.get("at"), int) and ref["at"] < expires_at,
               f"renewal #{i + 1} came before the token it replaced expired (at {ref.get('at')}, expiry {expires_at})")
        prev = ref
    last = (calls[-1].get("who") or {}).get("token_sha256") if calls else None
    c.true(last in {r.get("access_sha256") for r in refreshes}, "the last call carried a renewed token")
    c.note(f"{len(refreshes)} renewal(s); tokens the calls carried: "
           f"{[('code' if (x.get('who') or {}).get('token_sha256') == codes[0].get('access_sha256') else 'renewed') for x in calls]}")


def _standalone(fn: Callable[[R.Env, R.Checks], None]) -> Callable[[R.Env, R.Checks], None]:
    fn.standalone = True  # type: ignore[attr-defined]  # needs no shared servers (scenario a)
    return fn


SCENARIOS: list[tuple[str, Callable[[R.Env, R.Checks], None]]] = [
    ("uo1-gw-user-oauth-saas-ts-sdk-v1-chromium", _standalone(_uo_scenario("v1"))),
    ("uo2-gw-user-oauth-saas-ts-sdk-v2-chromium", _standalone(_uo_scenario("v2"))),
    ("uo3-gw-user-oauth-saas-py-sdk-chromium", _standalone(_uo_scenario("py"))),
    ("uo4-gw-user-oauth-saas-two-instances-ts-sdk-v1", _standalone(_uo_scenario("v1", two=True))),
    ("uo5-gw-user-oauth-saas-static-client-ts-sdk-v2", _standalone(_uo_scenario("v2", static=True))),
    ("uo6-gw-user-oauth-saas-proactive-renewal", _standalone(scenario_uo6_proactive_renewal)),
]
