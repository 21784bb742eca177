"""FastMCP 4.1.2 as a proxy in front of the gateway benchmark's upstream (bench/run --gateway).

FastMCP 4 has no `FastMCP.as_proxy` any more; `fastmcp.server.create_proxy(URL)` is what its
documentation names in its place. Served like bench/peers/fastmcp_server.py: Streamable HTTP on
127.0.0.1:$PORT/mcp, no auth (the proxy rows compare the proxying alone)."""
import os

from fastmcp.server import create_proxy

PORT = int(os.environ["PORT"])
UPSTREAM = os.environ["UPSTREAM"]

proxy = create_proxy(UPSTREAM, name="bench-proxy")

if __name__ == "__main__":
    proxy.run(transport="http", host="127.0.0.1", port=PORT, path="/mcp", show_banner=False,
              log_level="warning")
