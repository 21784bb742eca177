"""Scenario s: two issuers at once. One `mcp-oauth serve` trusts oidc-provider (peers/oidc-as.mjs,
a third-party authorization server) and `mcp-oauth dev` (our embedded authorization server),
`--issuer` given twice. Part of runner.py (standard library only).

It shows: a token from each issuer is accepted, and answered as that issuer's; each token with its
`iss` changed to the other issuer (signature kept) is refused, as is one naming an issuer nobody
configured (401 invalid_token); the protected-resource metadata lists both issuers in the order
given (oidc-provider first: the one clients should prefer), and the mirrored authorization-server
metadata at the root is the first issuer's.

`mcp-oauth dev` issues tokens only for its own MCP endpoint, so `serve` also accepts that URL as an
audience (`--audience`); oidc-provider's tokens name `serve`'s endpoint (RFC 8707 `resource`).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from typing import Any, Callable

import dev_scenarios as D
import runner as R  # the running runner.py (aliased in sys.modules before this import)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_iss(token: str, iss: str) -> str:
    """The token with its payload's `iss` replaced, header and signature kept."""
    header, payload, signature = token.split(".")
    claims = D.b64json(payload)
    claims["iss"] = iss
    return ".".join([header, _b64(json.dumps(claims, separators=(",", ":")).encode()), signature])


def _whoami(url: str, token: str) -> R.Resp:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": R.PROTOCOL,
        "Authorization": f"Bearer {token}",
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    return R.http("POST", url, headers, json.dumps(body).encode())


def _cc_token(issuer: str, resource: str, scope: str) -> str:
    """A client_credentials token from oidc-provider (static client svc / svc-secret)."""
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "resource": resource, "scope": scope}).encode()
    basic = base64.b64encode(b"svc:svc-secret").decode()
    r = R.http("POST", f"{issuer}/token", {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}, body)
    if r.status != 200:
        raise R.Failure(f"oidc-provider token request failed: {r.describe()}")
    return json.loads(r.body)["access_token"]


def scenario_s_two_issuers(env: R.Env, c: R.Checks) -> None:
    """Two issuers at once (oidc-provider and mcp-oauth dev) trusted by one mcp-oauth serve: each token only with its own keys; metadata lists both in order."""
    as_port = R.free_port()
    oidc = f"http://127.0.0.1:{as_port}"
    oidc_proc = env.start(
        "s-oidc-provider",
        [env.args.node, os.path.join(R.PEERS, "oidc-as.mjs")],
        {"PORT": str(as_port), "AUTO_APPROVE": "1", "SCOPES": R.AS_SCOPES},
        shared=False,
    )
    c.logs.append(oidc_proc.log_path)
    try:
        R.wait_ready(oidc_proc, f"{oidc}/.well-known/openid-configuration")
        with D.dev_server(env, c, "s-dev") as dev:
            port = R.free_port()
            mcp_url = f"http://127.0.0.1:{port}/mcp"
            origin = f"http://127.0.0.1:{port}"
            serve = env.start(
                "s-serve",
                [env.args.dev_bin, "serve", "--issuer", oidc, "--issuer", dev.issuer, "--mcp-url", mcp_url,
                 "--audience", dev.mcp_url, "--scopes", "mcp:read mcp:write"],
                {"RUST_LOG": os.environ.get("RUST_LOG", "info,mcp_oauth=debug"), "RUST_BACKTRACE": "1"},
                shared=False,
            )
            c.logs.append(serve.log_path)
            try:
                waited = R.wait_ready(serve, f"{origin}/.well-known/oauth-protected-resource/mcp")
                c.note(f"serve {mcp_url} ready in {waited:.2f}s trusting {oidc} and {dev.issuer}")
                _checks(c, oidc, dev, mcp_url, origin)
                c.true(serve.alive(), "serve still running after every check")
            finally:
                serve.stop()
    finally:
        oidc_proc.stop()


def _checks(c: R.Checks, oidc: str, dev: D.DevServer, mcp_url: str, origin: str) -> None:
    prm = json.loads(R.http("GET", f"{origin}/.well-known/oauth-protected-resource/mcp").body)
    c.eq(prm.get("authorization_servers"), [oidc, dev.issuer], "authorization_servers: both issuers, in the order given")
    mirrored = R.http("GET", f"{origin}/.well-known/oauth-authorization-server")
    if c.eq(mirrored.status, 200, "mirrored authorization-server metadata status"):
        c.eq(mirrored.json().get("issuer"), oidc, "the root mirror is the first issuer's")

    from_oidc = _cc_token(oidc, mcp_url, "mcp:read")
    from_dev = dev.info["token"]
    tokens: list[tuple[str, str, str, str]] = [
        ("oidc-provider", from_oidc, oidc, dev.issuer),
        ("mcp-oauth dev", from_dev, dev.issuer, oidc),
    ]
    for name, token, own, other in tokens:
        c.eq(D.b64json(token.split(".")[1]).get("iss"), own, f"{name} token's iss")
        r = _whoami(mcp_url, token)
        if c.eq(r.status, 200, f"{name} token accepted" + ("" if r.status == 200 else f" ({r.describe()})")):
            who: Any = D.tool_json(r)
            c.eq(who.get("issuer"), own, f"{name} token answered as its own issuer's")
        for what, forged in [
            (f"{name} token re-presented with iss = the other issuer", with_iss(token, other)),
            (f"{name} token re-presented with iss = an unknown issuer", with_iss(token, "http://127.0.0.1:1/evil")),
        ]:
            r = _whoami(mcp_url, forged)
            c.eq(r.status, 401, f"{what}: status")
            scheme, params = R.parse_challenge(r.headers.get("www-authenticate", ""))
            c.eq((scheme, params.get("error")), ("Bearer", "invalid_token"), f"{what}: challenge")
    # Unchanged tokens still work after the forgeries (nothing was cached for them).
    for name, token, _, _ in tokens:
        c.eq(_whoami(mcp_url, token).status, 200, f"{name} token still accepted")


def _standalone(fn: Callable[[R.Env, R.Checks], None]) -> Callable[[R.Env, R.Checks], None]:
    fn.standalone = True  # type: ignore[attr-defined]  # needs no shared servers (scenario a)
    return fn


SCENARIOS: list[tuple[str, Callable[[R.Env, R.Checks], None]]] = [
    ("s-several-issuers-oidc-provider-and-dev", _standalone(scenario_s_two_issuers)),
]
