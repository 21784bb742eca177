"""Scenarios h–n: real clients against `mcp-oauth dev` (our embedded authorization server and the
demo MCP server it protects, on one loopback port). Part of runner.py (standard library only).

Every scenario starts its own `mcp-oauth dev --port 0 --data-dir <fresh temp dir> --json
--store memory` (login page on, no auto-approve, unless said otherwise), reads the one JSON line
it prints, polls its protected resource metadata until ready, and stops it in `finally` with
SIGTERM, which must end it gracefully (exit 0).

The authorization_code clients sign in on the real login & consent page: the TS peers through
peers/login-follower.mjs, the Python peer through its own redirect_handler, and the browser
scenarios through headless Debian Chromium driven by playwright-core (peers/browser-authorize.mjs).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from typing import Any, Callable, Iterator

import runner as R  # the running runner.py (aliased in sys.modules before this import)

DEV_USER, DEV_PASSWORD = "dev", "dev"
BASE_SCOPES = {"mcp:read", "mcp:write"}


# --------------------------------------------------------------------------- the dev server


class DevServer:
    """One `mcp-oauth dev` process with what its JSON line says."""

    def __init__(self, env: R.Env, name: str, extra_args: list[str]):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="interop-dev-")
        self.data_dir = os.path.join(self.tmp, "data")  # fresh: dev creates it
        self.stdout_path = os.path.join(env.log_dir, f"{name}.stdout")
        argv = [env.args.dev_bin, "dev", "--port", "0", "--data-dir", self.data_dir, "--json", "--store", "memory", *extra_args]
        self.proc = env.start(
            name,
            argv,
            {"MCP_OAUTH_LOG": os.environ.get("MCP_OAUTH_LOG", "info,mcp_oauth=debug"), "RUST_BACKTRACE": "1"},
            stdout_path=self.stdout_path,
            shared=False,
        )
        self.info: dict[str, Any] = {}
        self.ready_s = 0.0

    def wait_ready(self) -> None:
        t0 = time.monotonic()
        line = ""
        while True:
            with open(self.stdout_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if "\n" in text:
                line = text.split("\n", 1)[0]
                break
            if not self.proc.alive():
                raise R.Failure(f"{self.name} exited {self.proc.popen.returncode} before printing its JSON line; stdout {text!r}")
            if time.monotonic() - t0 > R.READY_DEADLINE:
                raise R.Failure(f"{self.name} printed no JSON line within {R.READY_DEADLINE:.0f}s; stdout so far {text!r}")
            time.sleep(0.02)  # poll interval, bounded by the deadline above
        try:
            self.info = json.loads(line)
        except json.JSONDecodeError as e:
            raise R.Failure(f"{self.name}: first stdout line is not JSON ({e}): {line!r}")
        for key in ("mcp_url", "issuer", "token", "data_dir", "users"):
            if key not in self.info:
                raise R.Failure(f"{self.name}: JSON line lacks {key!r}: {line!r}")
        # The line comes before serving starts: poll the protected resource metadata.
        R.wait_ready(self.proc, self.prm_url, R.READY_DEADLINE - (time.monotonic() - t0))
        self.ready_s = time.monotonic() - t0

    @property
    def issuer(self) -> str:
        return self.info["issuer"]

    @property
    def mcp_url(self) -> str:
        return self.info["mcp_url"]

    @property
    def prm_url(self) -> str:
        origin = urllib.parse.urlsplit(self.info.get("mcp_url", "http://x")).netloc
        return f"http://{origin}/.well-known/oauth-protected-resource/mcp"

    def stop(self) -> int | None:
        self.proc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.proc.popen.returncode


@contextlib.contextmanager
def dev_server(env: R.Env, c: R.Checks, name: str, *extra_args: str) -> Iterator[DevServer]:
    """Starts `mcp-oauth dev`, yields it when ready, stops it (SIGTERM: graceful, exit 0)."""
    if not env.args.dev_bin or not os.access(env.args.dev_bin, os.X_OK):
        raise R.Failure(f"mcp-oauth binary {env.args.dev_bin!r} missing (cargo build -p mcp-oauth-cli)")
    dev = DevServer(env, name, list(extra_args))
    c.logs.append(dev.proc.log_path)
    try:
        dev.wait_ready()
        c.note(f"{name}: {dev.mcp_url} ready in {dev.ready_s:.2f}s ({' '.join(extra_args) or 'defaults'})")
        yield dev
    finally:
        rc = dev.stop()
        c.eq(rc, 0, f"{name}: exit code after SIGTERM (graceful shutdown)")
        c.true("mcp-oauth dev stopped" in dev.proc.log_text(), f"{name}: logged 'mcp-oauth dev stopped' on SIGTERM")


# --------------------------------------------------------------------------- helpers


def b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def redirect_uri(host: str = "127.0.0.1") -> str:
    return f"http://{host}:{R.free_port()}/callback"  # nothing listens there


def run_peer(env: R.Env, c: R.Checks, name: str, script: list[str], extra_env: dict[str, str], check: bool = True) -> dict:
    res = env.run_client(name, script, extra_env, check=check)
    c.logs.append(res.get("_log") or os.path.join(env.log_dir, f"client-{name}.log"))
    return res


def ts_v1(env: R.Env, c: R.Checks, dev: DevServer, name: str, **flags: str) -> dict:
    return run_peer(env, c, name, [env.args.node, os.path.join(R.PEERS, "ts-sdk-client.mjs"), dev.mcp_url], {
        "MODE": "authcode", "AS_ISSUER": dev.issuer, "SCOPE": "mcp:read mcp:write", "REDIRECT_URI": redirect_uri(),
        "LOGIN_USER": DEV_USER, "LOGIN_PASSWORD": DEV_PASSWORD, **flags,
    })


def ts_v2(env: R.Env, c: R.Checks, dev: DevServer, name: str, **flags: str) -> dict:
    return run_peer(env, c, name, [env.args.node, os.path.join(R.PEERS, "ts-sdk-v2-client.mjs"), dev.mcp_url], {
        "MODE": "authcode", "AS_ISSUER": dev.issuer, "SCOPE": "mcp:read mcp:write", "REDIRECT_URI": redirect_uri(),
        "LOGIN_USER": DEV_USER, "LOGIN_PASSWORD": DEV_PASSWORD, **flags,
    })


def py(env: R.Env, c: R.Checks, dev: DevServer, name: str, connect: str, **flags: str) -> dict:
    return run_peer(env, c, name, [env.args.python, os.path.join(R.PEERS, "py_sdk_client.py"), dev.mcp_url, connect], {
        "MODE": "authcode", "AS_ISSUER": dev.issuer, "SCOPE": "mcp:read mcp:write", "REDIRECT_URI": redirect_uri(),
        "LOGIN_USER": DEV_USER, "LOGIN_PASSWORD": DEV_PASSWORD, **flags,
    })


def token_post(dev: DevServer, form: dict[str, str], basic: tuple[str, str] | None = None) -> R.Resp:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    return R.http("POST", f"{dev.issuer}/token", headers, urllib.parse.urlencode(form).encode())


def mcp_call(dev: DevServer, token: str | None, name: str, args: dict | None = None) -> R.Resp:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": R.PROTOCOL}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": args or {}}}
    return R.http("POST", dev.mcp_url, headers, json.dumps(body).encode())


def tool_json(resp: R.Resp) -> Any:
    msg = resp.json()
    text = "".join(x.get("text", "") for x in ((msg.get("result") or {}).get("content") or []))
    return json.loads(text) if text else msg


def _json_body(r: R.Resp) -> dict:
    try:
        return json.loads(r.body)
    except ValueError:
        return {}


# --------------------------------------------------------------------------- shared assertions


def assert_login_page(c: R.Checks, authz: dict, client_name: str, what: str) -> None:
    """The follower's trace of one authorization: the login page, the cookie, the POST, the callback."""
    trace = authz.get("trace") or []
    pages = [h for h in trace if h.get("page")]
    if not c.true(bool(pages), f"{what}: the login & consent page was shown (trace {[(h.get('method'), h.get('path'), h.get('status')) for h in trace]})"):
        return
    page = pages[0]["page"]
    c.eq(pages[0].get("status"), 200, f"{what}: login page status")
    c.true(client_name in (page.get("heading") or ""), f"{what}: page heading names the client {client_name!r}: {page.get('heading')!r}")
    scopes = set(page.get("scopes") or [])
    requested = set(((authz.get("params") or {}).get("scope") or "").split())
    c.true(BASE_SCOPES <= scopes <= requested | {"offline_access"}, f"{what}: page lists the requested scopes: page {sorted(scopes)}, requested {sorted(requested)}")
    names = {i.get("name") for i in page.get("inputs") or []}
    c.true({"request_id", "csrf", "username", "password"} <= names, f"{what}: form fields {sorted(n for n in names if n)}")
    c.true(any(b.get("value") == "approve" and "Sign in and allow" in (b.get("text") or "") for b in page.get("buttons") or []), f"{what}: 'Sign in and allow' button: {page.get('buttons')}")
    set_cookies = pages[0].get("set_cookies")
    if isinstance(set_cookies, list) and set_cookies and isinstance(set_cookies[0], dict):  # TS follower: parsed
        csrf = next((x for x in set_cookies if x.get("name") == "mcp_oauth_csrf"), None)
        if c.true(csrf is not None, f"{what}: the page sets the mcp_oauth_csrf cookie ({set_cookies})"):
            attrs = {a.split("=")[0].lower(): a for a in csrf.get("attributes") or []}
            c.true("httponly" in attrs and attrs.get("samesite", "").lower() == "samesite=strict", f"{what}: csrf cookie is HttpOnly, SameSite=Strict: {csrf.get('attributes')}")
    elif set_cookies:  # Python follower: raw Set-Cookie values
        raw = " ".join(set_cookies if isinstance(set_cookies, list) else [set_cookies])
        c.true("mcp_oauth_csrf=" in raw and "HttpOnly" in raw and "SameSite=Strict" in raw, f"{what}: csrf cookie HttpOnly, SameSite=Strict: {raw}")
    else:
        c.true(False, f"{what}: the login page set no cookie")
    posts = [h for h in trace if h.get("method") == "POST"]
    if c.true(bool(posts), f"{what}: the form was POSTed"):
        c.eq(posts[-1].get("status"), 302, f"{what}: form POST status")
        c.true("mcp_oauth_csrf" in (posts[-1].get("sent_cookies") or []), f"{what}: the POST carried the csrf cookie")


