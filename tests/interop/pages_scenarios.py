"""Scenarios pg1–pg2: the gateway's own pages in headless Chromium. Part of runner.py (standard
library only).

- pg1: the token page of `credentials = { kind = "user-secret" }` (`/gateway/secrets/NAME`) in
  front of peers/recording-upstream.mjs (which records every request's headers and body): the
  browser (peers/secret-page.mjs) signs in through the gateway's pages, pastes a token, and the
  user's next MCP call reaches the upstream with it, while another user's call does not; the
  form posted without the form token or from another origin is refused; deleting the token
  brings the link back.
- pg2: the pages' sign-in with `--login oidc` (proxy mode) against oidc-provider
  (peers/oidc-upstream.mjs): a browser (peers/login-pages.mjs) opens an approval link, is sent
  through the provider's sign-in, lands signed in on the page and approves; the gateway's index
  then names the provider's user in the same session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable

import dev_scenarios as D
import gateway_scenarios as G
import proxy_scenarios as P
import runner as R  # the running runner.py (aliased in sys.modules before this import)
import user_oauth_scenarios as U

RECORDING = os.path.join(R.PEERS, "recording-upstream.mjs")
ACTION_REQUIRED = -32042
SECRET_UPSTREAM = "notes"
SECRET_PATTERN = "pat_[a-z0-9]{24}"
OTHER_USER, OTHER_PASSWORD = "bob", "bob-password"
REFUSED = "This form cannot be accepted"  # the title of the page a refused form gets


# --------------------------------------------------------------------------- helpers


def sign_in_raw(origin: str, mcp_url: str, user: str, password: str) -> str:
    """A user's gateway token through the embedded authorization server, by plain HTTP: a
    registered public client, the login page's form, the code with PKCE."""
    browser = P.Browser()
    redirect = D.redirect_uri()
    verifier, challenge = P.pkce()
    client_id = P.register(origin, f"pages-interop-{user}", redirect, browser)
    page = browser.send("GET", P.authorize_url(origin, client_id, redirect, challenge, mcp_url, f"state-{user}"))
    html = page.body.decode("utf-8", "replace")
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
    if page.status != 200 or not fields:
        raise R.Failure(f"{user}: no login page at {origin}/authorize: {page.describe()}")
    r = browser.send("POST", f"{origin}/authorize", fields + [("username", user), ("password", password), ("decision", "approve")])
    loc = r.headers.get("Location") or ""
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
    if r.status not in (302, 303) or not q.get("code"):
        raise R.Failure(f"{user}: the login form did not redirect with a code: {r.describe()}")
    tok = P.form_post(f"{origin}/token", {"grant_type": "authorization_code", "code": q["code"], "client_id": client_id,
                                          "redirect_uri": redirect, "code_verifier": verifier, "resource": mcp_url})
    if tok.status != 200:
        raise R.Failure(f"{user}: code exchange: {tok.describe()}")
    return json.loads(tok.body)["access_token"]


def call(s: U._RawSession, tool: str, args: dict) -> dict:
    """One tools/call; its status, the text of its result, or its error."""
    s.rid += 1
    status, msg = s.post({"jsonrpc": "2.0", "id": s.rid, "method": "tools/call", "params": {"name": tool, "arguments": args}})
    result = (msg or {}).get("result") or {}
    return {"status": status, "text": "".join(x.get("text", "") for x in result.get("content") or []) if result else None,
            "error": (msg or {}).get("error"), "isError": result.get("isError", False)}


def link_error(c: R.Checks, err: dict | None, link: str, what: str) -> None:
    """A JSON-RPC -32042 error whose URL-mode elicitation is `link`."""
    err = err or {}
    c.eq(err.get("code"), ACTION_REQUIRED, f"{what}: JSON-RPC error code ({json.dumps(err)[:400]})")
    elicitations = (err.get("data") or {}).get("elicitations") or [{}]
    c.eq((elicitations[0].get("mode"), elicitations[0].get("url")), ("url", link), f"{what}: data.elicitations[0] is the page's link")


def _bodies_with(record: list[dict], marker: str) -> list[dict]:
    return [e for e in record if marker in (e.get("body") or "")]


# --------------------------------------------------------------------------- pg1: the token page


