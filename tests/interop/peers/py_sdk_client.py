# Headless MCP client on the official Python SDK (`mcp`, pinned in ../requirements.txt), driven by
# tests/interop/runner.py. Adapted from shared/peers/py_sdk_client.py. Run it with the venv's python.
#
#   python peers/py_sdk_client.py MCP_URL [auto|legacy|2026-07-28]
#
# Env:
#   MODE=cc         client_credentials (ClientCredentialsOAuthProvider; CLIENT_ID/CLIENT_SECRET)
#   MODE=authcode   (default) authorization_code + PKCE + dynamic client registration + resource:
#                   redirect_handler follows the AS's redirects with a cookie jar and stops at
#                   REDIRECT_URI (nothing listens there); a login & consent form on the way (the
#                   page of `mcp-oauth dev`) is filled as LOGIN_USER / LOGIN_PASSWORD and approved
#                   (without LOGIN_USER the AS must auto-approve)
#   AS_ISSUER       expected issuer (cc mode)
#   SCOPE           requested scopes (default "mcp:read mcp:write")
#   REDIRECT_URI    loopback redirect URI (authcode mode)
#   LOGIN_USER, LOGIN_PASSWORD   credentials for the login form
#   REFRESH=1       afterwards, mark the provider's access token as expired (its OAuthContext
#                   token_expiry_time, which the SDK computed from expires_in) and open a second
#                   session on the same provider: the SDK refreshes before the first request
#   STEP_UP=1       afterwards, call admin_action (needs scope admin): the SDK re-authorizes on
#                   403 insufficient_scope (SEP-2350, scope union) inside the same call
#   DUMP_RECEIVED   a file: at the end, everything this client received over HTTP (method, URL,
#                   status, headers, body of each answer, the redirect handler's hops included;
#                   bodies of GET event streams left out) and what its storage holds (tokens,
#                   client information) is written there as JSON, for the runner to search
#
# Prints progress on stderr and one line `RESULT {json}` on stdout, which the runner asserts on.
import asyncio
import base64
import json
import os
import sys
import time
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

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

LOGIN_USER = os.environ.get("LOGIN_USER")
LOGIN_PASSWORD = os.environ.get("LOGIN_PASSWORD", "")

result: dict = {"mode": MODE, "connect_mode": CONNECT_MODE, "authorize": None, "authorizations": [], "exchanges": [], "token_requests": []}
captured: dict = {}
DUMP = os.environ.get("DUMP_RECEIVED")
received: list = []  # DUMP_RECEIVED: every answer received, the redirect handler's hops included


def keep_received(method: str, url: str, status: int, headers, body: str | None) -> None:
    if DUMP:
        received.append({"method": method, "url": url, "status": status, "headers": [[k, v] for k, v in headers.multi_items()], "body": body})


class FormParser(HTMLParser):
    """The first <form> of a page: action, method, inputs, buttons; plus <title>, <h1> and the scope list."""

    def __init__(self):
        super().__init__()
        self.form = None
        self.in_form = False
        self.inputs, self.buttons, self.scopes = [], [], []
        self._text_of = None
        self._buf = ""
        self.title = self.heading = ""

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form" and self.form is None:
            self.form = a
            self.in_form = True
        elif tag == "input" and self.in_form:
            self.inputs.append(a)
        elif tag == "button" and self.in_form:
            self.buttons.append(a)
            self._text_of, self._buf = a, ""
        elif tag in ("title", "h1"):
            self._text_of, self._buf = tag, ""
        elif tag == "code" and self.lasttag_li:
            self._text_of, self._buf = "scope", ""
        self.lasttag_li = tag == "li"

    lasttag_li = False

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False
        if self._text_of is None:
            return
        if tag == "button" and isinstance(self._text_of, dict):
            self._text_of["text"] = self._buf.strip()
        elif tag == "title" and self._text_of == "title":
            self.title = self._buf.strip()
        elif tag == "h1" and self._text_of == "h1":
            self.heading = self._buf.strip()
        elif tag == "code" and self._text_of == "scope":
            self.scopes.append(self._buf.strip())
        else:
            return
        self._text_of = None

    def handle_data(self, data):
        if self._text_of is not None:
            self._buf += data


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
    if result["authorize"] is None:
        result["authorize"] = q
    trace: list = []
    result["authorizations"].append({"params": q, "trace": trace})
    print("[auth] authorize", json.dumps(q), file=sys.stderr)
    url, method, data = auth_url, "GET", None
    async with httpx2.AsyncClient(follow_redirects=False) as c:  # keeps cookies between hops
        for hop in range(15):
            sent = sorted(c.cookies.keys())
            if data is None:
                r = await c.request(method, url)
            else:
                r = await c.request(method, url, content=data, headers={"content-type": "application/x-www-form-urlencoded"})
            keep_received(method, url, r.status_code, r.headers, r.text)
            step = {"method": method, "path": urlsplit(url).path, "status": r.status_code, "sent_cookies": sent,
                    "set_cookies": r.headers.get_list("set-cookie") if hasattr(r.headers, "get_list") else r.headers.get("set-cookie")}
            trace.append(step)
            loc = r.headers.get("location")
            if loc:
                url, method, data = urljoin(url, loc), "GET", None
                if url.startswith(REDIRECT):
                    break
                continue
            if method == "POST":
                raise RuntimeError(f"form POST {urlsplit(url).path} answered {r.status_code} without a redirect: {r.text[:300]}")
            p = FormParser()
            if "text/html" in r.headers.get("content-type", ""):
                p.feed(r.text)
            if p.form is None:
                raise RuntimeError(f"no redirect and no form at hop {hop}: {r.status_code} {r.text[:300]}")
            if LOGIN_USER is None:
                raise RuntimeError("the AS shows a login form but no LOGIN_USER was given")
            step["page"] = {"title": p.title, "heading": p.heading, "form_action": p.form.get("action"), "scopes": p.scopes,
                            "inputs": [{"name": i.get("name"), "type": i.get("type", "text")} for i in p.inputs],
                            "buttons": [{"name": b.get("name"), "value": b.get("value"), "text": b.get("text")} for b in p.buttons]}
            fields = []
            for i in p.inputs:
                name = i.get("name")
                if name == "username":
                    fields.append((name, LOGIN_USER))
                elif name == "password":
                    fields.append((name, LOGIN_PASSWORD))
                elif name and i.get("type") == "hidden":
                    fields.append((name, i.get("value", "")))
            button = next((b for b in p.buttons if b.get("value") == "approve"), None)
            if button is None:
                raise RuntimeError(f"the form has no approve button: {p.buttons}")
            fields.append((button["name"], "approve"))
            url = urljoin(url, p.form.get("action") or url)
            method = (p.form.get("method") or "get").upper()
            data = urlencode(fields)
        else:
            raise RuntimeError("too many redirects")
    captured.clear()
    captured.update(dict(parse_qsl(urlsplit(url).query)))
    result["authorizations"][-1]["callback"] = {k: v for k, v in captured.items() if k != "code"}
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
    if request.url.path.endswith("/token") and request.method == "POST":
        body = dict(parse_qsl(request.content.decode("utf-8", "replace")))
        result["token_requests"].append({"url": str(request.url), "grant_type": body.get("grant_type"), "resource": body.get("resource"), "scope": body.get("scope")})
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
    if DUMP:
        stream = response.request.method == "GET" and response.headers.get("content-type", "").startswith("text/event-stream")
        if not stream:
            await response.aread()  # cached: the SDK still reads it afterwards
        keep_received(response.request.method, str(response.request.url), response.status_code, response.headers, None if stream else response.text)