def assert_authcode(dev: DevServer, c: R.Checks, res: dict, client_name: str, *, alg: str = "ES256") -> None:
    authz = res.get("authorize") or {}
    c.eq(authz.get("resource"), dev.mcp_url, "authorize request resource (RFC 8707)")
    c.eq(authz.get("code_challenge_method"), "S256", "authorize request PKCE method")
    first = (res.get("authorizations") or [{}])[0]
    assert_login_page(c, first, client_name, "first authorization")
    cb = first.get("callback") or {}
    c.eq(cb.get("iss"), dev.issuer, "callback iss (RFC 9207)")
    if authz.get("state") is not None:
        c.eq(cb.get("state"), authz.get("state"), "callback state == sent state")
    c.true(bool(res.get("client_id")), f"client registered dynamically (client_id {res.get('client_id')!r})")
    R._assert_tools_and_echo(c, res)
    who, claims, header = res.get("whoami") or {}, res.get("token_claims") or {}, res.get("token_header") or {}
    c.eq(header.get("alg"), alg, "access token alg")
    c.eq(header.get("typ"), "at+jwt", "access token typ")
    c.eq(claims.get("iss"), dev.issuer, "token iss")
    c.eq(claims.get("aud"), dev.mcp_url, "token aud")
    c.eq(claims.get("sub"), DEV_USER, "token sub")
    c.eq((who.get("user") or {}).get("id"), DEV_USER, "whoami user.id")
    c.eq(who.get("client_id"), res.get("client_id"), "whoami client_id == the registered client")
    c.eq(who.get("issuer"), dev.issuer, "whoami issuer")
    c.true(BASE_SCOPES <= set(who.get("scopes") or []), f"whoami scopes include mcp:read and mcp:write: {who.get('scopes')}")
    c.eq(sorted(who.get("scopes") or []), sorted((claims.get("scope") or "").split()), "whoami scopes == token scopes")
    codes = [t for t in res.get("token_requests") or [] if t.get("grant_type") == "authorization_code"]
    if c.true(bool(codes), f"an authorization_code token request was seen: {res.get('token_requests')}"):
        c.eq(codes[0].get("resource"), dev.mcp_url, "code exchange resource")