def scenario_pg1_secret_page(env: R.Env, c: R.Checks) -> None:
    """user-secret's token page in headless Chromium: sign in through the gateway's pages, paste a token; the user's next call reaches the upstream with it, another user's does not; the form without its form token or from another origin is refused; deleting it brings the link back."""
    tmp = tempfile.mkdtemp(prefix="interop-pg1-")
    record = os.path.join(tmp, "upstream.jsonl")
    c.logs.append(record)
    up_port = R.free_port()
    upstream = env.start("pg1-upstream", [env.args.node, RECORDING], {"PORT": str(up_port), "RECORD_OUT": record}, shared=False)
    c.logs.append(upstream.log_path)
    config = os.path.join(tmp, "gateway.toml")
    with open(config, "w") as f:
        f.write(f"""[[upstream]]
name = "{SECRET_UPSTREAM}"
url = "http://127.0.0.1:{up_port}/mcp"
credentials = {{ kind = "user-secret", pattern = "{SECRET_PATTERN}" }}
""")
    secret = "pat_" + os.urandom(12).hex()
    files = {k: os.path.join(tmp, k) for k in ("saved", "go")}
    threads: list[threading.Thread] = []
    out: dict[str, Any] = {}
    try:
        R.wait_ready(upstream, f"http://127.0.0.1:{up_port}/healthz")
        port = R.free_port()
        with U._instance(env, c, "pg1-gateway", port, ["--json", "--store", "memory", "--data-dir", os.path.join(tmp, "data"),
                                                      "--user", f"{D.DEV_USER}:{D.DEV_PASSWORD}", "--user", f"{OTHER_USER}:{OTHER_PASSWORD}",
                                                      "--config", config]) as gw:
            origin = f"http://127.0.0.1:{port}"
            link = f"{origin}/gateway/secrets/{SECRET_UPSTREAM}"
            host = f"127.0.0.1:{port}"
            t0 = time.monotonic()
            # Before: the user's first call gets the page's link; nothing reaches the upstream.
            dev = U._RawSession(port, host, gw.info.get("token") or "")
            _, init = dev.initialize()
            link_error(c, (init or {}).get("error"), link, "dev's initialize before any token")
            c.eq(G.read_record(record), [], "before any token nothing reached the upstream")
            attacker_origin = f"http://127.0.0.1:{R.free_port()}"  # nothing listens: Playwright answers for it
            tb = threading.Thread(target=lambda: out.update(browser=U._catch(lambda: D.run_peer(
                env, c, "pg1-chromium", [env.args.node, os.path.join(R.PEERS, "secret-page.mjs"), link],
                {"LOGIN_USER": D.DEV_USER, "LOGIN_PASSWORD": D.DEV_PASSWORD, "SECRET": secret, "BAD_SECRET": "pat_TOO-SHORT",
                 "ATTACKER_ORIGIN": attacker_origin, "SAVED": files["saved"], "GO": files["go"], "CHROMIUM": env.args.chromium}))))
            tb.start()
            threads.append(tb)
            problem: R.Failure | None = None
            calls: dict[str, Any] = {}
            try:
                U._wait_file(files["saved"], threads, "the browser's saved token")
                t_saved = time.monotonic()
                # The user's next session and call: the upstream sees the pasted token.
                dev = U._RawSession(port, host, gw.info.get("token") or "")
                calls["dev_init"] = dev.initialize()
                calls["dev_echo"] = call(dev, "echo", {"text": "pg1 call of dev"})
                # Another user, signed in, without a token of their own: the link, nothing upstream.
                bob = U._RawSession(port, host, sign_in_raw(origin, gw.mcp_url, OTHER_USER, OTHER_PASSWORD))
                calls["bob_init"] = bob.initialize()
                calls["bob_echo"] = call(bob, "echo", {"text": "pg1 call of bob"})
                U._touch(files["go"])
                tb.join(timeout=R.CLIENT_TIMEOUT)
                # Deleted: the same session's next call gets the link again.
                calls["dev_after_delete"] = call(dev, "echo", {"text": "pg1 call of dev after the deletion"})
            except R.Failure as e:
                problem = e
            finally:
                U._touch(files["go"])
                for t in threads:
                    t.join()
            t_end = time.monotonic()
            if isinstance(out.get("browser"), BaseException):
                raise R.Failure(f"{problem or ''}\nbrowser: {out['browser']}")
            if problem:
                raise problem
            c.note(f"browser sign-in and paste {t_saved - t0:.2f}s; the calls and the deletion {t_end - t_saved:.2f}s")
            _assert_pg1(c, out["browser"], calls, G.read_record(record), link, secret, attacker_origin)
            c.true(secret not in gw.proc.log_text(), "the pasted token is in no line of the gateway's log")
    finally:
        if os.path.isdir(tmp):
            U._touch(files["go"])
        upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _assert_pg1(c: R.Checks, b: dict, calls: dict, record: list[dict], link: str, secret: str, attacker_origin: str) -> None:
    # The browser: the sign-in, the page before, a refused value, the token saved.
    c.true(str(b.get("sign_in_url", "")).endswith("/authorize"), f"without a session the browser signs in first: {b.get('sign_in_url')}")
    before = b.get("before") or {}
    c.eq(before.get("url"), link, "after signing in the browser is back on the page")
    c.true(str(before.get("status")).startswith("Not set"), f"the page says Not set: {before.get('status')!r}")
    c.true(SECRET_UPSTREAM in str(before.get("heading")), f"the page names the upstream: {before.get('heading')!r}")
    cookie = [k for k in b.get("cookies") or [] if k.get("name") == "mcp_gateway_session"]
    c.true(bool(cookie) and cookie[0].get("httpOnly") and cookie[0].get("sameSite") == "Lax", f"the session cookie is HttpOnly, SameSite=Lax: {b.get('cookies')}")
    bad = b.get("bad") or {}
    c.eq(bad.get("http"), 400, "a value not matching the pattern: HTTP 400")
    c.true("expected form" in str(bad.get("notice")) and str(bad.get("status")).startswith("Not set"),
           f"a value not matching the pattern: refused, nothing saved ({bad.get('notice')!r}, {bad.get('status')!r})")
    saved = b.get("saved") or {}
    c.eq((saved.get("http"), saved.get("notice")), (200, "Saved."), "the token: saved")
    c.true(str(saved.get("status")).startswith("Set on"), f"the page now says Set on: {saved.get('status')!r}")
    c.true("Delete it" in (saved.get("buttons") or []), f"a Delete button: {saved.get('buttons')}")
    c.eq(saved.get("secret_in_page"), False, "the token is not shown again in the page")

    # The attacker side: refused, and the token still set.
    attacks = b.get("attacks") or {}
    for name in ("no_form_token", "made_up_form_token"):
        got = attacks.get(name) or {}
        c.eq((got.get("http"), got.get("title")), (403, REFUSED), f"the page's delete form sent with {name.replace('_', ' ')}: refused")
    cross = attacks.get("other_origin") or {}
    c.eq((cross.get("http"), cross.get("title")), (403, REFUSED), f"the delete form with the real form token posted from {attacker_origin}: refused")
    c.eq(cross.get("origin"), attacker_origin, "that post carried the other origin")
    c.true(cross.get("cookie_sent") is True, f"the session cookie went with it (same site, SameSite=Lax): refused for its origin alone ({cross.get('sec_fetch_site')})")
    c.true(str((b.get("after_attacks") or {}).get("status")).startswith("Set on"), f"after the refused posts the token is still set: {b.get('after_attacks')}")

    # The calls: dev's reaches the upstream with the token; bob's gets the link and reaches nothing.
    status, init = calls.get("dev_init") or (None, None)
    c.true(status == 200 and bool((init or {}).get("result")), f"dev's initialize after the paste: {json.dumps(init)[:300]}")
    echo = calls.get("dev_echo") or {}
    c.eq(echo.get("text"), "pg1 call of dev", f"dev's echo: {json.dumps(echo)[:300]}")
    seen = _bodies_with(record, "pg1 call of dev\"")
    if c.eq(len(seen), 1, f"dev's call reached the upstream once ({len(seen)})"):
        c.eq((seen[0].get("headers") or {}).get("authorization"), f"Bearer {secret}", "the upstream got dev's call with the pasted token")
    _, bob_init = calls.get("bob_init") or (None, None)
    link_error(c, (bob_init or {}).get("error"), link, "bob's initialize (no token of his own)")
    bob_echo = calls.get("bob_echo") or {}
    c.true(bool(bob_echo.get("error")) and bob_echo.get("text") is None, f"bob's call is refused: {json.dumps(bob_echo)[:300]}")
    c.eq(_bodies_with(record, "pg1 call of bob"), [], "nothing of bob's reached the upstream")
    with_token = [e for e in record if secret in json.dumps(e.get("headers") or {})]
    c.true(all("of bob" not in (e.get("body") or "") for e in with_token), "no request with dev's token carried bob's call")

    # The deletion: the page says so, and the next call gets the link again.
    deleted = b.get("deleted") or {}
    c.eq((deleted.get("http"), deleted.get("notice")), (200, "Deleted."), "Delete it: the page says Deleted.")
    c.true(str(deleted.get("status")).startswith("Not set"), f"after the deletion the page says Not set: {deleted.get('status')!r}")
    after = calls.get("dev_after_delete") or {}
    link_error(c, after.get("error"), link, "dev's call after the deletion")
    c.eq(_bodies_with(record, "after the deletion"), [], "the call after the deletion reached nothing")
    c.note(f"the upstream got {len(record)} requests, {len(with_token)} with the pasted token")


