# Headless MCP client on the official Python SDK (`mcp`, pinned in ../requirements.txt), driven by
# tests/interop/runner.py. Adapted from shared/peers/py_sdk_client.py. Run it with the venv's python.
#
#   python peers/py_sdk_client.py MCP_URL [auto|legacy|2026-07-28]
#
# Env:
#   MODE=cc         client_credentials (ClientCredentialsOAuthProvider; CLIENT_ID/CLIENT_SECRET)
#   MODE=authcode   (default) authorization_code + PKCE + dynamic client registration + resource:
#                   redirect_handler follows the AS's redirects with a cookie jar (the AS must
#                   auto-approve) and stops at REDIRECT_URI (nothing listens there)
#   AS_ISSUER       expected issuer (cc mode)
#   SCOPE           requested scopes (default "mcp:read mcp:write")
#   REDIRECT_URI    loopback redirect URI (authcode mode)
#
# Prints progress on stderr and one line `RESULT {json}` on stdout, which the runner asserts on.
import asyncio
import base64
import json
import os
import sys
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

URL = sys.argv[1]
CONNECT_MODE = sys.argv[2] if len(sys.argv) > 2 else "auto"
MODE = os.environ.get("MODE", "authcode")
REDIRECT = os.environ.get("REDIRECT_URI", "http://127.0.0.1:33418/callback")
SCOPE = os.environ.get("SCOPE", "mcp:read mcp:write")

result: dict = {"mode": MODE, "connect_mode": CONNECT_MODE, "authorize": None, "exchanges": []}
captured: dict = {}


class MemStorage(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, t: OAuthToken):
        self.tokens = t

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, c: OAuthClientInformationFull):
        self.client = c


async def redirect_handler(auth_url: str) -> None:
    q = dict(parse_qsl(urlsplit(auth_url).query))
    q.pop("code_challenge", None)
    result["authorize"] = q
    print("[auth] authorize", json.dumps(q), file=sys.stderr)
    url = auth_url
    async with httpx2.AsyncClient(follow_redirects=False) as c:  # keeps cookies between hops
        for hop in range(15):
            r = await c.get(url)
            loc = r.headers.get("location")
            if not loc:
                raise RuntimeError(f"no redirect at hop {hop}: {r.status_code} {r.text[:300]}")
            url = urljoin(url, loc)
            if url.startswith(REDIRECT):
                break
        else:
            raise RuntimeError("too many redirects")
    captured.update(dict(parse_qsl(urlsplit(url).query)))
    if "error" in captured:
        raise RuntimeError(f"AS error {captured['error']}: {captured.get('error_description')}")


async def callback_handler() -> AuthorizationCodeResult:
    return AuthorizationCodeResult(code=captured["code"], state=captured.get("state"), iss=captured.get("iss"))


def make_auth():
    if MODE == "cc":
        from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

        return ClientCredentialsOAuthProvider(
            server_url=URL,
            storage=MemStorage(),
            client_id=os.environ.get("CLIENT_ID", "svc"),
            client_secret=os.environ.get("CLIENT_SECRET", "svc-secret"),
            scope=SCOPE,
            issuer=os.environ["AS_ISSUER"],
        )
    return OAuthClientProvider(
        server_url=URL,
        client_metadata=OAuthClientMetadata(
            client_name="py-sdk-interop",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope=SCOPE,
        ),
        storage=MemStorage(),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )


def b64json(part: str):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


async def on_request(request):
    request.extensions["interop_seen"] = {
        "method": request.method,
        "url": str(request.url),
        "mcp_method": request.headers.get("mcp-method"),
        "protocol_version": request.headers.get("mcp-protocol-version"),
        "authorized": "authorization" in request.headers,
    }


async def on_response(response):
    seen = dict(response.request.extensions.get("interop_seen") or {})
    seen["status"] = response.status_code
    if response.status_code >= 400:
        seen["www_authenticate"] = response.headers.get("www-authenticate")
    json_body = response.headers.get("content-type", "").startswith("application/json")
    if response.status_code >= 400 or (seen.get("mcp_method") == "server/discover" and json_body):
        await response.aread()  # cached: the SDK still reads it afterwards
        seen["body"] = response.text[:400]
    result["exchanges"].append(seen)
    print("[http]", json.dumps(seen), file=sys.stderr)


async def main():
    auth = make_auth()
    hooks = {"request": [on_request], "response": [on_response]}
    async with httpx2.AsyncClient(auth=auth, event_hooks=hooks) as http:
        async with Client(streamable_http_client(URL, http_client=http), mode=CONNECT_MODE) as client:
            result["protocol_version"] = client.session.protocol_version
            info = client.session.server_info
            result["server"] = info.model_dump(mode="json") if info is not None else None
            tools = await client.list_tools()
            result["tools"] = [t.name for t in tools.tools]
            r = await client.call_tool("whoami", {})
            result["whoami"] = json.loads(r.content[0].text)
            e = await client.call_tool("echo", {"text": "hello interop"})
            result["echo"] = "".join(getattr(c, "text", "") for c in e.content)
    tokens = await auth.context.storage.get_tokens()
    tok = tokens.access_token
    result["token_header"] = b64json(tok.split(".")[0])
    result["token_claims"] = b64json(tok.split(".")[1])
    ci = await auth.context.storage.get_client_info()
    result["client_id"] = ci.client_id if ci is not None else None
    print("RESULT " + json.dumps(result))


asyncio.run(main())
