"""Every server setting, declared once.

Each ``Setting`` carries its default, its validator and its doc line; the
validation in ``Server.set()``, the defaults in ``server.setting`` and the
settings table in the docs (``python -m gswoole.settings``) all derive from
``SETTINGS`` below. Names are Swoole's.
"""

import difflib
import logging
import os

from . import swoole_settings
from .errors import SettingError

MiB = 1024 * 1024


SERVER = ("server",)
SERVER_AND_PORT = ("server", "port")
# Packet framing: the server's default, any port's own, and the client's.
FRAMING = ("server", "port", "client")


class Setting:
    """One setting. ``scopes``: where it may be set: "server" (``server.set``),
    "port" (``port.set``, for that port only), "client" (``Client.set``).
    ``kind``: the Python type a command-line value converts to (bool for a
    switch flag, None for a setting the command line cannot express); each
    validator declares it. ``config_names``: other spellings a gunicorn
    config file uses for it."""

    __slots__ = ("name", "default", "validate", "doc", "cli", "scopes", "kind", "config_names")

    def __init__(self, name, default, validate, doc, cli=None, scopes=SERVER,
                 config_names=()):
        self.name = name
        self.default = default
        self.validate = validate   # value -> normalised value, raises ValueError/TypeError
        self.doc = doc
        self.cli = cli             # gswoole-serve flag(s), if the setting has any
        self.scopes = scopes
        self.kind = validate.kind
        self.config_names = config_names

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
    check.kind = int
    return check


def seconds(minimum=0.0):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("expected a number of seconds, got %r" % (value,))
        if value < minimum:
            raise ValueError("must be >= %s, got %s" % (minimum, value))
        return float(value)
    check.describe = "seconds"
    check.kind = float
    return check


def boolean(value):
    """True/False, or PHP's 1/0 (a configuration copied from Swoole)."""
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError("expected True or False (or 1 or 0), got %r" % (value,))
boolean.describe = "bool"
boolean.kind = bool


def optional_count(value):
    return None if value is None else integer(0)(value)
optional_count.describe = "int >= 0 or None"
optional_count.kind = int


def optional_positive(value):
    return None if value is None else integer(1)(value)
optional_positive.describe = "int >= 1 or None"
optional_positive.kind = int


def optional_text(value):
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string or None, got %r" % (value,))
    return value
optional_text.describe = "str or None"
optional_text.kind = str


def text(value):
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string, got %r" % (value,))
    return value
text.describe = "str"
text.kind = str


def optional_address(value):
    """'host:port' or '[v6host]:port', or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("expected 'HOST:PORT' or None, got %r" % (value,))
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected 'HOST:PORT', got %r" % value)
    return value
optional_address.describe = "'host:port' or None"
optional_address.kind = str


def log_config(value):
    """A logging.config.dictConfig dict, or the path of an existing file."""
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        if not os.path.exists(value):
            raise ValueError("log config file %s does not exist" % value)
        return value
    raise TypeError("expected a dictConfig dict or a file path, got %r" % (value,))
log_config.describe = "dict, path or None"
log_config.kind = str


def access_log_format(value):
    """A %-format over gunicorn's atoms: checked by formatting sample atoms."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError("expected a format string or None, got %r" % (value,))
    from .access_format import atoms
    try:
        value % atoms("127.0.0.1", 0.0, "GET", "/", "HTTP/1.1", 200, 0, now=0.0)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError("bad format %r: %s (use gunicorn's atoms, e.g. '%%(h)s %%(r)s')"
                         % (value, exc)) from None
    return value
access_log_format.describe = "str or None"
access_log_format.kind = str


def delimiter(value):
    if isinstance(value, str):
        value = value.encode("latin-1")
    if not isinstance(value, bytes) or not value:
        raise TypeError("expected non-empty bytes, got %r" % (value,))
    if len(value) > 8:
        raise ValueError("must be at most 8 bytes (Swoole's limit)")
    return value