def assert_refresh(dev: DevServer, c: R.Checks, res: dict) -> dict:
    ref = res.get("refresh") or {}
    if not c.true(bool(ref), "the client ran the refresh step"):
        return ref
    grants = [t for t in ref.get("requests") or [] if t.get("grant_type") == "refresh_token"]
    if c.eq(len(grants), 1, f"refresh_token requests during the refresh step ({ref.get('requests')})"):
        c.eq(grants[0].get("resource"), dev.mcp_url, "refresh request resource")
    c.true(bool(ref.get("old_refresh_token")), "a refresh token was issued with the code")
    c.true(bool(ref.get("new_refresh_token")) and ref.get("new_refresh_token") != ref.get("old_refresh_token"), "the refresh token rotated (new != old)")
    c.true(ref.get("access_token_changed") is True, "a new access token came with the refresh")
    c.true(ref.get("redirected") is False, "the refresh needed no new authorization (no login)")
    claims, who = ref.get("token_claims") or {}, ref.get("whoami") or {}
    c.eq(claims.get("aud"), dev.mcp_url, "refreshed token aud")
    c.eq(claims.get("sub"), DEV_USER, "refreshed token sub")
    c.eq((who.get("user") or {}).get("id"), DEV_USER, "whoami with the refreshed token: user.id")
    c.eq(who.get("client_id"), res.get("client_id"), "whoami with the refreshed token: client_id")
    c.note(f"refresh: {grants[:1]}, rotated {ref.get('old_refresh_token', '')[:6]}… -> {ref.get('new_refresh_token', '')[:6]}…")
    return ref


