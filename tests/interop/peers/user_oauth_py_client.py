# The Python SDK client (`mcp`, pinned in ../requirements.txt) of the gateway's user-oauth
# scenario (user_oauth_scenarios.py): the same steps as user-oauth-client.mjs, paced by the same
# READY1/GO1 … READY3/GO3 files. It signs in at the gateway as py_sdk_client.py does (DCR, PKCE,
# `resource`, the login & consent page filled by its redirect_handler), keeping one OAuth
# provider (so one sign-in) across its connections. Run it with the venv's python.
#
#   READY1=… GO1=… … python peers/user_oauth_py_client.py MCP_URL [auto|legacy]
#
# Prints one `RESULT {json}` line on stdout.
import asyncio
import json
import os
import sys
import time

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import py_sdk_client as base  # noqa: E402  the sign-in: provider, redirect handler, storage

URL = sys.argv[1]
CONNECT_MODE = sys.argv[2] if len(sys.argv) > 2 else "legacy"
CALL_TIMEOUT_S = 30.0
PAUSE_S = 120.0

result: dict = {"sdk": "python", "steps": {}}


def error_of(e: BaseException) -> dict:
    """The JSON-RPC error inside what the SDK raised (anyio may wrap it in exception groups)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    err = getattr(e, "error", None)
    return {
        "name": type(e).__name__,
        "code": getattr(err, "code", getattr(e, "code", None)),
        "message": getattr(err, "message", None) or str(e),
        "data": getattr(err, "data", getattr(e, "data", None)),
    }


async def whoami(client) -> dict:
    t0 = time.monotonic()
    try:
        r = await client.call_tool("whoami", {}, read_timeout_seconds=CALL_TIMEOUT_S)
        text = "".join(getattr(c, "text", "") for c in r.content)
        try:
            who = json.loads(text)
        except ValueError:
            who = None
        return {"isError": bool(r.is_error), "text": text, "who": who, "ms": round((time.monotonic() - t0) * 1000)}
    except Exception as e:  # the record says what failed; the runner asserts on it
        return {"error": error_of(e), "ms": round((time.monotonic() - t0) * 1000)}


async def pause(n: int, payload: dict) -> None:
    with open(os.environ[f"READY{n}"], "w") as f:
        f.write(json.dumps(payload, default=str))
    go = os.environ[f"GO{n}"]
    t0 = time.monotonic()
    while not os.path.exists(go):
        if time.monotonic() - t0 > PAUSE_S:
            raise RuntimeError(f"pause {n}: {go} did not appear within {PAUSE_S:.0f} s")
        await anyio.sleep(0.05)  # polling interval, bounded by the deadline above


async def main():
    base.URL = URL
    auth = base.make_auth()
    async with httpx2.AsyncClient(auth=auth) as http:
        # 1. signed in at the gateway; the upstream wants the user's own account.
        try:
            async with Client(streamable_http_client(URL, http_client=http), mode=CONNECT_MODE):
                result["steps"]["first"] = {"connected": True}
        except Exception as e:  # expected: the error with the connect link
            result["steps"]["first"] = {"error": error_of(e)}
        print("[client] first connect", json.dumps(result["steps"]["first"], default=str)[:600], file=sys.stderr)
        tokens = await auth.context.storage.get_tokens()
        result["access_token"] = tokens.access_token if tokens else None
        await pause(1, {**result["steps"]["first"], "access_token": result["access_token"]})

        # 2. after the browser connected the account.
        try:
            async with Client(streamable_http_client(URL, http_client=http), mode=CONNECT_MODE) as client:
                result["steps"]["second_connect"] = {"connected": True}
                result["protocol_version"] = client.session.protocol_version
                s = result["steps"]
                s["whoami1"] = await whoami(client)
                s["whoami2"] = await whoami(client)
                print("[client] whoami", json.dumps(s["whoami1"], default=str)[:400], file=sys.stderr)
                await pause(2, {"whoami1": s["whoami1"]})
                # 3. the upstream treats the token as expired: calls until one succeeds.
                attempts = []
                t0 = time.monotonic()
                while True:
                    a = await whoami(client)
                    attempts.append(a)
                    if "error" not in a and not a.get("isError"):
                        break
                    if time.monotonic() - t0 > 20:
                        break
                    await anyio.sleep(0.1)  # polling interval, bounded by the deadline above
                s["after_expiry"] = {"attempts": attempts}
                s["whoami_again"] = await whoami(client)
                await pause(3, {"after_expiry": attempts})
                # 4. after the revocation on the connections page.
                s["after_revoke"] = await whoami(client)
                print("[client] after revoke", json.dumps(s["after_revoke"], default=str)[:600], file=sys.stderr)
        except Exception as e:
            result["steps"].setdefault("second_connect", {"error": error_of(e)})
            if result["steps"]["second_connect"].get("connected"):
                raise
        tokens = await auth.context.storage.get_tokens()
    result["authorizations"] = base.result["authorizations"]
    result["access_token_final"] = tokens.access_token if tokens else None
    ci = await auth.context.storage.get_client_info()
    result["client_id"] = ci.client_id if ci is not None else None
    print("RESULT " + json.dumps(result, default=str))


asyncio.run(main())