delimiter.describe = "bytes"
delimiter.kind = None


def optional_callable(value):
    if value is not None and not callable(value):
        raise TypeError("expected a callable or None, got %r" % (value,))
    return value
optional_callable.describe = "callable or None"
optional_callable.kind = None


def text_list(value):
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise TypeError("expected a list of non-empty strings, got %r" % (value,))
    return tuple(value)


text_list.describe = "list of str"
text_list.kind = None


def choice(*options):
    def check(value):
        if value not in options:
            raise ValueError("must be one of %s, got %r" % (", ".join(map(repr, options)), value))
        return value
    check.describe = " | ".join(options)
    check.kind = str
    return check


def redis_url(value):
    """'redis://host:port/db' (port and db optional), or None."""
    if value is None:
        return None
    parse_redis_url(value)
    return value
redis_url.describe = "'redis://host:port/db' or None"
redis_url.kind = str


def parse_redis_url(value):
    """(host, port, db) of a 'redis://host:port/db' address; ValueError if it is not one."""
    if not isinstance(value, str):
        raise TypeError("expected 'redis://HOST:PORT/DB', got %r" % (value,))
    scheme, sep, rest = value.partition("://")
    if scheme != "redis" or not sep:
        raise ValueError("expected 'redis://HOST:PORT/DB', got %r" % value)
    address, _, db = rest.partition("/")
    host, colon, port = address.rpartition(":")
    if not colon:
        host, port = address, "6379"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535 \
            or (db and not db.isdigit()):
        raise ValueError("expected 'redis://HOST:PORT/DB', got %r" % value)
    return host, int(port), int(db or 0)


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
log_level.kind = str


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
optional_file.kind = str


TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")


def tls_version(value):
    if value not in TLS_VERSIONS:
        raise ValueError("must be one of %s, got %r" % (", ".join(TLS_VERSIONS), value))
    return value
