"""A Toxiproxy-compatible server: TCP proxies with faults ("toxics"), driven over HTTP.

No Toxiproxy server can be installed here, so kraft brings its own, speaking Toxiproxy's HTTP
API as its clients use it (`toxiproxy-python`, the Go client, `TOXIPROXY_URL` in tests). Run it
with `kraft chaos toxiproxy --listen 127.0.0.1:8474`, or in-process with `ToxiproxyServer` /
`ThreadedToxiproxy` / `toxiproxy_url()`.

Modules: `api` (HTTP routes), `proxy` (listeners and their connections), `link` (the bounded
pipeline of one connection direction), `toxics` (the fault types), `server` (hosting).
"""

from kraft.chaos.toxiproxy.server import (
    DEFAULT_PORT,
    URL_ENV,
    ThreadedToxiproxy,
    ToxiproxyServer,
    toxiproxy_url,
)

__all__ = ["DEFAULT_PORT", "URL_ENV", "ThreadedToxiproxy", "ToxiproxyServer", "toxiproxy_url"]
