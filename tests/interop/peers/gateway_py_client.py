# A scripted MCP client for the gateway scenarios (gateway_scenarios.py), on the official Python
# SDK (`mcp`, pinned in ../requirements.txt). It signs in through the gateway's embedded
# authorization server as py_sdk_client.py does (DCR, PKCE, `resource`, the login & consent page
# filled by its redirect_handler), then runs the steps it is given. Run it with the venv's python.
#
#   STEPS='[…]' python peers/gateway_py_client.py MCP_URL [auto|legacy]
#
# Env: REDIRECT_URI, SCOPE, LOGIN_USER, LOGIN_PASSWORD as in py_sdk_client.py; STEPS as in
# gateway-client.mjs (list, call, progress, cancel, pause, until_ok). Cancelling leaves the
# call's cancel scope, and the SDK sends `notifications/cancelled` for the abandoned request.
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
STEPS = json.loads(os.environ.get("STEPS", "[]"))
CALL_TIMEOUT_S = 30.0

result: dict = {"sdk": "python", "steps": {}}


def text_of(r) -> str:
    return "".join(getattr(c, "text", "") for c in r.content)


async def call(client, step, progress_callback=None) -> dict:
    t0 = time.monotonic()
    try:
        r = await client.call_tool(step["name"], step.get("args") or {}, read_timeout_seconds=CALL_TIMEOUT_S, progress_callback=progress_callback)
        return {"isError": bool(r.is_error), "text": text_of(r), "ms": round((time.monotonic() - t0) * 1000)}
    except Exception as e:  # the record says what failed; the runner asserts on it
        return {"error": {"name": type(e).__name__, "code": getattr(getattr(e, "error", None), "code", None), "message": str(e)}, "ms": round((time.monotonic() - t0) * 1000)}


async def run_step(client, step) -> dict:
    op = step["op"]
    if op == "list":
        r = await client.list_tools(cache_mode="bypass")
        meta = r.meta if getattr(r, "meta", None) is not None else None
        return {"names": [t.name for t in r.tools], "meta": meta}
    if op == "call":
        return await call(client, step)
    if op == "progress":
        progress: list = []

        async def on_progress(p, total, message):
            progress.append({"progress": p, "total": total})

        rec = await call(client, step, on_progress)
        rec["progress"] = progress
        return rec
    if op == "cancel":
        progress = []
        scope = anyio.CancelScope()

        async def on_progress_cancel(p, total, message):
            progress.append({"progress": p, "total": total})
            if len(progress) >= step.get("after_progress", 1):
                scope.cancel()

        t0 = time.monotonic()
        rec: dict = {}
        with scope:
            rec = await call(client, step, on_progress_cancel)
        if scope.cancelled_caught:
            rec = {"error": {"name": "Cancelled", "message": "cancelled by the interop client"}, "ms": round((time.monotonic() - t0) * 1000)}
        rec["progress"] = progress
        return rec
    if op == "pause":
        with open(step["ready"], "w") as f:
            f.write("ready")
        t0 = time.monotonic()
        while not os.path.exists(step["go"]):
            if time.monotonic() - t0 > 60:
                raise RuntimeError(f"pause: {step['go']} did not appear within 60 s")
            await anyio.sleep(0.05)  # polling interval, bounded by the deadline above
        return {"waited_ms": round((time.monotonic() - t0) * 1000)}
    if op == "until_ok":
        attempts = []
        t0 = time.monotonic()
        while True:
            a = await call(client, step)
            attempts.append(a)
            if "error" not in a and not a.get("isError"):
                break
            if time.monotonic() - t0 > step.get("deadline_s", 20):
                break
            await anyio.sleep(0.2)
        return {"attempts": attempts}
    raise RuntimeError(f"unknown step {op}")


async def main():
    base.URL = URL
    auth = base.make_auth()
    async with httpx2.AsyncClient(auth=auth) as http:
        async with Client(streamable_http_client(URL, http_client=http), mode=CONNECT_MODE) as client:
            result["protocol_version"] = client.session.protocol_version
            for step in STEPS:
                print("[step]", json.dumps(step), file=sys.stderr)
                rec = await run_step(client, step)
                print("[step]", step.get("as"), json.dumps(rec, default=str)[:500], file=sys.stderr)
                result["steps"][step["as"]] = rec
        tokens = await auth.context.storage.get_tokens()
    result["authorize"] = base.result["authorize"]
    result["authorizations"] = base.result["authorizations"]
    result["access_token"] = tokens.access_token if tokens else None
    result["token_claims"] = base.b64json(tokens.access_token.split(".")[1]) if tokens else None
    ci = await auth.context.storage.get_client_info()
    result["client_id"] = ci.client_id if ci is not None else None
    print("RESULT " + json.dumps(result, default=str))


asyncio.run(main())
