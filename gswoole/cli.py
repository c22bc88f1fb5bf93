"""``gswoole-serve TARGET [options]`` (also ``python -m gswoole``).

TARGET is ``module:attr`` or ``path/file.py:attr`` naming a WSGI app, a
gswoole Server, or a factory returning either (``module:create_app`` when it
takes no arguments, or spelled ``module:create_app()``). The options are
derived from the settings declaration (``settings.SETTINGS``: each setting
with a ``cli`` flag), with gunicorn's spelling where the two overlap, so the
command line, the config file and the docs cannot drift apart.

This is the only place that exits the process; errors in the user's input
come out as one line on stderr, not a traceback.
"""

import argparse
import importlib
import inspect
import os
import runpy
import sys

from . import __version__, settings
from .errors import ServerStateError

EXIT_USAGE = 2


class UsageError(Exception):
    pass


def _setting_type(setting):
    describe = getattr(setting.validate, "describe", "")
    if setting.validate is settings.boolean:
        return None
    if describe.startswith("int"):
        return int
    if describe == "seconds":
        return float
    return str


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gswoole-serve",
        description="Run a WSGI app or a gswoole Server with prefork gevent workers.")
    parser.add_argument("target", nargs="?", help="module:attr or path/file.py:attr")
    parser.add_argument("-b", "--bind", action="append", default=None, metavar="ADDRESS",
                        help="HOST:PORT, [HOST6]:PORT or unix:PATH; repeatable "
                             "(default 127.0.0.1:8000)")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="a Python file of settings (worker_num = 4, bind = '...')")
    parser.add_argument("--no-patch", action="store_true",
                        help="do not gevent-monkey-patch before importing TARGET")
    parser.add_argument("--version", action="version",
                        version="gswoole-serve (gswoole %s)" % __version__)
    for setting in settings.SETTINGS:
        if setting.cli is None:
            continue
        kind = _setting_type(setting)
        if kind is None:
            parser.add_argument(*setting.flags, dest=setting.name, action="store_true",
                                default=None, help=setting.doc)
        else:
            parser.add_argument(*setting.flags, dest=setting.name, type=kind, default=None,
                                metavar=setting.name.upper(), help=setting.doc)
    return parser


# Config-file names: setting names, or the CLI flag without dashes
# ("workers", "max_requests"), as in gunicorn's config files.
_CONFIG_ALIASES = {s.flags[-1].lstrip("-").replace("-", "_"): s.name
                   for s in settings.SETTINGS if s.cli}
# gunicorn's config-file spellings that differ from its flags
_CONFIG_ALIASES.update(keepalive="http_keepalive_timeout", pidfile="pid_file",
                       loglevel="log_level", accesslog="access_log", errorlog="log_file",
                       proc_name="process_name")


def load_config(path):
    """Settings (and 'bind') from a Python config file."""
    if not os.path.exists(path):
        raise UsageError("config file %s does not exist" % path)
    try:
        namespace = runpy.run_path(path)
    except Exception as exc:
        raise UsageError("config file %s failed: %s: %s"
                         % (path, type(exc).__name__, exc)) from None
    values, bind = {}, None
    for key, value in namespace.items():
        if key.startswith("_") or inspect.ismodule(value):
            continue
        if key == "bind":
            bind = [value] if isinstance(value, str) else list(value)
        elif key in settings.BY_NAME or key in _CONFIG_ALIASES:
            values[_CONFIG_ALIASES.get(key, key)] = value
        else:
            raise UsageError("config file %s: unknown setting %r" % (path, key))
    return values, bind


def parse_bind(address):
    """'host:port' / '[::1]:port' / 'unix:/path' -> (host, port, sock_type)."""
    from .sockets import SOCK_TCP, SOCK_TCP6, SOCK_UNIX_STREAM
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise UsageError("--bind unix: needs a path")
        return path, 0, SOCK_UNIX_STREAM
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        sock_type = SOCK_TCP6
    else:
        host, sep, port = address.rpartition(":")
        sock_type = SOCK_TCP
        if not sep:
            host, port = address, "8000"
    if not port.isdigit() or int(port) > 65535:
        raise UsageError("bad --bind address %r: expected HOST:PORT or unix:PATH" % address)
    return host or "0.0.0.0", int(port), sock_type


