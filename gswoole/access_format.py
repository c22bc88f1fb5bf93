"""The access-log line: gunicorn's ``access_log_format`` atoms, or JSON.

Sans-IO: ``format_access(atoms)`` turns one request's facts into the line;
``gswoole.http.access`` writes it. The format is chosen once in the master
(``configure``, from the ``access_log_format`` and ``access_log_json``
settings) and inherited by the workers.

Atoms (gunicorn's): ``h`` remote address, ``l`` '-', ``u`` user ('-'),
``t`` time ``[10/Oct/2000:13:55:36 -0700]``, ``r`` request line, ``m``
method, ``U`` path, ``q`` query string, ``H`` protocol, ``s`` status, ``B``
response body bytes, ``b`` the same or '-', ``f`` Referer, ``a`` User-Agent,
``T`` seconds, ``M`` milliseconds, ``D`` microseconds, ``L`` seconds as a
decimal, ``p`` "<pid>", ``{name}i`` a request header, ``{name}o`` a response
header. Unknown atoms and missing headers are '-'.
"""

import json
import os
import time

DEFAULT_LINE = '%(h)s - - %(t)s "%(r)s" %(s)s %(b)s %(D)s'
GUNICORN_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

_state = {"format": DEFAULT_LINE, "json": False}


def configure(fmt=None, as_json=False):
    _state["format"] = fmt or DEFAULT_LINE
    _state["json"] = as_json


class _Atoms(dict):
    """gunicorn's SafeAtoms: header atoms looked up, anything unknown is '-'."""

    def __init__(self, atoms, headers_in, headers_out):
        super().__init__(atoms)
        self.headers_in = headers_in or {}
        self.headers_out = headers_out or {}

    def __getitem__(self, key):
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2].lower(), key[-1]
            headers = self.headers_in if kind == "i" else self.headers_out if kind == "o" \
                else {}
            value = headers.get(name)
            return "-" if value is None else value
        value = dict.get(self, key, "-")
        return "-" if value is None else value


def atoms(remote_addr, started, method, uri, protocol, status, sent, headers_in=None,
          headers_out=None, now=None):
    """The atoms of one request (``headers_*``: lower-case name -> value)."""
    elapsed = (time.time() if now is None else now) - started
    path, _, query = uri.partition("?")
    headers_in = headers_in or {}
    return _Atoms({
        "h": remote_addr or "-", "l": "-", "u": "-",
        "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(started)),
        "r": "%s %s %s" % (method, uri, protocol), "m": method, "U": path, "q": query,
        "H": protocol, "s": str(status), "B": str(sent or 0), "b": str(sent) if sent else "-",
        "f": headers_in.get("referer", "-"), "a": headers_in.get("user-agent", "-"),
        "T": str(int(elapsed)), "M": str(int(elapsed * 1000)), "D": str(int(elapsed * 1e6)),
        "L": "%.6f" % elapsed, "p": "<%d>" % os.getpid(),
    }, headers_in, headers_out)


def format_access(facts):
    """The log line for one request's atoms (from ``atoms()``)."""
    if _state["json"]:
        return json.dumps({
            "remote_addr": facts["h"], "time": facts["t"][1:-1], "method": facts["m"],
            "path": facts["U"], "query": facts["q"], "protocol": facts["H"],
            "status": int(facts["s"]) if facts["s"].isdigit() else facts["s"],
            "bytes": int(facts["B"]), "duration_us": int(facts["D"]),
            "referer": facts["f"], "user_agent": facts["a"], "pid": os.getpid()})
    return _state["format"] % facts
