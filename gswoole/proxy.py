"""X-Forwarded-For / X-Forwarded-Proto from trusted proxies (a WSGI middleware).

Behind nginx the peer of every connection is nginx; the client's address and
scheme come in headers that anyone could also send. ``ProxyHeaders`` takes
them only when the peer is in ``forwarded_allow_ips`` (gunicorn's
``--forwarded-allow-ips``: a comma-separated list of addresses, or ``*`` for
any peer): ``REMOTE_ADDR`` becomes the nearest address in X-Forwarded-For
that is not itself a trusted proxy (uvicorn's rule, so a client cannot pick
its address by prepending entries), and ``wsgi.url_scheme`` becomes
X-Forwarded-Proto ("http" or "https" only). From any other peer the headers
are left as they are and nothing is changed.
"""


def parse_allow_ips(value):
    """'127.0.0.1,::1' -> frozenset; '*' -> None (trust any peer)."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if "*" in items:
        return None
    return frozenset(items)


class ProxyHeaders:
    def __init__(self, app, forwarded_allow_ips="127.0.0.1,::1"):
        self.app = app
        self.trusted = parse_allow_ips(forwarded_allow_ips)

    def _is_trusted(self, address):
        return self.trusted is None or address in self.trusted

    def __call__(self, environ, start_response):
        # Most requests carry neither header: two lookups, and the app.
        if ("HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_FOR" in environ) \
                and self._is_trusted(environ.get("REMOTE_ADDR", "")):
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            forwarded = environ.get("HTTP_X_FORWARDED_FOR")
            if forwarded:
                client = client_address(forwarded, self._is_trusted)
                if client:
                    environ["REMOTE_ADDR"] = client
                    environ["REMOTE_PORT"] = "0"
        return self.app(environ, start_response)


def client_address(forwarded_for, is_trusted):
    """The right-most X-Forwarded-For entry that is not a trusted proxy
    (or the left-most if all are)."""
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else None