def load_target(spec):
    """Import TARGET; returns the object it names (after calling a factory)."""
    module_part, sep, attr = spec.partition(":")
    attr = attr or "application"
    call = attr.endswith("()")
    attr = attr[:-2] if call else attr
    if module_part.endswith(".py") or os.sep in module_part:
        path = os.path.abspath(module_part)
        if not os.path.exists(path):
            raise UsageError("TARGET file %s does not exist" % module_part)
        sys.path.insert(0, os.path.dirname(path))
        module_name = os.path.splitext(os.path.basename(path))[0]
    else:
        sys.path.insert(0, os.getcwd())
        module_name = module_part
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if getattr(exc, "name", None) == module_name:
            raise UsageError("cannot import TARGET module %r" % module_name) from None
        raise
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError("TARGET %r: module %r has no attribute %r"
                             % (spec, module_name, attr)) from None
    from .server import Server
    if call or (inspect.isfunction(obj) and _takes_no_arguments(obj)):
        obj = obj()
    if not isinstance(obj, Server) and not callable(obj):
        raise UsageError("TARGET %r is neither a WSGI app nor a gswoole Server (got %r)"
                         % (spec, type(obj).__name__))
    return obj


def _takes_no_arguments(fn):
    try:
        inspect.signature(fn).bind()
    except TypeError:
        return False
    return True


def build_server(target, values, binds):
    from .server import Server
    from .sockets import SSL
    from .wsgi import Server as WsgiServer
    # --certfile (gunicorn's meaning): every address gswoole-serve binds is TLS.
    tls = SSL if values.get("ssl_cert_file") else 0
    if isinstance(target, Server):
        if binds:
            raise UsageError("--bind cannot move a Server that TARGET already created; "
                             "give its address in the code, or let TARGET be a WSGI app")
        if tls and not any(port.sock_type & SSL for port in target.ports):
            raise UsageError("--certfile: the Server that TARGET created has no TLS port; "
                             "create it with sock_type gswoole.SOCK_TCP | gswoole.SSL")
        server = target
    else:
        binds = binds or ["127.0.0.1:8000"]
        host, port, sock_type = parse_bind(binds[0])
        server = WsgiServer(target, host, port, sock_type | tls)
        for address in binds[1:]:
            host, port, sock_type = parse_bind(address)
            server.listen(host, port, sock_type | tls)
    server.set(values)
    return server


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.target:
        parser.print_usage(sys.stderr)
        print("gswoole-serve: error: TARGET is required (module:attr or file.py:attr)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        values, binds = {}, None
        if args.config:
            values, binds = load_config(args.config)
        for setting in settings.SETTINGS:
            value = getattr(args, setting.name, None)
            if value is not None:
                values[setting.name] = value
        binds = args.bind or binds
        settings.validate_all(values)
        if not args.no_patch:
            from .process import patch_all
            patch_all()
        target = load_target(args.target)
        server = build_server(target, values, binds)
        _announce_on_start(server)
    except (UsageError, settings.SettingError, OSError) as exc:
        print("gswoole-serve: error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        server.start()
    except (ServerStateError, settings.SettingError) as exc:
        print("gswoole-serve: error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    return 0


def _announce_on_start(server):
    user_start = server._callbacks.get("start")

    def announce(server):
        where = ", ".join(listener.describe() for listener in server.ports)
        # One write (print() is two under PYTHONUNBUFFERED): workers share stdout.
        sys.stdout.write("gswoole-serve: listening on %s with %d worker(s), master pid %d\n"
                         % (where, server.setting["worker_num"], server.master_pid))
        sys.stdout.flush()
        if user_start is not None:
            user_start(server)
    server.on("start", announce)