# --------------------------------------------------------------------------- pg2: the pages' sign-in through a provider


def scenario_pg2_login_through_provider(env: R.Env, c: R.Checks) -> None:
    """--login oidc (proxy mode, oidc-provider as the identity provider): a call waits for approval; Chromium opens the approval page, is sent through the gateway's /authorize and the provider's sign-in, lands signed in on the page and approves; the identical call passes; /gateway names the provider's user."""
    tmp = tempfile.mkdtemp(prefix="interop-pg2-")
    policy = os.path.join(tmp, "policy.toml")
    with open(policy, "w") as f:
        f.write('[[policy.rule]]\nid = "all"\ntools = ["*"]\n\n[[policy.approve]]\nid = "echo-approved"\ntools = ["echo"]\n')
    port = R.free_port()
    origin = f"http://127.0.0.1:{port}"
    provider = P.OidcUpstream(env, c, "pg2-provider", f"{origin}/oauth/callback")
    try:
        with U._instance(env, c, "pg2-gateway", port, [
                "--json", "--store", "memory", "--data-dir", os.path.join(tmp, "data"),
                "--login", "oidc", "--issuer", provider.issuer, "--client-id", P.UPSTREAM_CLIENT_ID, "--client-secret", P.UPSTREAM_SECRET,
                "--policy", policy, "--", env.args.node, G.EVERYTHING, "stdio"]) as gw:
            c.eq(gw.info.get("token"), None, "with --login no banner token (every user is the provider's)")
            t0 = time.monotonic()
            # A client's token, through the provider by plain HTTP (as the proxy scenarios do).
            browser = P.Browser()
            redirect = D.redirect_uri()
            verifier, challenge = P.pkce()
            client_id = P.register(origin, "pg2-client", redirect, browser)
            cb = browser.follow(P.authorize_url(origin, client_id, redirect, challenge, gw.mcp_url), redirect)
            code = dict(urllib.parse.parse_qsl(cb.query)).get("code", "")
            tok = P.form_post(f"{origin}/token", {"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                                  "redirect_uri": redirect, "code_verifier": verifier, "resource": gw.mcp_url})
            if tok.status != 200:
                raise R.Failure(f"the client's code exchange: {tok.describe()}")
            token = json.loads(tok.body)["access_token"]
            authorizations_before = len([r for r in provider.records() if r.get("kind") == "authorize"])
            got, init = G._mcp_post(gw.mcp_url, token, None, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {"url": {}}}, "clientInfo": {"name": "pg2", "version": "1"}}})
            session = got.get("mcp-session-id")
            c.true(bool(init and init.get("result")), f"initialize with the provider user's gateway token: {init}")
            G._mcp_post(gw.mcp_url, token, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            echo = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "approved after the provider"}}}
            _, waiting = _mcp_post_or_fail(gw.mcp_url, token, session, echo)
            error = (waiting or {}).get("error") or {}
            c.eq(error.get("code"), ACTION_REQUIRED, f"the call waits for approval: {waiting}")
            link = (((error.get("data") or {}).get("elicitations") or [{}])[0]).get("url") or ""
            if not c.true(link.startswith(f"{origin}/gateway/approve?ticket="), f"the link is the gateway's approval page: {link!r}"):
                return
            t_link = time.monotonic()
            res = D.run_peer(env, c, "pg2-chromium", [env.args.node, os.path.join(R.PEERS, "login-pages.mjs"), link], {"CHROMIUM": env.args.chromium})
            t_browser = time.monotonic()
            _, passed = _mcp_post_or_fail(gw.mcp_url, token, session, echo)
            content = ((passed or {}).get("result") or {}).get("content") or [{}]
            c.eq(content[0].get("text"), "Echo: approved after the provider", f"the identical call passes: {passed}")
            c.note(f"the client's token {t_link - t0:.2f}s; Chromium through the provider and the approval {t_browser - t_link:.2f}s")
            _assert_pg2(c, res, link, origin, provider, authorizations_before)
    finally:
        provider.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _mcp_post_or_fail(url: str, token: str, session: str | None, body: dict) -> tuple[dict[str, str], dict | None]:
    try:
        return G._mcp_post(url, token, session, body)
    except OSError as e:  # urllib's HTTPError included
        raise R.Failure(f"POST {url} {body.get('method')}: {e}") from None


