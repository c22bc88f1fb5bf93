"""Every server setting, declared once.

Each ``Setting`` carries its default, its validator and its doc line; the
validation in ``Server.set()``, the defaults in ``server.setting`` and the
settings table in the docs (``python -m gswoole.settings``) all derive from
``SETTINGS`` below. Names are Swoole's.
"""

import difflib
import logging
import os

from .errors import SettingError

MiB = 1024 * 1024


class Setting:
    __slots__ = ("name", "default", "validate", "doc", "cli")

    def __init__(self, name, default, validate, doc, cli=None):
        self.name = name
        self.default = default
        self.validate = validate   # value -> normalised value, raises ValueError/TypeError
        self.doc = doc
        self.cli = cli             # gswoole-serve flag(s), if the setting has any

    @property
    def flags(self):
        """The command-line flags, short one first: ('-w', '--workers')."""
        if self.cli is None:
            return ()
        return self.cli if isinstance(self.cli, tuple) else (self.cli,)


# Validators: each returns the normalised value or raises with a reason that
# ``validate()`` prefixes with the setting's name.

def integer(minimum=None, maximum=None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected an int, got %r" % (value,))
        if minimum is not None and value < minimum:
            raise ValueError("must be >= %d, got %d" % (minimum, value))
        if maximum is not None and value > maximum:
            raise ValueError("must be <= %d, got %d" % (maximum, value))
        return value
    check.describe = "int" + (" >= %d" % minimum if minimum is not None else "")
    return check


def seconds(minimum=0.0):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("expected a number of seconds, got %r" % (value,))
        if value < minimum:
            raise ValueError("must be >= %s, got %s" % (minimum, value))
        return float(value)
    check.describe = "seconds"
    return check


def boolean(value):
    if not isinstance(value, bool):
        raise TypeError("expected True or False, got %r" % (value,))
    return value
boolean.describe = "bool"


def optional_count(value):
    return None if value is None else integer(0)(value)
optional_count.describe = "int >= 0 or None"


def optional_positive(value):
    return None if value is None else integer(1)(value)
optional_positive.describe = "int >= 1 or None"


def optional_text(value):
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string or None, got %r" % (value,))
    return value
optional_text.describe = "str or None"


def text(value):
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string, got %r" % (value,))
    return value
text.describe = "str"


def delimiter(value):
    if isinstance(value, str):
        value = value.encode("latin-1")
    if not isinstance(value, bytes) or not value:
        raise TypeError("expected non-empty bytes, got %r" % (value,))
    if len(value) > 8:
        raise ValueError("must be at most 8 bytes (Swoole's limit)")
    return value
delimiter.describe = "bytes"


def optional_callable(value):
    if value is not None and not callable(value):
        raise TypeError("expected a callable or None, got %r" % (value,))
    return value
optional_callable.describe = "callable or None"


def choice(*options):
    def check(value):
        if value not in options:
            raise ValueError("must be one of %s, got %r" % (", ".join(map(repr, options)), value))
        return value
    check.describe = " | ".join(options)
    return check


_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
               "error": logging.ERROR, "critical": logging.CRITICAL}


def log_level(value):
    """Accepts a level name or Swoole's SWOOLE_LOG_* numbers (0 debug .. 5 none)."""
    if isinstance(value, str) and value.lower() in _LOG_LEVELS:
        return value.lower()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 5:
        return ["debug", "debug", "info", "warning", "error", "critical"][value]
    raise ValueError("must be one of %s, or 0-5, got %r" % (", ".join(_LOG_LEVELS), value))
log_level.describe = "debug | info | warning | error | critical"


def optional_file(value):
    """A path that must name a readable file (checked when the setting is given)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError("expected a file path or None, got %r" % (value,))
    if not os.path.isfile(value):
        raise ValueError("no such file: %s" % value)
    return value
optional_file.describe = "path or None"


TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")


def tls_version(value):
    if value not in TLS_VERSIONS:
        raise ValueError("must be one of %s, got %r" % (", ".join(TLS_VERSIONS), value))
    return value
tls_version.describe = " | ".join(TLS_VERSIONS)


def verify_peer(value):
    """False, True (a client certificate is required) or "optional" (asked
    for, checked if sent); gunicorn's cert_reqs 0/1/2 (also as strings, from
    --cert-reqs) mean the same."""
    if isinstance(value, bool) or value == "optional":
        return value
    if isinstance(value, (int, str)) and str(value) in ("0", "1", "2"):
        return {"0": False, "1": "optional", "2": True}[str(value)]
    raise ValueError("expected True, False or 'optional' (or cert_reqs 0, 1, 2), got %r"
                     % (value,))
verify_peer.describe = "bool or 'optional'"


def sni_certs(value):
    """{hostname: {"ssl_cert_file": path, "ssl_key_file": path}}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("expected {hostname: {'ssl_cert_file': ..., 'ssl_key_file': ...}}, "
                        "got %r" % (value,))
    checked = {}
    for host, files in value.items():
        if not isinstance(host, str) or not host or not isinstance(files, dict):
            raise TypeError("expected {hostname: {'ssl_cert_file': ..., 'ssl_key_file': ...}}, "
                            "got %r: %r" % (host, files))
        unknown = set(files) - {"ssl_cert_file", "ssl_key_file"}
        if unknown or "ssl_cert_file" not in files or "ssl_key_file" not in files:
            raise ValueError("%r needs exactly 'ssl_cert_file' and 'ssl_key_file'" % host)
        checked[host.lower()] = {k: optional_file(v) for k, v in files.items()}
    return checked