tls_version.describe = " | ".join(TLS_VERSIONS)
tls_version.kind = str


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
verify_peer.kind = str


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
sni_certs.kind = None


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
alpn_protocols.kind = None


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
    Setting("timeout", 30.0, seconds(),
            "A worker whose event loop has not turned for this long (a CPU loop or a "
            "blocking call in a callback) has its stack logged, is killed and replaced; "
            "task workers are exempt while running a task; 0 = off.", cli=("-t", "--timeout")),
    Setting("max_worker_memory", 0, integer(0),
            "MiB of RSS past which a worker retires like max_request (replacement "
            "first); checked about once a second; 0 = off.", cli="--max-worker-memory"),
    Setting("process_name", "gswoole", text,
            "Prefix of the process titles ('gswoole: worker process #0').", cli=("-n", "--name"),
            config_names=('proc_name',)),
    Setting("user", None, optional_text, "Run workers as this user (master must be root).",
            cli=("-u", "--user")),
    Setting("group", None, optional_text, "Run workers as this group.", cli=("-g", "--group")),
    Setting("daemonize", False, boolean, "Detach the master from the terminal.",
            cli=("-D", "--daemon")),
    Setting("pid_file", None, optional_text, "Write the master's pid here; removed on exit.",
            cli=("-p", "--pid"),
            config_names=('pidfile',)),
    Setting("log_file", None, optional_text, "Append logs here instead of stderr ('-': stderr).",
            cli="--log-file",
            config_names=('errorlog',)),
    Setting("log_level", "info", log_level, "Level of the 'gswoole' logger.",
            cli="--log-level",
            config_names=('loglevel',)),
    Setting("log_config", None, log_config,
            "Logging configuration: a logging.config.dictConfig dict, a .json file "
            "holding one, or a fileConfig .ini file; replaces log_file/log_level. Records "
            "carry %(role)s and %(worker_id)s.", cli="--log-config",
            config_names=('logconfig', 'logconfig_dict')),
    Setting("metrics_bind", None, optional_address,
            "Serve Prometheus metrics from the master at http://HOST:PORT/metrics "
            "(answered even while every worker is busy).", cli="--metrics-bind"),
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
    Setting("enable_delay_receive", False, boolean,
            "Do not read a new connection until server.confirm(fd) (call it in connect)."),
    # TLS, per port (a port is TLS when its sock_type has gswoole.SSL; see docs/tls.md)
    Setting("ssl_cert_file", None, optional_file,
            "PEM certificate (chain) of the TLS ports.", cli="--certfile",
            scopes=SERVER_AND_PORT),
    Setting("ssl_key_file", None, optional_file,
            "PEM private key of ssl_cert_file.", cli="--keyfile",
            scopes=SERVER_AND_PORT),
    Setting("ssl_ciphers", None, optional_text,
            "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's); default "
            "Python's.",
            scopes=SERVER_AND_PORT),
    Setting("ssl_min_version", "TLSv1.2", tls_version, "Oldest TLS version accepted.",
            scopes=SERVER_AND_PORT),
    Setting("ssl_verify_peer", False, verify_peer,
            "Ask TLS clients for a certificate signed by ssl_client_cert_file: True "
            "requires one, 'optional' checks one if sent. --cert-reqs takes gunicorn's "
            "0/1/2.", cli="--cert-reqs",
            scopes=SERVER_AND_PORT),
    Setting("ssl_client_cert_file", None, optional_file,
            "PEM CA bundle that client certificates must chain to.", cli="--ca-certs",
            scopes=SERVER_AND_PORT),
    Setting("ssl_sni_certs", None, sni_certs,
            "Certificates by server name (SNI): {hostname: {'ssl_cert_file': ..., "
            "'ssl_key_file': ...}}; other names get ssl_cert_file.",
            scopes=SERVER_AND_PORT),
    Setting("ssl_alpn_protocols", None, alpn_protocols,
            "ALPN protocols offered, in order of preference (['http/1.1']).",
            scopes=SERVER_AND_PORT),
    Setting("ssl_handshake_timeout", 10.0, seconds(),
            "A TLS client must finish its handshake within this time (checked once a "
            "second); past it the connection is closed.",
            scopes=SERVER_AND_PORT),
    # framing
    Setting("open_eof_check", False, boolean,
            "Deliver data only when the buffer ends with package_eof.",
            scopes=FRAMING),
    Setting("open_eof_split", False, boolean,
            "Deliver one receive per package_eof-terminated packet.",
            scopes=FRAMING),
    Setting("package_eof", b"\r\n", delimiter, "Packet terminator for EOF framing.",
            scopes=FRAMING),
    Setting("open_length_check", False, boolean,
            "Length-prefixed framing (see package_length_*).",
            scopes=FRAMING),
    Setting("package_length_type", "N", choice(*"cCsSnNlLvV"),
            "Length field format, Swoole's pack codes.",
            scopes=FRAMING),
    Setting("package_length_offset", 0, integer(0), "Offset of the length field.",
            scopes=FRAMING),
    Setting("package_body_offset", 0, integer(0),
            "Bytes before the body; the length field counts from here.",
            scopes=FRAMING),
    Setting("package_length_func", None, optional_callable,
            "callable(buffer) -> packet length, 0 = need more, -1 = bad (close).",
            scopes=FRAMING),
    Setting("package_max_length", 2 * MiB, integer(1),
            "Largest packet (HTTP body, WebSocket message); past it the connection is "
            "closed (WebSocket: with close code 1009).",
            scopes=FRAMING),
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
            cli="--keep-alive",
            config_names=('keepalive',)),
    Setting("proxy_protocol", False, boolean,
            "Connections on stream ports start with a PROXY protocol header (v1 or v2, "
            "as HAProxy/AWS NLB send); the client address in it becomes the "
            "connection's remote address.", cli="--proxy-protocol"),
    Setting("proxy_allow_ips", "127.0.0.1,::1", text,
            "Peers allowed to send a PROXY header (comma-separated, or '*'); from "
            "others the bytes are the protocol's own.", cli="--proxy-allow-from"),
    # WebSocket (Swoole's names)
    Setting("open_websocket_close_frame", False, boolean,
            "Pass the peer's close frame to the message callback (opcode 8)."),
    Setting("open_websocket_ping_frame", False, boolean,
            "Pass ping frames to the message callback too (they are answered anyway)."),
    Setting("open_websocket_pong_frame", False, boolean,
            "Pass pong frames to the message callback (by default they are swallowed)."),
    Setting("websocket_ping_interval", 0.0, seconds(),
            "Ping a WebSocket peer idle this long, and close it if the next interval "
            "passes without its pong; 0 = off."),
    Setting("websocket_compression", False, boolean,
            "Accept permessage-deflate when a client offers it."),
    Setting("websocket_subprotocols", (), text_list,
            "Subprotocols to accept, in order of preference (Sec-WebSocket-Protocol)."),
    Setting("upload_tmp_dir", None, optional_text,
            "Where uploaded files are written (default: the system temp dir)."),
    Setting("access_log", None, optional_text,
            "HTTP access log in the common log format: a file path, or '-' for stderr.",
            cli="--access-log",
            config_names=('accesslog',)),
    Setting("access_log_format", None, access_log_format,
            "Access-log line as a %-format over gunicorn's atoms (h l u t r s b f a T D "
            "L M p m U q H, %({header}i)s, %({header}o)s); default: the common log "
            "format plus microseconds.", cli="--access-logformat"),
    Setting("access_log_json", False, boolean,
            "Write the access log as one JSON object per line.", cli="--access-log-json"),
    # many machines (docs/cluster.md)
    Setting("cluster_redis", None, redis_url,
            "Join the cluster on this Redis ('redis://host:port/db'); needs cluster_secret.",
            cli="--cluster-redis"),
    Setting("node_id", None, optional_text,
            "This node's name in the cluster (default: host name and master pid).",
            cli="--node-id"),
    Setting("cluster_secret", None, optional_text,
            "Key of the HMAC that signs every message crossing Redis (same on every node).",
            cli="--cluster-secret"),
    Setting("cluster_node_timeout", 10.0, seconds(1.0),
            "A node that has not refreshed its registration for this long is dead.",
            cli="--cluster-node-timeout"),
    Setting("task_backend", "local", choice("local", "redis"),
            "Where tasks go: 'local' (this node's task workers, over socketpairs) or "
            "'redis' (one Redis stream every node's task workers read; needs "
            "cluster_redis; at-least-once).", cli="--task-backend"),
    Setting("task_reclaim_time", 30.0, seconds(1.0),
            "With task_backend='redis': a task whose task worker or node died is run "
            "again by another task worker after it has been untouched this long.",
            cli="--task-reclaim-time"),
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
        try:
            if swoole_settings.check(name, value) is not None:
                return value   # Swoole's, meaningless here: kept, logged at start()
        except swoole_settings.Refused as exc:
            raise SettingError("setting %r (Swoole's) asks for something gswoole does not "
                               "have: %s" % (name, exc)) from None
        near = difflib.get_close_matches(name, BY_NAME, n=3, cutoff=0.6)
        hint = "; did you mean %s?" % " or ".join(repr(n) for n in near) if near else ""
        raise SettingError("unknown setting %r%s" % (name, hint))
    try:
        return setting.validate(value)
    except (TypeError, ValueError) as exc:
        raise SettingError("setting %r: %s" % (name, exc)) from None


def validate_all(values):
    """Validate a mapping of settings; returns a new dict of normalised values
    (Swoole's second spellings, like max_connection, under gswoole's name)."""
    checked = {}
    for name, value in values.items():
        if name not in BY_NAME:
            name = swoole_settings.RENAMED.get(name, name)
        checked[name] = validate(name, value)
    return checked


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


def names_in(scope):
    """The names of the settings that may be set in ``scope``."""
    return tuple(s.name for s in SETTINGS if scope in s.scopes)