def _assert_pg2(c: R.Checks, res: dict, link: str, origin: str, provider: P.OidcUpstream, authorizations_before: int) -> None:
    nav = [n.split(" ", 1)[1] for n in res.get("navigations") or []]
    at_authorize = [u for u in nav if u.startswith(f"{origin}/authorize?")]
    at_provider = [u for u in nav if u.startswith(provider.issuer)]
    at_callback = [u for u in nav if u.startswith(f"{origin}/oauth/callback?")]
    c.true(bool(at_authorize) and "client_id=mcp-oauth-gateway-pages" in at_authorize[0],
           f"the browser went to the gateway's /authorize as the pages' client: {nav}")
    c.true(bool(at_provider), f"then to the provider ({provider.issuer}): {nav}")
    c.true(bool(at_callback), f"then back to the gateway's /oauth/callback: {nav}")
    if at_authorize and at_provider and at_callback:
        i = nav.index(at_callback[0])
        c.true(nav.index(at_authorize[0]) < nav.index(at_provider[0]) < i and link in nav[i:],
               f"in that order, then back on the link: {nav}")
    c.true(res.get("back_on_link") is True, "the browser landed on the approval link")
    c.note(f"consent pages approved on the way: {res.get('consent_pages')}; {len(nav)} navigations")
    authz = [r.get("params") or {} for r in provider.records() if r.get("kind") == "authorize"][authorizations_before:]
    if c.eq(len(authz), 1, "the browser's sign-in: one authorization at the provider"):
        c.eq((authz[0].get("client_id"), authz[0].get("redirect_uri"), authz[0].get("code_challenge_method")),
             (P.UPSTREAM_CLIENT_ID, f"{origin}/oauth/callback", "S256"), "at the provider: the gateway's client, its callback, PKCE")
    page = res.get("page") or {}
    c.eq((page.get("tool"), page.get("arguments")), ("echo", '{"message":"approved after the provider"}'), "the approval page names the call")
    cookie = [k for k in res.get("cookies") or [] if k.get("name") == "mcp_gateway_session"]
    c.true(bool(cookie) and cookie[0].get("httpOnly") and cookie[0].get("sameSite") == "Lax", f"the session cookie is HttpOnly, SameSite=Lax: {res.get('cookies')}")
    c.eq((res.get("answer") or {}).get("heading"), "Approved", "the answer page")
    index = res.get("index") or {}
    c.eq((index.get("status"), index.get("url")), (200, f"{origin}/gateway"), "the index in the same session (no second sign-in)")
    text = index.get("text") or ""
    c.true(P.OIDC_USER["email"] in text or P.OIDC_USER["sub"] in text, f"the index names the provider's user: {text[:300]!r}")


def _standalone(fn: Callable[[R.Env, R.Checks], None]) -> Callable[[R.Env, R.Checks], None]:
    fn.standalone = True  # type: ignore[attr-defined]  # needs no shared servers (scenario a)
    return fn


SCENARIOS: list[tuple[str, Callable[[R.Env, R.Checks], None]]] = [
    ("pg1-gw-user-secret-page-chromium", _standalone(scenario_pg1_secret_page)),
    ("pg2-gw-pages-sign-in-through-provider-chromium", _standalone(scenario_pg2_login_through_provider)),
]