def assert_step_up(dev: DevServer, c: R.Checks, res: dict, *, expect_sdk_path: bool) -> None:
    step = res.get("step_up") or {}
    if not c.true(bool(step), "the client ran the step-up step"):
        return
    forb = [e for e in step.get("mcp_errors") or [] if e.get("status") == 403]
    if c.true(bool(forb), f"admin_action got HTTP 403 ({step.get('mcp_errors')})"):
        scheme, params = R.parse_challenge(forb[0].get("www_authenticate") or "")
        c.eq(scheme, "Bearer", "403 challenge scheme")
        c.eq(params.get("error"), "insufficient_scope", "403 challenge error")
        c.true("admin" in (params.get("scope") or "").split(), f"403 challenge scope names admin: {forb[0].get('www_authenticate')}")
        c.eq(params.get("resource_metadata"), dev.prm_url, "403 challenge resource_metadata")
    re_auth = step.get("reauthorizations") or []
    if c.eq(len(re_auth), 1, f"re-authorizations for the step-up ({re_auth})"):
        asked = set((re_auth[0].get("scope") or "").split())
        c.true(BASE_SCOPES | {"admin"} <= asked, f"re-authorization asks for the union mcp:read mcp:write admin: {sorted(asked)}")
        c.true(re_auth[0].get("logged_in") is True, "the user signed in again on the login page")
    if expect_sdk_path:
        c.eq(step.get("path"), "sdk", f"the SDK re-authorized by itself (error seen: {step.get('error')!r})")
    r = step.get("result") or {}
    c.true(not r.get("isError") and "admin action done by dev" in (r.get("text") or ""), f"admin_action succeeded after the step-up: {r}")
    c.true({"admin"} | BASE_SCOPES <= set((step.get("token_scope") or "").split()), f"final token scope has admin and the base scopes: {step.get('token_scope')!r}")
    c.note(f"step-up path {step.get('path')!r}; SDK error {step.get('error')!r}; re-authorized with {[a.get('scope') for a in re_auth]}")


# --------------------------------------------------------------------------- scenarios


def scenario_h_ts_v1(env: R.Env, c: R.Checks) -> None:
    """TS SDK v1 against mcp-oauth dev: DCR + code + PKCE + resource, login page as dev/dev, whoami; refresh via auth() (rotation, reuse revokes)."""
    with dev_server(env, c, "dev-h") as dev:
        res = ts_v1(env, c, dev, "dev-ts-v1-authcode-refresh", REFRESH="1")
        c.note(f"client ran in {res['_seconds']}s")
        assert_authcode(dev, c, res, "ts-sdk-interop")
        ref = assert_refresh(dev, c, res)
        c.eq(ref.get("outcome"), "AUTHORIZED", "auth() with a stored refresh token returns AUTHORIZED")
        old, new, cid = ref.get("old_refresh_token"), ref.get("new_refresh_token"), res.get("client_id")
        if old and new and cid:
            # Reuse of a rotated refresh token is refused, and revokes the whole grant (RFC 9700 §4.14.2).
            r = token_post(dev, {"grant_type": "refresh_token", "refresh_token": old, "client_id": cid, "resource": dev.mcp_url})
            c.eq((r.status, _json_body(r).get("error")), (400, "invalid_grant"), f"replaying the rotated refresh token ({r.describe()})" if r.status != 400 else "replaying the rotated refresh token")
            r = token_post(dev, {"grant_type": "refresh_token", "refresh_token": new, "client_id": cid, "resource": dev.mcp_url})
            c.eq((r.status, _json_body(r).get("error")), (400, "invalid_grant"), "after the replay, the newest refresh token is revoked too" + ("" if r.status == 400 else f" ({r.describe()})"))


def scenario_i_ts_v2(env: R.Env, c: R.Checks) -> None:
    """TS SDK v2 against mcp-oauth dev: same flow, finishAuth(URLSearchParams) checks iss (RFC 9207), state, discovery state; refresh via auth()."""
    with dev_server(env, c, "dev-i") as dev:
        res = ts_v2(env, c, dev, "dev-ts-v2-authcode-refresh", REFRESH="1")
        c.note(f"client ran in {res['_seconds']}s; authorize params {sorted(res.get('authorize') or {})}")
        assert_authcode(dev, c, res, "ts-sdk-v2-interop")
        c.true(bool((res.get("authorize") or {}).get("state")), "v2 sent state")
        c.true(all(a.get("state_matches") for a in res.get("authorizations") or []), "callback state matched every time")
        c.eq([w for w in res.get("warnings") or [] if "mcp-sdk" in w], [], "SDK warnings")
        ref = assert_refresh(dev, c, res)
        c.eq(ref.get("outcome"), "AUTHORIZED", "auth() with a stored refresh token returns AUTHORIZED")


