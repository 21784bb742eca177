"""Scenarios dpop1–dpop5: DPoP (RFC 9449) end to end with third-party code. Part of runner.py
(standard library only).

The client is panva's oauth4webapi (peers/dpop-client.mjs): it makes every proof, keeps the
server's nonces and retries on `use_dpop_nonce` as the library intends. Against
oidc-provider issuing DPoP-bound tokens (peers/oidc-as.mjs, its `dPoP` feature) with
`mcp-oauth serve --dpop …` as the resource server (dpop1, dpop2), against our own
authorization server, `mcp-oauth dev --dpop …` (dpop3, dpop4), and through `mcp-oauth gateway
--issuer <oidc-provider> --dpop …` in front of a plain MCP server of the TypeScript SDK that
records what reaches it (dpop5). Each scenario then plays the
thief holding the token: proofs made by oauth4webapi for another URL, another token, a clock ten
minutes behind, another key, a proof replayed as seen on the wire, no proof, and the token as
Bearer; each answer is checked to the byte.

Every scenario starts its own servers on free 127.0.0.1 ports and stops them at its end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.parse
from typing import Callable, Iterator

import runner as R  # the running runner.py (aliased in sys.modules before this import)

SCOPES = "mcp:read mcp:write"
BOUND_AS_BEARER = "the access token is bound to a key (cnf.jkt): present it with the DPoP scheme and a DPoP proof"
DPOP_ONLY = "this resource accepts DPoP-bound tokens only: present the token with the DPoP scheme and a DPoP proof"
# What each of the thief's proofs is refused with (DpopError::public_description).
REFUSALS = {
    "replayed": "the DPoP proof was already used",
    "wrong_htu": "the DPoP proof's htu does not match the request URL",
    "wrong_ath": "the DPoP proof's ath does not match the access token",
    "stale": "the DPoP proof is too old",
    "other_key": "the DPoP proof's key is not the key the access token is bound to",
    "no_proof": "a DPoP proof is required",
}
USE_NONCE = "the DPoP proof must carry the server's current nonce"


# --------------------------------------------------------------------------- servers


def _stdout_json(path: str, proc: R.Proc) -> dict:
    """The first stdout line of a server that prints one JSON line, polled with a deadline."""
    t0 = time.monotonic()
    while True:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        if "\n" in text:
            return json.loads(text.split("\n", 1)[0])
        if not proc.alive():
            raise R.Failure(f"{proc.name} exited {proc.popen.returncode} before printing its JSON line")
        if time.monotonic() - t0 > R.READY_DEADLINE:
            raise R.Failure(f"{proc.name} printed no JSON line within {R.READY_DEADLINE:.0f}s")
        time.sleep(0.02)  # poll interval, bounded by the deadline above


@contextlib.contextmanager
def oidc_provider(env: R.Env, c: R.Checks, name: str, nonce: bool) -> Iterator[str]:
    """peers/oidc-as.mjs (oidc-provider, DPoP on; DPOP_NONCE=1 requires nonces at /token)."""
    port = R.free_port()
    issuer = f"http://127.0.0.1:{port}"
    extra = {"PORT": str(port), "SCOPES": "mcp:read mcp:write admin"}
    if nonce:
        extra["DPOP_NONCE"] = "1"
    proc = env.start(name, [env.args.node, os.path.join(R.PEERS, "oidc-as.mjs")], extra, shared=False)
    c.logs.append(proc.log_path)
    try:
        R.wait_ready(proc, f"{issuer}/.well-known/openid-configuration")
        yield issuer
    finally:
        proc.stop()


@contextlib.contextmanager
def serve(env: R.Env, c: R.Checks, name: str, issuer: str, *flags: str) -> Iterator[str]:
    """`mcp-oauth serve --issuer <oidc-provider> --dpop …`; yields the MCP URL."""
    port = R.free_port()
    mcp_url = f"http://127.0.0.1:{port}/mcp"
    argv = [env.args.dev_bin, "serve", "--issuer", issuer, "--mcp-url", mcp_url, "--scopes", SCOPES, *flags]
    proc = env.start(name, argv, {"MCP_OAUTH_LOG": os.environ.get("MCP_OAUTH_LOG", "info,mcp_oauth=debug")}, shared=False)
    c.logs.append(proc.log_path)
    try:
        R.wait_ready(proc, f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp")
        c.note(f"{name}: {' '.join(flags)}")
        yield mcp_url
    finally:
        proc.stop()


@contextlib.contextmanager
def dev(env: R.Env, c: R.Checks, name: str, *flags: str) -> Iterator[dict]:
    """`mcp-oauth dev --auto-approve --dpop …` (store in memory); yields its JSON line."""
    tmp = tempfile.mkdtemp(prefix="interop-dpop-")
    stdout = os.path.join(env.log_dir, f"{name}.stdout")
    argv = [env.args.dev_bin, "dev", "--port", "0", "--data-dir", os.path.join(tmp, "data"), "--json", "--store", "memory",
            "--auto-approve", *flags]
    proc = env.start(name, argv, {"MCP_OAUTH_LOG": os.environ.get("MCP_OAUTH_LOG", "info,mcp_oauth=debug")}, stdout_path=stdout, shared=False)
    c.logs.append(proc.log_path)
    try:
        info = _stdout_json(stdout, proc)
        R.wait_ready(proc, _prm_url(info["mcp_url"]))
        c.note(f"{name}: {' '.join(flags)}")
        yield info
    finally:
        proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def gateway(env: R.Env, c: R.Checks, name: str, issuer: str, *flags: str) -> Iterator[tuple[str, str]]:
    """peers/recording-upstream.mjs (the TS SDK's Streamable HTTP server, no authentication)
    behind `mcp-oauth gateway --issuer <issuer> --upstream … --dpop …`; yields the gateway's
    MCP URL and the file of the upstream's recorded requests."""
    tmp = tempfile.mkdtemp(prefix="interop-dpop-gw-")
    seen = os.path.join(tmp, "upstream-requests.jsonl")
    port = R.free_port()
    upstream = env.start(f"{name}-upstream", [env.args.node, os.path.join(R.PEERS, "recording-upstream.mjs")],
                         {"PORT": str(port), "RECORD_OUT": seen}, shared=False)
    c.logs.append(upstream.log_path)
    stdout = os.path.join(env.log_dir, f"{name}.stdout")
    argv = [env.args.dev_bin, "gateway", "--port", "0", "--json", "--store", "memory", "--data-dir", os.path.join(tmp, "data"),
            "--issuer", issuer, "--scopes", SCOPES, "--upstream", f"http://127.0.0.1:{port}/mcp", *flags]
    proc = None
    try:
        R.wait_ready(upstream, f"http://127.0.0.1:{port}/healthz")
        proc = env.start(name, argv, {"MCP_OAUTH_LOG": os.environ.get("MCP_OAUTH_LOG", "info,mcp_oauth=debug")}, stdout_path=stdout, shared=False)
        c.logs.append(proc.log_path)
        info = _stdout_json(stdout, proc)
        R.wait_ready(proc, _prm_url(info["mcp_url"]))
        c.note(f"{name}: {' '.join(flags)}")
        yield info["mcp_url"], seen
    finally:
        if proc is not None:
            proc.stop()
        upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _prm_url(mcp_url: str) -> str:
    origin = urllib.parse.urlsplit(mcp_url).netloc
    return f"http://{origin}/.well-known/oauth-protected-resource/mcp"


# --------------------------------------------------------------------------- the client


def oauth4webapi(env: R.Env, c: R.Checks, name: str, mcp_url: str, **flags: str) -> dict:
    res = env.run_client(name, [env.args.node, os.path.join(R.PEERS, "dpop-client.mjs"), mcp_url], {"ATTACKS": "1", **flags})
    c.logs.append(res.get("_log") or os.path.join(env.log_dir, f"client-{name}.log"))
    c.note(f"{name} ran in {res['_seconds']}s; nonce retries {res.get('nonce_retries')}")
    return res


def _metadata(c: R.Checks, mcp_url: str, required: bool) -> str:
    """The protected-resource metadata's DPoP members; returns the challenge's `algs`."""
    prm = json.loads(R.http("GET", _prm_url(mcp_url)).body)
    algs = prm.get("dpop_signing_alg_values_supported") or []
    c.true("ES256" in algs, f"dpop_signing_alg_values_supported lists ES256 (oauth4webapi's key): {algs}")
    c.true(not any(a.startswith("HS") or a == "none" for a in algs), f"no symmetric algorithm or none: {algs}")
    c.eq(prm.get("dpop_bound_access_tokens_required"), required, "dpop_bound_access_tokens_required")
    return " ".join(algs)


def assert_bound_and_used(c: R.Checks, res: dict, *, issuer: str, mcp_url: str, token_url: str) -> None:
    """The token is bound to the client's key, and every MCP request carried a fresh proof."""
    jkt, claims = res.get("jkt"), res.get("token_claims") or {}
    c.eq(res.get("token_type"), "dpop", "token_type (oauth4webapi lowercases it)")
    c.eq((claims.get("cnf") or {}).get("jkt"), jkt, "access token cnf.jkt == the thumbprint of oauth4webapi's key")
    c.eq(claims.get("iss"), issuer, "access token iss")
    c.eq(claims.get("aud"), mcp_url, "access token aud")
    ex = res.get("exchanges") or []
    token_ok = [e for e in ex if e.get("url") == token_url and e.get("status") == 200]
    if c.true(bool(token_ok), f"a successful token request: {[(e.get('url'), e.get('status')) for e in ex]}"):
        proof = token_ok[0].get("dpop") or {}
        c.eq((proof.get("header") or {}).get("typ"), "dpop+jwt", "token request proof typ")
        c.eq((proof.get("claims") or {}).get("htm"), "POST", "token request proof htm")
        c.eq((proof.get("claims") or {}).get("htu"), token_url, "token request proof htu")
    mcp = [e for e in ex if e.get("url") == mcp_url]
    c.true(len(mcp) >= 3, f"initialize, initialized, tools/call went to the MCP endpoint: {len(mcp)}")
    c.true(all(e.get("scheme") == "DPoP" for e in mcp), f"every MCP request used the DPoP scheme: {[e.get('scheme') for e in mcp]}")
    proofs = [(e.get("dpop") or {}).get("claims") or {} for e in mcp]
    c.true(all(p.get("htu") == mcp_url and p.get("htm") == "POST" and p.get("ath") for p in proofs),
           f"every MCP proof names POST {mcp_url} and carries ath: {proofs}")
    jtis = [p.get("jti") for p in proofs]
    c.eq(len(set(jtis)), len(jtis), "a fresh proof (jti) per request")
    c.eq([e.get("status") for e in mcp if e.get("status") != 401][-3:], [200, 202, 200], "initialize 200, initialized 202, tools/call 200")
    c.eq((res.get("initialize") or {}).get("status"), 200, "initialize")


def assert_attacks(c: R.Checks, res: dict, *, mcp_url: str, algs: str, required: bool) -> None:
    """The thief's requests, each refused with its exact challenge."""
    attacks = res.get("attacks") or {}
    prm = _prm_url(mcp_url)
    c.eq((attacks.get("control") or {}).get("status"), 200, "control: the client's own call with a fresh proof")
    for case, description in REFUSALS.items():
        got = attacks.get(case) or {}
        want = (f'Bearer resource_metadata="{prm}", scope="{SCOPES}", DPoP error="invalid_dpop_proof", '
                f'error_description="{description}", algs="{algs}"')
        c.eq((got.get("status"), got.get("www_authenticate")), (401, want), f"{case}: status and WWW-Authenticate")
    stale = ((attacks.get("stale") or {}).get("proof") or {}).get("iat")
    control = ((attacks.get("control") or {}).get("proof") or {}).get("iat")
    if stale is not None and control is not None:
        c.true(control - stale >= 590, f"stale: oauth4webapi's proof is ten minutes old (iat {stale} vs {control})")
    c.eq(((attacks.get("wrong_htu") or {}).get("proof") or {}).get("htu"), mcp_url.rsplit("/", 1)[0] + "/not-mcp", "wrong_htu: the proof names another URL")
    bearer = attacks.get("as_bearer") or {}
    want = (f'Bearer error="invalid_token", error_description="{DPOP_ONLY if required else BOUND_AS_BEARER}", '
            f'resource_metadata="{prm}", scope="{SCOPES}", DPoP algs="{algs}"')
    c.eq((bearer.get("status"), bearer.get("www_authenticate")), (401, want), "the bound token as Bearer: status and WWW-Authenticate")


def assert_nonce_dance(c: R.Checks, res: dict, *, mcp_url: str, token_url: str, algs: str, one_origin: bool) -> None:
    """A proof without a nonce: /token 400 use_dpop_nonce, /mcp 401 use_dpop_nonce, each with a
    DPoP-Nonce header; oauth4webapi retries once with it, and the retry succeeds. `one_origin`:
    the authorization server and the MCP endpoint share an origin and one nonce (mcp-oauth dev),
    so oauth4webapi's proofs at /mcp carry the nonce it learnt at /token from the start, and the
    /mcp refusal is the one a fresh handle (oauth4webapi, no nonce yet) got."""
    want_retries = ["token"] if one_origin else ["token", "mcp initialize"]
    c.eq(res.get("nonce_retries"), want_retries, "oauth4webapi's retries on use_dpop_nonce")
    ex = res.get("exchanges") or []
    challenge = (f'Bearer resource_metadata="{_prm_url(mcp_url)}", scope="{SCOPES}", DPoP error="use_dpop_nonce", '
                 f'error_description="{USE_NONCE}", algs="{algs}"')
    for url, refused_status in ((token_url, 400), (mcp_url, 401)):
        seq = [e for e in ex if e.get("url") == url]
        if url == mcp_url and one_origin:
            nonces = [((e.get("dpop") or {}).get("claims") or {}).get("nonce") for e in seq]
            token_nonce = next((e.get("dpop_nonce") for e in ex if e.get("url") == token_url and e.get("dpop_nonce")), None)
            c.true(bool(seq) and all(n == token_nonce and n for n in nonces), f"/mcp: every proof carries the nonce from /token ({token_nonce}): {nonces}")
            c.true(all(e.get("status") in (200, 202) for e in seq), f"/mcp: accepted at once: {[e.get('status') for e in seq]}")
            first = (res.get("attacks") or {}).get("without_nonce") or {}
            c.eq((first.get("status"), first.get("www_authenticate")), (401, challenge), "/mcp, a proof without a nonce: use_dpop_nonce challenge")
            c.true(bool(first.get("dpop_nonce")), "/mcp, a proof without a nonce: a DPoP-Nonce header")
            continue
        if not c.true(len(seq) >= 2, f"{url}: a refused request and its retry: {[e.get('status') for e in seq]}"):
            continue
        first, retry = seq[0], seq[1]
        nonce = first.get("dpop_nonce")
        c.eq(first.get("status"), refused_status, f"{url}: the first proof (no nonce) is refused")
        c.true(bool(nonce), f"{url}: the refusal carries a DPoP-Nonce header")
        c.true("nonce" not in ((first.get("dpop") or {}).get("claims") or {}), f"{url}: the first proof had no nonce")
        c.eq(((retry.get("dpop") or {}).get("claims") or {}).get("nonce"), nonce, f"{url}: the retry's proof carries the nonce")
        c.eq(retry.get("status"), 200, f"{url}: the retry succeeds")
        if url == mcp_url:
            c.eq(first.get("www_authenticate"), challenge, "/mcp use_dpop_nonce challenge")


# --------------------------------------------------------------------------- scenarios


def scenario_dpop1(env: R.Env, c: R.Checks) -> None:
    """oidc-provider issues a DPoP-bound token (client_credentials, oauth4webapi's proof); mcp-oauth serve --dpop allowed accepts it with oauth4webapi's proofs; the thief is refused."""
    with oidc_provider(env, c, "dpop1-oidc-provider", nonce=False) as issuer, \
            serve(env, c, "dpop1-serve", issuer, "--dpop", "allowed") as mcp_url:
        algs = _metadata(c, mcp_url, required=False)
        res = oauth4webapi(env, c, "dpop1-oauth4webapi-cc", mcp_url, MODE="cc", AS_ISSUER=issuer, CLIENT_ID="svc", CLIENT_SECRET="svc-secret")
        assert_bound_and_used(c, res, issuer=issuer, mcp_url=mcp_url, token_url=f"{issuer}/token")
        who = res.get("whoami") or {}
        c.eq(who.get("client_id"), "svc", "whoami client_id")
        c.eq(who.get("issuer"), issuer, "whoami issuer")
        c.eq(res.get("nonce_retries"), [], "no nonce was asked for")
        assert_attacks(c, res, mcp_url=mcp_url, algs=algs, required=False)
        # Beside DPoP, a bearer token of the same issuer (no proof at /token) still works.
        basic = base64.b64encode(b"svc:svc-secret").decode()
        r = R.http("POST", f"{issuer}/token", {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
                   urllib.parse.urlencode({"grant_type": "client_credentials", "resource": mcp_url, "scope": "mcp:read"}).encode())
        body = json.loads(r.body) if r.status == 200 else {}
        c.eq((r.status, body.get("token_type")), (200, "Bearer"), "oidc-provider without a proof: a bearer token")
        tok = body.get("access_token") or ""
        c.true("cnf" not in R.b64json(tok.split(".")[1]) if tok.count(".") == 2 else False, "the bearer token has no cnf")
        r = R.http("POST", mcp_url, {"Authorization": f"Bearer {tok}", "Content-Type": "application/json",
                                     "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": R.PROTOCOL},
                   json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode())
        c.eq(r.status, 200, "--dpop allowed: the bearer token still works")


def scenario_dpop2(env: R.Env, c: R.Checks) -> None:
    """oidc-provider and mcp-oauth serve --dpop required --dpop-nonce both demand nonces; oauth4webapi retries with them; bearer tokens and the thief are refused."""
    with oidc_provider(env, c, "dpop2-oidc-provider", nonce=True) as issuer, \
            serve(env, c, "dpop2-serve", issuer, "--dpop", "required", "--dpop-nonce") as mcp_url:
        algs = _metadata(c, mcp_url, required=True)
        res = oauth4webapi(env, c, "dpop2-oauth4webapi-cc", mcp_url, MODE="cc", AS_ISSUER=issuer, CLIENT_ID="svc", CLIENT_SECRET="svc-secret")
        assert_bound_and_used(c, res, issuer=issuer, mcp_url=mcp_url, token_url=f"{issuer}/token")
        assert_nonce_dance(c, res, mcp_url=mcp_url, token_url=f"{issuer}/token", algs=algs, one_origin=False)
        assert_attacks(c, res, mcp_url=mcp_url, algs=algs, required=True)


def scenario_dpop3(env: R.Env, c: R.Checks) -> None:
    """oauth4webapi against mcp-oauth dev --dpop allowed: DCR, code bound with dpop_jkt, redeemed and refreshed with proofs, /mcp with DPoP; the thief is refused."""
    with dev(env, c, "dpop3-dev", "--dpop", "allowed") as info:
        issuer, mcp_url = info["issuer"], info["mcp_url"]
        algs = _metadata(c, mcp_url, required=False)
        as_meta = json.loads(R.http("GET", f"{issuer}/.well-known/oauth-authorization-server").body)
        c.eq(" ".join(as_meta.get("dpop_signing_alg_values_supported") or []), algs, "the authorization server's dpop_signing_alg_values_supported")
        res = oauth4webapi(env, c, "dpop3-oauth4webapi-authcode", mcp_url, MODE="authcode", AS_ISSUER=issuer, DISCOVERY="oauth2")
        assert_bound_and_used(c, res, issuer=issuer, mcp_url=mcp_url, token_url=f"{issuer}/token")
        refreshed = res.get("refreshed") or {}
        c.eq(refreshed.get("token_type"), "dpop", "refresh: token_type")
        c.eq(((refreshed.get("token_claims") or {}).get("cnf") or {}).get("jkt"), res.get("jkt"), "refresh: the new token is bound to the same key")
        c.eq(refreshed.get("rotated"), True, "refresh: the refresh token rotated")
        who = res.get("whoami") or {}
        c.eq((who.get("user") or {}).get("id"), "dev", "whoami user")
        c.eq(who.get("client_id"), res.get("client_id"), "whoami client_id == the registered client")
        assert_attacks(c, res, mcp_url=mcp_url, algs=algs, required=False)


def scenario_dpop4(env: R.Env, c: R.Checks) -> None:
    """oauth4webapi against mcp-oauth dev --dpop required --dpop-nonce: use_dpop_nonce with DPoP-Nonce at /token (and /mcp for a proof without one), the retry works; bearer tokens and the thief are refused."""
    with dev(env, c, "dpop4-dev", "--dpop", "required", "--dpop-nonce") as info:
        issuer, mcp_url = info["issuer"], info["mcp_url"]
        algs = _metadata(c, mcp_url, required=True)
        res = oauth4webapi(env, c, "dpop4-oauth4webapi-authcode", mcp_url, MODE="authcode", AS_ISSUER=issuer, DISCOVERY="oauth2")
        assert_bound_and_used(c, res, issuer=issuer, mcp_url=mcp_url, token_url=f"{issuer}/token")
        assert_nonce_dance(c, res, mcp_url=mcp_url, token_url=f"{issuer}/token", algs=algs, one_origin=True)
        c.eq(((res.get("refreshed") or {}).get("token_claims") or {}).get("cnf", {}).get("jkt"), res.get("jkt"), "refresh: bound to the same key")
        assert_attacks(c, res, mcp_url=mcp_url, algs=algs, required=True)
        # The banner's bearer token is refused under --dpop required.
        r = R.http("POST", mcp_url, {"Authorization": f"Bearer {info['token']}", "Content-Type": "application/json",
                                     "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": R.PROTOCOL},
                   json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode())
        wa = r.header_all("WWW-Authenticate")
        want = (f'Bearer error="invalid_token", error_description="{DPOP_ONLY}", resource_metadata="{_prm_url(mcp_url)}", '
                f'scope="{SCOPES}", DPoP algs="{algs}"')
        c.eq((r.status, wa), (401, [want]), "--dpop required: a bearer token")


def scenario_dpop5(env: R.Env, c: R.Checks) -> None:
    """oidc-provider's bound token through mcp-oauth gateway --issuer --dpop required --dpop-nonce to a TS SDK MCP server: oauth4webapi's calls go through; the thief is refused at the gateway; the upstream never sees the DPoP header or the token."""
    with oidc_provider(env, c, "dpop5-oidc-provider", nonce=False) as issuer, \
            gateway(env, c, "dpop5-gateway", issuer, "--dpop", "required", "--dpop-nonce") as (mcp_url, seen_path):
        algs = _metadata(c, mcp_url, required=True)
        res = oauth4webapi(env, c, "dpop5-oauth4webapi-cc", mcp_url, MODE="cc", AS_ISSUER=issuer, CLIENT_ID="svc",
                           CLIENT_SECRET="svc-secret", TOOL="echo", TOOL_ARGS=json.dumps({"text": "through the gateway"}))
        assert_bound_and_used(c, res, issuer=issuer, mcp_url=mcp_url, token_url=f"{issuer}/token")
        c.eq(res.get("tool_text"), "through the gateway", "echo through the gateway")
        # oidc-provider asks for no nonce here; the gateway does, once.
        c.eq(res.get("nonce_retries"), ["mcp initialize"], "oauth4webapi retried once, at the gateway")
        assert_attacks(c, res, mcp_url=mcp_url, algs=algs, required=True)
        with open(seen_path, encoding="utf-8") as f:
            seen = [json.loads(line) for line in f if line.strip()]
        token = res.get("access_token") or "no token"
        c.true(len(seen) >= 3, f"the upstream got the client's requests: {len(seen)}")
        c.true(any("through the gateway" in r.get("body", "") for r in seen), "the echo call reached the upstream")
        for r in seen:
            headers = r.get("headers") or {}
            c.true("dpop" not in headers, f"the upstream never sees a DPoP header: {sorted(headers)}")
            c.true("authorization" not in headers, f"the upstream never sees an Authorization header: {sorted(headers)}")
            c.true(token not in json.dumps(r), "the access token never reaches the upstream")
            c.true(res.get("jkt", "x") not in json.dumps(r), "nothing of the client's key reaches the upstream")
        c.note(f"upstream got {len(seen)} requests; headers {sorted((seen[-1].get('headers') or {}) if seen else [])}")


def _standalone(fn: Callable[[R.Env, R.Checks], None]) -> Callable[[R.Env, R.Checks], None]:
    fn.standalone = True  # type: ignore[attr-defined]  # needs no shared servers (scenario a)
    return fn


SCENARIOS: list[tuple[str, Callable[[R.Env, R.Checks], None]]] = [
    (name, _standalone(fn))
    for name, fn in [
        ("dpop1-oidc-provider-serve-oauth4webapi", scenario_dpop1),
        ("dpop2-oidc-provider-serve-nonces-required", scenario_dpop2),
        ("dpop3-dev-oauth4webapi-authcode-refresh", scenario_dpop3),
        ("dpop4-dev-oauth4webapi-nonces-required", scenario_dpop4),
        ("dpop5-oidc-provider-gateway-oauth4webapi", scenario_dpop5),
    ]
]