sni_certs.describe = "dict or None"


def alpn_protocols(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = [p.strip() for p in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(p, str) and p and len(p) < 256 for p in value):
        raise TypeError("expected a list of protocol names (['h2', 'http/1.1']), got %r"
                        % (value,))
    return list(value)
alpn_protocols.describe = "list of str or None"


def logging_level(name):
    return _LOG_LEVELS[name]


SETTINGS = [
    # processes
    Setting("worker_num", os.cpu_count() or 1, integer(1, 1024),
            "Event worker processes.", cli=("-w", "--workers")),
    Setting("task_worker_num", 0, integer(0, 1024),
            "Task worker processes (ids after the event workers).", cli="--task-workers"),
    Setting("max_request", 0, integer(0),
            "Recycle an event worker after this many requests (receive/packet/HTTP "
            "request events); 0 = never.", cli="--max-requests"),
    Setting("max_request_grace", None, optional_count,
            "Random extra requests (0..grace) added per worker so workers do not "
            "recycle together; default max_request // 2.", cli="--max-requests-jitter"),
    Setting("task_max_request", 0, integer(0),
            "Recycle a task worker after this many tasks; 0 = never."),
    Setting("max_wait_time", 3.0, seconds(),
            "How long a stopping worker keeps serving open connections before it "
            "closes them and exits.", cli="--graceful-timeout"),
    Setting("process_name", "gswoole", text,
            "Prefix of the process titles ('gswoole: worker process #0').", cli=("-n", "--name")),
    Setting("user", None, optional_text, "Run workers as this user (master must be root).",
            cli=("-u", "--user")),
    Setting("group", None, optional_text, "Run workers as this group.", cli=("-g", "--group")),
    Setting("daemonize", False, boolean, "Detach the master from the terminal.",
            cli=("-D", "--daemon")),
    Setting("pid_file", None, optional_text, "Write the master's pid here; removed on exit.",
            cli=("-p", "--pid")),
    Setting("log_file", None, optional_text, "Append logs here instead of stderr ('-': stderr).",
            cli="--log-file"),
    Setting("log_level", "info", log_level, "Level of the 'gswoole' logger.",
            cli="--log-level"),
    # sockets and connections
    Setting("backlog", 511, integer(1), "listen() backlog.", cli="--backlog"),
    Setting("enable_reuse_port", False, boolean,
            "Give each worker its own SO_REUSEPORT socket instead of sharing one.",
            cli="--reuse-port"),
    Setting("open_tcp_nodelay", True, boolean,
            "TCP_NODELAY on accepted sockets (without it keep-alive request/response "
            "traffic waits ~40 ms on delayed ACKs)."),
    Setting("max_conn", None, optional_positive,
            "Connections per worker (open and still closing). A worker at the limit stops "
            "accepting until one closes; the backlog keeps the rest for the other workers. "
            "Default: the open-file limit (ulimit -n) less what a worker uses itself.",
            cli="--worker-connections"),
    Setting("buffer_output_size", 2 * MiB, integer(1),
            "Most output one connection may have queued; a send past it fails with "
            "1009 (or waits, with send_yield)."),
    Setting("send_yield", False, boolean,
            "A send that would overflow the output buffer waits for it to drain."),
    Setting("send_timeout", 10.0, seconds(),
            "Longest a send_yield send waits before failing with 1009."),
    Setting("linger_time", 3.0, seconds(),
            "After a server close, how long to keep reading and discarding input so "
            "unread data cannot turn the close into an RST."),
    Setting("heartbeat_check_interval", 0.0, seconds(),
            "Check for idle connections this often; 0 = off."),
    Setting("heartbeat_idle_time", 0.0, seconds(),
            "Close connections idle this long; default twice the check interval."),
    # TLS, per port (a port is TLS when its sock_type has gswoole.SSL; see docs/tls.md)
    Setting("ssl_cert_file", None, optional_file,
            "PEM certificate (chain) of the TLS ports.", cli="--certfile"),
    Setting("ssl_key_file", None, optional_file,
            "PEM private key of ssl_cert_file.", cli="--keyfile"),
    Setting("ssl_ciphers", None, optional_text,
            "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's); default "
            "Python's."),
    Setting("ssl_min_version", "TLSv1.2", tls_version, "Oldest TLS version accepted."),
    Setting("ssl_verify_peer", False, verify_peer,
            "Ask TLS clients for a certificate signed by ssl_client_cert_file: True "
            "requires one, 'optional' checks one if sent. --cert-reqs takes gunicorn's "
            "0/1/2.", cli="--cert-reqs"),
    Setting("ssl_client_cert_file", None, optional_file,
            "PEM CA bundle that client certificates must chain to.", cli="--ca-certs"),
    Setting("ssl_sni_certs", None, sni_certs,
            "Certificates by server name (SNI): {hostname: {'ssl_cert_file': ..., "
            "'ssl_key_file': ...}}; other names get ssl_cert_file."),
    Setting("ssl_alpn_protocols", None, alpn_protocols,
            "ALPN protocols offered, in order of preference (['http/1.1'])."),
    Setting("ssl_handshake_timeout", 10.0, seconds(),
            "A TLS client must finish its handshake within this time (checked once a "
            "second); past it the connection is closed."),
    # framing
    Setting("open_eof_check", False, boolean,
            "Deliver data only when the buffer ends with package_eof."),
    Setting("open_eof_split", False, boolean,
            "Deliver one receive per package_eof-terminated packet."),
    Setting("package_eof", b"\r\n", delimiter, "Packet terminator for EOF framing."),
    Setting("open_length_check", False, boolean,
            "Length-prefixed framing (see package_length_*)."),
    Setting("package_length_type", "N", choice(*"cCsSnNlLvV"),
            "Length field format, Swoole's pack codes."),
    Setting("package_length_offset", 0, integer(0), "Offset of the length field."),
    Setting("package_body_offset", 0, integer(0),
            "Bytes before the body; the length field counts from here."),
    Setting("package_length_func", None, optional_callable,
            "callable(buffer) -> packet length, 0 = need more, -1 = bad (close)."),
    Setting("package_max_length", 2 * MiB, integer(1),
            "Largest packet (or HTTP body); past it the connection is closed."),
    # HTTP (gunicorn's names for the request limits)
    Setting("limit_request_line", 4094, integer(0),
            "Longest HTTP request line; past it the answer is 414.", cli="--limit-request-line"),
    Setting("limit_request_fields", 100, integer(0),
            "Most header fields in a request; past it the answer is 431.",
            cli="--limit-request-fields"),
    Setting("limit_request_field_size", 8190, integer(0),
            "Longest header field; past it the answer is 431.",
            cli="--limit-request-field-size"),
    Setting("http_header_timeout", 10.0, seconds(),
            "A client must send a request's headers within this time (slowloris guard); "
            "it is also the grace before http_body_min_rate applies. Past it: 408 and close."),
    Setting("http_body_min_rate", 240, integer(0),
            "After the grace of http_header_timeout, a request body arriving slower than "
            "this many bytes a second on average gets 408 and a close; 0 = off (then only "
            "a body that stalls for http_header_timeout is cut)."),
    Setting("http_keepalive_timeout", 5.0, seconds(),
            "Close a keep-alive connection idle this long between requests.",
            cli="--keep-alive"),
    Setting("upload_tmp_dir", None, optional_text,
            "Where uploaded files are written (default: the system temp dir)."),
    Setting("access_log", None, optional_text,
            "HTTP access log in the common log format: a file path, or '-' for stderr.",
            cli="--access-log"),
]

BY_NAME = {s.name: s for s in SETTINGS}


def defaults():
    """A fresh dict of every setting's default."""
    return {s.name: s.default for s in SETTINGS}


def validate(name, value):
    """Return ``value`` normalised for setting ``name``.

    Raises SettingError naming the key: for an unknown key with the nearest
    valid names, for a bad type or range with the reason."""
    setting = BY_NAME.get(name)
    if setting is None:
        near = difflib.get_close_matches(name, BY_NAME, n=3, cutoff=0.6)
        hint = "; did you mean %s?" % " or ".join(repr(n) for n in near) if near else ""
        raise SettingError("unknown setting %r%s" % (name, hint))
    try:
        return setting.validate(value)
    except (TypeError, ValueError) as exc:
        raise SettingError("setting %r: %s" % (name, exc)) from None


def validate_all(values):
    """Validate a mapping of settings; returns a new dict of normalised values."""
    return {name: validate(name, value) for name, value in values.items()}


def table():
    """The settings as a Markdown table (the docs are generated from this)."""
    rows = ["| setting | default | type | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        kind = getattr(s.validate, "describe", "").replace("|", "\\|")
        default = "cpu count" if s.name == "worker_num" else repr(s.default)
        rows.append("| `%s` | `%s` | %s | %s |" % (s.name, default, kind,
                                                   s.doc.replace("|", "\\|")))
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