def _py_scenario(connect: str) -> Callable[[R.Env, R.Checks], None]:
    def run(env: R.Env, c: R.Checks) -> None:
        with dev_server(env, c, f"dev-j-{connect}") as dev:
            res = py(env, c, dev, f"dev-py-authcode-refresh-{connect}", connect, REFRESH="1")
            c.note(f"client ran in {res['_seconds']}s")
            R._assert_py_connect(R.Env(args=env.args, log_dir=env.log_dir, mcp_url=dev.mcp_url), c, res, connect)
            assert_authcode(dev, c, res, "py-sdk-interop")
            assert_refresh(dev, c, res)

    run.__doc__ = f"Python SDK against mcp-oauth dev, connect mode {connect!r}: code + PKCE + DCR with the login page; refresh when the SDK sees its token expired."
    return run


def _browser(env: R.Env, c: R.Checks, dev: DevServer, name: str, **flags: str) -> dict:
    chromium = env.args.chromium
    if not os.access(chromium, os.X_OK):
        raise R.Failure(f"{chromium} missing: setup.sh installs Debian's chromium (needs root), or set INTEROP_CHROMIUM")
    return run_peer(env, c, name, [env.args.node, os.path.join(R.PEERS, "browser-authorize.mjs"), dev.issuer, dev.mcp_url], {
        "CHROMIUM": chromium, "LOGIN_USER": DEV_USER, "LOGIN_PASSWORD": DEV_PASSWORD, "SCREENSHOT_DIR": env.log_dir, **flags,
    }, check=False)