def text_of(r) -> str:
    return "".join(getattr(c, "text", "") for c in r.content)


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
            result["echo"] = text_of(e)
        await record_token(auth)

        if os.environ.get("REFRESH") == "1":
            before = await auth.context.storage.get_tokens()
            n_tok, n_auth = len(result["token_requests"]), len(result["authorizations"])
            # The SDK refreshes when its token is past the expiry it computed from expires_in.
            auth.context.token_expiry_time = time.time() - 1
            print("[refresh] token marked expired; opening a second session", file=sys.stderr)
            async with Client(streamable_http_client(URL, http_client=http), mode=CONNECT_MODE) as client:
                w = await client.call_tool("whoami", {})
            after = await auth.context.storage.get_tokens()
            result["refresh"] = {
                "requests": result["token_requests"][n_tok:],
                "old_refresh_token": before.refresh_token if before else None,
                "new_refresh_token": after.refresh_token if after else None,
                "access_token_changed": (before and before.access_token) != (after and after.access_token),
                "token_claims": b64json(after.access_token.split(".")[1]) if after else None,
                "whoami": json.loads(w.content[0].text),
                "redirected": len(result["authorizations"]) > n_auth,
            }

        if os.environ.get("STEP_UP") == "1":
            before = await auth.context.storage.get_tokens()
            n_auth, n_ex = len(result["authorizations"]), len(result["exchanges"])
            async with Client(streamable_http_client(URL, http_client=http), mode=CONNECT_MODE) as client:
                r = await client.call_tool("admin_action", {})
            after = await auth.context.storage.get_tokens()
            result["step_up"] = {
                "first_scope": before.scope if before else None,
                "path": "sdk" if len(result["authorizations"]) > n_auth else "no-reauthorization",
                "mcp_errors": [
                    {"method": x.get("method"), "status": x.get("status"), "www_authenticate": x.get("www_authenticate")}
                    for x in result["exchanges"][n_ex:] if x.get("url") == URL and (x.get("status") or 0) >= 400
                ],
                "reauthorizations": [
                    {"scope": a["params"].get("scope"), "logged_in": any("page" in h for h in a["trace"])}
                    for a in result["authorizations"][n_auth:]
                ],
                "result": {"isError": bool(getattr(r, "is_error", False) or getattr(r, "isError", False)), "text": text_of(r)},
                "token_scope": b64json(after.access_token.split(".")[1]).get("scope") if after else None,
            }
    ci = await auth.context.storage.get_client_info()
    result["client_id"] = ci.client_id if ci is not None else None
    if DUMP:
        tokens = await auth.context.storage.get_tokens()
        stored = {"tokens": tokens.model_dump(mode="json") if tokens else None, "client_information": ci.model_dump(mode="json") if ci else None}
        with open(DUMP, "w") as f:
            json.dump({"received": received, "stored": stored, "result": result}, f, indent=1)
    print("RESULT " + json.dumps(result))


async def record_token(auth) -> None:
    """The access token the first session used (before any refresh or step-up)."""
    tok = (await auth.context.storage.get_tokens()).access_token
    result["token_header"] = b64json(tok.split(".")[0])
    result["token_claims"] = b64json(tok.split(".")[1])


if __name__ == "__main__":  # gateway_py_client.py imports the sign-in from here
    asyncio.run(main())