def _form_post_probe(dev: DevServer, redirect: str, origin: str | None) -> str:
    """Diagnosis only: the login form POSTed over plain HTTP with a given Origin header."""
    reg = R.http("POST", f"{dev.issuer}/register", {"Content-Type": "application/json"}, json.dumps({
        "client_name": "origin-probe", "redirect_uris": [redirect], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"], "response_types": ["code"]}).encode())
    cid = _json_body(reg).get("client_id")
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    q = urllib.parse.urlencode({"response_type": "code", "client_id": cid, "redirect_uri": redirect, "scope": "mcp:read", "state": "probe",
                                "code_challenge": challenge, "code_challenge_method": "S256", "resource": dev.mcp_url})
    page = R.http("GET", f"{dev.issuer}/authorize?{q}")
    html = page.body.decode("utf-8", "replace")
    rid = re.search(r'name="request_id" value="([^"]+)"', html)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    cookie = (page.headers.get("set-cookie") or "").split(";")[0]
    if not (rid and csrf and cookie):
        return f"(no form: {page.describe()})"
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    if origin is not None:
        headers["Origin"] = origin
    form = urllib.parse.urlencode({"request_id": rid.group(1), "csrf": csrf.group(1), "username": DEV_USER, "password": DEV_PASSWORD, "decision": "approve"})
    r = R.http("POST", f"{dev.issuer}/authorize", headers, form.encode())
    return f"HTTP {r.status}" + (f" Location {r.headers.get('location', '')[:60]}…" if r.status in (302, 303) else "")


def _diagnose_browser_post(dev: DevServer, c: R.Checks, res: dict) -> None:
    posts = res.get("form_posts") or []
    if not posts:
        return
    p = posts[-1]
    c.note(f"Chromium's form POST: Origin {p.get('origin')!r}, Referer {p.get('referer')!r}, csrf cookie sent {p.get('csrf_cookie_sent')}, fields {p.get('fields')}")
    lp = res.get("login_page") or {}
    c.note(f"login page headers: Referrer-Policy {lp.get('referrer_policy')!r} (with 'no-referrer' browsers send 'Origin: null' on the form POST), CSP {lp.get('csp')!r}")
    redirect = res.get("redirect_uri") or redirect_uri()
    for origin in (None, p.get("origin"), dev.issuer):
        c.note(f"same form over plain HTTP with Origin {origin!r} (cookie + csrf right): {_form_post_probe(dev, redirect, origin)}")


def scenario_k1_browser_approve(env: R.Env, c: R.Checks) -> None:
    """Headless Chromium (playwright-core): DCR, authorize page shows client + scopes, wrong password then dev/dev, 'Sign in and allow' -> code/state/iss; token; whoami."""
    with dev_server(env, c, "dev-k1") as dev:
        name = "Interop Browser Client"
        res = _browser(env, c, dev, "dev-browser-approve", REDIRECT_URI=redirect_uri(), CLIENT_NAME=name, WRONG_PASSWORD="1", SCOPE="mcp:read mcp:write")
        c.note(f"browser run {res['_seconds']}s (Chromium {res.get('browser_version')}, launch {res.get('launch_ms')} ms)")
        c.eq((res.get("registration") or {}).get("status"), 201, "DCR status")
        page = res.get("login_page") or {}
        c.eq(page.get("status"), 200, "authorize page status")
        c.true(name in (page.get("title") or "") and name in (page.get("heading") or ""), f"page title/heading name the client: {page.get('title')!r} / {page.get('heading')!r}")
        c.true(name in (page.get("text") or ""), "page text names the client")
        c.eq(sorted(page.get("scopes") or []), ["mcp:read", "mcp:write"], "page lists the requested scopes")
        c.true(dev.mcp_url in (page.get("text") or ""), "page names the resource (MCP URL)")
        c.eq(page.get("form_action"), f"{dev.issuer}/authorize", "form action")
        cookie = next((x for x in res.get("cookies") or [] if x.get("name") == "mcp_oauth_csrf"), None)
        c.true(bool(cookie) and cookie.get("httpOnly") is True and cookie.get("sameSite") == "Strict", f"browser holds mcp_oauth_csrf HttpOnly SameSite=Strict: {res.get('cookies')}")
        wrong = res.get("wrong_password")
        if c.true(bool(wrong), "wrong-password attempt ran"):
            c.eq(wrong.get("status"), 400, "wrong password: status")
            c.true(bool(wrong.get("form_action")), f"wrong password: the login form is shown again (page: {wrong.get('heading')!r}: {(wrong.get('text') or '')[:160]!r})")
        cb = res.get("callback") or {}
        if c.true(bool(cb), "Chromium navigated to the redirect URI after 'Sign in and allow'" + (f" (stuck on {res.get('stuck_page')})" if res.get("stuck_page") else "")):
            c.eq(cb.get("code"), "(present)", "callback code")
            c.eq(cb.get("state"), res.get("state"), "callback state")
            c.eq(cb.get("iss"), dev.issuer, "callback iss (RFC 9207)")
            c.true(cb.get("navigation") is True, "the callback was a top-level navigation")
        tok = res.get("token") or {}
        if cb.get("code") and c.eq(tok.get("status"), 200, f"token exchange status ({tok})"):
            c.eq((tok.get("token_type") or "").lower(), "bearer", "token_type")
            c.eq((tok.get("header") or {}).get("typ"), "at+jwt", "access token typ")
            claims = tok.get("claims") or {}
            c.eq(claims.get("aud"), dev.mcp_url, "token aud")
            c.eq(claims.get("sub"), DEV_USER, "token sub")
            c.eq(res.get("whoami_status"), 200, "whoami over HTTP status")
            who = res.get("whoami") or {}
            c.eq((who.get("user") or {}).get("id"), DEV_USER, "whoami user.id")
            c.eq(who.get("client_id"), (res.get("registration") or {}).get("client_id"), "whoami client_id")
        if res.get("_rc") != 0:
            c.true(False, f"browser peer exited {res.get('_rc')}; log {res.get('_log')}:\n{R.indent((res.get('_output') or '')[-3000:])}")
        if c.failures:
            _diagnose_browser_post(dev, c, res)
            for line in res.get("console") or []:
                c.note(f"browser console: {line}")


def scenario_k2_browser_deny(env: R.Env, c: R.Checks) -> None:
    """Headless Chromium, redirect URI on localhost: 'Deny' -> redirect with error=access_denied, state, iss (and no code)."""
    with dev_server(env, c, "dev-k2") as dev:
        redirect = redirect_uri("localhost")
        res = _browser(env, c, dev, "dev-browser-deny", REDIRECT_URI=redirect, DECISION="deny", CLIENT_NAME="Interop Deny Client")
        c.note(f"browser run {res['_seconds']}s")
        page = res.get("login_page") or {}
        c.eq(page.get("status"), 200, "authorize page status")
        c.true("localhost" in (page.get("csp") or ""), f"CSP form-action lets the form redirect to localhost: {page.get('csp')!r}")
        cb = res.get("callback") or {}
        if c.true(bool(cb), "Chromium navigated to the localhost redirect URI after 'Deny'" + (f" (stuck on {res.get('stuck_page')})" if res.get("stuck_page") else "")):
            c.eq(cb.get("error"), "access_denied", "callback error")
            c.eq(cb.get("code"), None, "no code on deny")
            c.eq(cb.get("state"), res.get("state"), "callback state")
            c.eq(cb.get("iss"), dev.issuer, "callback iss (RFC 9207)")
        if res.get("_rc") != 0:
            c.true(False, f"browser peer exited {res.get('_rc')}; log {res.get('_log')}:\n{R.indent((res.get('_output') or '')[-3000:])}")
        if c.failures:
            _diagnose_browser_post(dev, c, res)


def scenario_l1_step_up_ts_v1(env: R.Env, c: R.Checks) -> None:
    """Step-up, TS SDK v1: admin_action -> 403 insufficient_scope scope="admin"; re-authorization with mcp:read mcp:write admin (SDK or explicit); retry succeeds."""
    with dev_server(env, c, "dev-l1") as dev:
        res = ts_v1(env, c, dev, "dev-ts-v1-step-up", STEP_UP="1")
        assert_authcode(dev, c, res, "ts-sdk-interop")
        assert_step_up(dev, c, res, expect_sdk_path=False)
        step = res.get("step_up") or {}
        if step.get("path") == "explicit":
            c.note("TS SDK 1.32.2 does not step up by itself here: on 403 it calls auth(), which refreshes the token (same scopes) "
                   "instead of re-authorizing, retries, gets the same 403 and throws; the peer then re-authorized explicitly")


def scenario_l2_step_up_ts_v2(env: R.Env, c: R.Checks) -> None:
    """Step-up, TS SDK v2 (SEP-2350): on 403 the SDK re-authorizes by itself with the scope union; finishAuth; retry succeeds."""
    with dev_server(env, c, "dev-l2") as dev:
        res = ts_v2(env, c, dev, "dev-ts-v2-step-up", STEP_UP="1")
        assert_authcode(dev, c, res, "ts-sdk-v2-interop")
        assert_step_up(dev, c, res, expect_sdk_path=True)


def scenario_l3_step_up_py(env: R.Env, c: R.Checks) -> None:
    """Step-up, Python SDK: on 403 the SDK re-authorizes within the same call (scope union) and the call succeeds."""
    with dev_server(env, c, "dev-l3") as dev:
        res = py(env, c, dev, "dev-py-step-up", "auto", STEP_UP="1")
        assert_authcode(dev, c, res, "py-sdk-interop")
        assert_step_up(dev, c, res, expect_sdk_path=True)


def scenario_m_cc(env: R.Env, c: R.Checks) -> None:
    """client_credentials: dev --client svc:svc-secret; TS SDK ClientCredentialsProvider (expectedIssuer) -> whoami shows client svc."""
    with dev_server(env, c, "dev-m", "--client", "svc:svc-secret") as dev:
        res = run_peer(env, c, "dev-ts-v1-cc", [env.args.node, os.path.join(R.PEERS, "ts-sdk-client.mjs"), dev.mcp_url], {
            "MODE": "cc", "AS_ISSUER": dev.issuer, "SCOPE": "mcp:read mcp:write", "CLIENT_ID": "svc", "CLIENT_SECRET": "svc-secret",
        })
        c.note(f"client ran in {res['_seconds']}s")
        R._assert_tools_and_echo(c, res)
        who, claims = res.get("whoami") or {}, res.get("token_claims") or {}
        c.eq(claims.get("aud"), dev.mcp_url, "token aud")
        c.eq(claims.get("iss"), dev.issuer, "token iss")
        c.eq(claims.get("client_id"), "svc", "token client_id")
        c.eq(set((claims.get("scope") or "").split()), BASE_SCOPES, "token scope")
        c.eq(who.get("client_id"), "svc", "whoami client_id")
        c.eq(who.get("issuer"), dev.issuer, "whoami issuer")
        c.eq(sorted(who.get("scopes") or []), sorted(BASE_SCOPES), "whoami scopes")
        c.eq((who.get("user") or {}).get("id"), claims.get("sub"), "whoami user.id == token sub")
        grants = [t for t in res.get("token_requests") or [] if t.get("grant_type") == "client_credentials"]
        if c.true(bool(grants), f"a client_credentials token request was seen: {res.get('token_requests')}"):
            c.eq(grants[0].get("resource"), dev.mcp_url, "token request resource")
        c.note(f"cc token sub {claims.get('sub')!r}")


def scenario_n_negative(env: R.Env, c: R.Checks) -> None:
    """The --json token works over plain HTTP; a token for another resource is refused (invalid_target); tampered / alg=none / no token -> 401."""
    with dev_server(env, c, "dev-n", "--client", "svc:svc-secret") as dev:
        info = dev.info
        c.eq(info.get("issuer") + "/mcp", info.get("mcp_url"), "JSON line: mcp_url is the issuer + /mcp")
        c.eq(info.get("data_dir"), dev.data_dir, "JSON line: data_dir")
        c.eq(info.get("users"), [DEV_USER], "JSON line: users")
        tok = info.get("token") or ""
        r = mcp_call(dev, tok, "whoami")
        if c.eq(r.status, 200, "tools/call whoami with the --json token: status" + ("" if r.status == 200 else f" ({r.describe()})")):
            who = tool_json(r)
            c.eq((who.get("user") or {}).get("id"), DEV_USER, "--json token: whoami user.id")
            c.eq(sorted(who.get("scopes") or []), sorted(BASE_SCOPES), "--json token: whoami scopes")
            c.eq(who.get("issuer"), dev.issuer, "--json token: whoami issuer")

        other = "http://127.0.0.1:1/mcp"
        r = token_post(dev, {"grant_type": "client_credentials", "resource": other, "scope": "mcp:read"}, basic=("svc", "svc-secret"))
        c.eq((r.status, _json_body(r).get("error")), (400, "invalid_target"), f"client_credentials for resource {other}" + ("" if r.status == 400 else f" ({r.describe()})"))
        r = token_post(dev, {"grant_type": "client_credentials", "resource": dev.mcp_url, "scope": "mcp:read"}, basic=("svc", "svc-secret"))
        c.eq(r.status, 200, "control: client_credentials for the MCP URL" + ("" if r.status == 200 else f" ({r.describe()})"))

        head, payload, sig = (tok.split(".") + ["", "", ""])[:3]
        claims = b64json(payload) if payload else {}
        enc = lambda o: base64.urlsafe_b64encode(json.dumps(o, separators=(",", ":")).encode()).rstrip(b"=").decode()  # noqa: E731
        flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1] if len(sig) > 2 else "x"
        cases = [
            ("tampered payload (sub -> admin, scope + admin)", f"{head}.{enc({**claims, 'sub': 'admin', 'scope': 'mcp:read mcp:write admin'})}.{sig}"),
            ("tampered signature", f"{head}.{payload}.{flipped}"),
            ("alg none", f"{enc({'alg': 'none', 'typ': 'at+jwt'})}.{payload}."),
            ("garbage", "not-a-jwt"),
        ]
        for what, bad in cases:
            r = mcp_call(dev, bad, "whoami")
            c.eq(r.status, 401, f"{what}: status" + ("" if r.status == 401 else f" ({r.describe()})"))
            wa = r.header_all("WWW-Authenticate")
            if c.eq(len(wa), 1, f"{what}: one WWW-Authenticate ({wa})"):
                scheme, params = R.parse_challenge(wa[0])
                c.eq((scheme, params.get("error")), ("Bearer", "invalid_token"), f"{what}: challenge ({wa[0]})")
                c.eq(params.get("resource_metadata"), dev.prm_url, f"{what}: resource_metadata")
        r = mcp_call(dev, None, "whoami")
        c.eq(r.status, 401, "no token: status")
        wa = r.header_all("WWW-Authenticate")
        c.eq(wa, [f'Bearer resource_metadata="{dev.prm_url}", scope="mcp:read mcp:write"'], "no token: challenge")


def _standalone(fn: Callable[[R.Env, R.Checks], None]) -> Callable[[R.Env, R.Checks], None]:
    fn.standalone = True  # type: ignore[attr-defined]  # needs no shared servers (scenario a)
    return fn


SCENARIOS: list[tuple[str, Callable[[R.Env, R.Checks], None]]] = [
    (name, _standalone(fn))
    for name, fn in [
        ("h-dev-ts-sdk-v1-login-refresh", scenario_h_ts_v1),
        ("i-dev-ts-sdk-v2-login-refresh", scenario_i_ts_v2),
        ("j1-dev-py-sdk-login-refresh-auto", _py_scenario("auto")),
        ("j2-dev-py-sdk-login-refresh-legacy", _py_scenario("legacy")),
        ("k1-dev-browser-chromium-approve", scenario_k1_browser_approve),
        ("k2-dev-browser-chromium-deny-localhost", scenario_k2_browser_deny),
        ("l1-dev-step-up-ts-sdk-v1", scenario_l1_step_up_ts_v1),
        ("l2-dev-step-up-ts-sdk-v2", scenario_l2_step_up_ts_v2),
        ("l3-dev-step-up-py-sdk", scenario_l3_step_up_py),
        ("m-dev-ts-sdk-client-credentials", scenario_m_cc),
        ("n-dev-negative-tokens", scenario_n_negative),
    ]
]
