"""``gswoole-serve TARGET [options]`` (also ``python -m gswoole``).

TARGET is ``module:attr`` or ``path/file.py:attr`` naming a WSGI app, a
gswoole Server, or a factory returning either (``module:create_app`` when it
takes no arguments, or spelled ``module:create_app()``). The options are
derived from the settings declaration (``settings.SETTINGS``: each setting
with a ``cli`` flag), with gunicorn's spelling where the two overlap, so the
command line, the config file and the docs cannot drift apart.

This is the only place that exits the process; errors in the user's input
come out as one line on stderr, not a traceback. A gunicorn flag that
gswoole-serve does not have gets one line naming what to use instead.

Command-line-only options (they shape how TARGET is loaded and wrapped, so
they are not Server settings): ``--chdir``, ``-e KEY=VAL``, ``--reload``
(gswoole/reloader.py), ``--forwarded-allow-ips`` (gswoole/proxy.py), and
gunicorn's config hooks in ``-c`` files (gswoole/hooks.py).
"""

import argparse
import inspect
import os
import runpy
import sys

from . import __version__, hooks, reloader, settings
from .callbacks import import_attribute
from .errors import ServerStateError

EXIT_USAGE = 2


class UsageError(Exception):
    pass



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
    parser.add_argument("--chdir", metavar="DIR",
                        help="change to DIR before loading TARGET")
    parser.add_argument("-e", "--env", action="append", default=None, metavar="KEY=VALUE",
                        help="set an environment variable (repeatable)")
    parser.add_argument("--reload", action="store_true", default=None,
                        help="restart the server when a .py file under the current "
                             "directory changes (needs watchfiles: gswoole[reload]); "
                             "for development")
    parser.add_argument("--forwarded-allow-ips", metavar="IPS", default=None,
                        help="trust X-Forwarded-For/-Proto from these peers (comma-"
                             "separated, or '*'); default 127.0.0.1,::1")
    parser.add_argument("--version", action="version",
                        version="gswoole-serve (gswoole %s)" % __version__)
    for setting in settings.SETTINGS:
        if setting.cli is None:
            continue
        kind = setting.kind
        if kind is bool:
            parser.add_argument(*setting.flags, dest=setting.name, action="store_true",
                                default=None, help=setting.doc.replace("%", "%%"))
        else:
            parser.add_argument(*setting.flags, dest=setting.name, type=kind, default=None,
                                metavar=setting.name.upper(), help=setting.doc.replace("%", "%%"))
    return parser


# Config-file names: setting names, or the CLI flag without dashes
# ("workers", "max_requests"), as in gunicorn's config files.
# gunicorn's own config-file spellings are declared with each setting.
_CONFIG_ALIASES = {s.flags[-1].lstrip("-").replace("-", "_"): s.name
                   for s in settings.SETTINGS if s.cli}
_CONFIG_ALIASES.update((alias, s.name) for s in settings.SETTINGS for alias in s.config_names)


# What a gunicorn user reaches for that gswoole-serve spells differently or
# does not need: one line of advice instead of argparse's "unrecognized".
GUNICORN_ONLY = {
    "-k": "gswoole-serve always runs gevent workers; drop it",
    "--worker-class": "gswoole-serve always runs gevent workers; drop it",
    "--threads": "each worker serves many connections on greenlets; use --workers",
    "--preload": "the app is always loaded in the master before the fork; drop it",
    "--access-logfile": "use --access-log FILE",
    "--error-logfile": "use --log-file FILE",
    "--log-syslog": "use --log-config with a logging.handlers.SysLogHandler",
    "--logger-class": "use --log-config",
    "--statsd-host": "use --metrics-bind HOST:PORT (Prometheus)",
    "--statsd-prefix": "use --metrics-bind HOST:PORT (Prometheus)",
    "--worker-tmp-dir": "not needed: the timeout watchdog uses shared memory",
    "--pythonpath": "use --chdir DIR or the PYTHONPATH environment variable",
    "--paste": "build the app in a module and name it as TARGET (module:attr)",
    "--umask": "set it in the service manager (systemd UMask=)",
    "--initgroups": "not needed: --user/--group set the groups",
    "--capture-output": "workers write to the master's stderr already; use --log-file",
    "--check-config": "run gswoole-serve; bad settings fail at start with one line",
    "--print-config": "print(server.setting) in TARGET",
    "--spew": "no equivalent",
}

# gunicorn config-file names of the above (worker_class = ...), same advice.
_GUNICORN_ONLY_CONFIG = {flag.lstrip("-").replace("-", "_"): advice
                         for flag, advice in GUNICORN_ONLY.items() if flag.startswith("--")}
_GUNICORN_ONLY_CONFIG.update(preload_app=GUNICORN_ONLY["--preload"],
                             accesslog_file=GUNICORN_ONLY["--access-logfile"],
                             statsd_host=GUNICORN_ONLY["--statsd-host"])


def check_gunicorn_flags(argv):
    """Raise UsageError for a gunicorn flag gswoole-serve lacks."""
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in GUNICORN_ONLY:
            raise UsageError("gunicorn's %s is not a gswoole-serve flag: %s"
                             % (flag, GUNICORN_ONLY[flag]))


class Config:
    """What a -c file gave: settings, bind, hooks and the command-line-only options."""

    def __init__(self):
        self.values = {}
        self.bind = None
        self.hooks = {}
        self.env = []
        self.chdir = None
        self.reload = None
        self.forwarded_allow_ips = None


def load_config(path):
    """A ``Config`` from a Python config file (gunicorn's format)."""
    if not os.path.exists(path):
        raise UsageError("config file %s does not exist" % path)
    try:
        namespace = runpy.run_path(path)
    except Exception as exc:
        raise UsageError("config file %s failed: %s: %s"
                         % (path, type(exc).__name__, exc)) from None
    config = Config()
    for key, value in namespace.items():
        if key.startswith("_") or inspect.ismodule(value) or inspect.isclass(value):
            continue
        if key == "bind":
            config.bind = [value] if isinstance(value, str) else list(value)
        elif key in hooks.HOOKS:
            if not callable(value):
                raise UsageError("config file %s: hook %r must be a function" % (path, key))
            config.hooks[key] = value
        elif key == "raw_env":
            config.env = [value] if isinstance(value, str) else list(value)
        elif key in ("chdir", "reload", "forwarded_allow_ips"):
            setattr(config, key, value)
        elif key in settings.BY_NAME or key in _CONFIG_ALIASES:
            config.values[_CONFIG_ALIASES.get(key, key)] = value
        elif key in _GUNICORN_ONLY_CONFIG:
            raise UsageError("config file %s: gunicorn's %r is not a gswoole setting: %s"
                             % (path, key, _GUNICORN_ONLY_CONFIG[key]))
        elif inspect.isfunction(value):
            continue   # a helper function of the config file
        else:
            raise UsageError("config file %s: unknown setting %r" % (path, key))
    return config


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
        obj = import_attribute(module_name, attr)
    except ImportError as exc:
        if getattr(exc, "name", None) == module_name:
            raise UsageError("cannot import TARGET module %r" % module_name) from None
        raise
    except AttributeError as exc:
        raise UsageError("TARGET %r: %s" % (spec, exc)) from None
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


def build_server(target, values, binds, config_hooks=None, forwarded_allow_ips=None):
    from .proxy import ProxyHeaders
    from .server import Server
    from .sockets import SSL
    from .wsgi import Server as WsgiServer
    config_hooks = config_hooks or {}
    # --certfile (gunicorn's meaning): every address gswoole-serve binds is TLS.
    tls = SSL if values.get("ssl_cert_file") else 0
    if isinstance(target, Server):
        if binds:
            raise UsageError("--bind cannot move a Server that TARGET already created; "
                             "give its address in the code, or let TARGET be a WSGI app")
        for name in ("pre_request", "post_request"):
            if name in config_hooks:
                raise UsageError("the %s hook needs a WSGI app as TARGET, not a gswoole Server"
                                 % name)
        if tls and not any(port.sock_type & SSL for port in target.ports):
            raise UsageError("--certfile: the Server that TARGET created has no TLS port; "
                             "create it with sock_type gswoole.SOCK_TCP | gswoole.SSL")
        server = target
    else:
        binds = binds or ["127.0.0.1:8000"]
        host, port, sock_type = parse_bind(binds[0])
        app = target
        if "pre_request" in config_hooks or "post_request" in config_hooks:
            app = hooks.wrap_wsgi(app, config_hooks.get("pre_request"),
                                  config_hooks.get("post_request"), lambda: server)
        app = ProxyHeaders(app, forwarded_allow_ips or "127.0.0.1,::1")
        server = WsgiServer(app, host, port, sock_type | tls)
        for address in binds[1:]:
            host, port, sock_type = parse_bind(address)
            server.listen(host, port, sock_type | tls)
    server.set(values)
    hooks.install(server, config_hooks)
    return server


def apply_environment(pairs):
    """-e KEY=VALUE (and gunicorn's raw_env) into os.environ."""
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError("bad -e %r: expected KEY=VALUE" % pair)
        os.environ[key] = value


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        check_gunicorn_flags(argv)
    except UsageError as exc:
        print("gswoole-serve: error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if not args.target:
        parser.print_usage(sys.stderr)
        print("gswoole-serve: error: TARGET is required (module:attr or file.py:attr)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config) if args.config else Config()
        apply_environment(config.env + (args.env or []))
        chdir = args.chdir or config.chdir
        if chdir:
            try:
                os.chdir(chdir)
            except OSError as exc:
                raise UsageError("--chdir %s: %s" % (chdir, exc.strerror)) from None
        if (args.reload or config.reload) and not reloader.in_child():
            return reloader.run_with_reloader(argv, os.getcwd())
        values = dict(config.values)
        for setting in settings.SETTINGS:
            value = getattr(args, setting.name, None)
            if value is not None:
                values[setting.name] = value
        binds = args.bind or config.bind
        settings.validate_all(values)
        if not args.no_patch:
            from .process import patch_all
            patch_all()
        target = load_target(args.target)
        server = build_server(target, values, binds, config.hooks,
                              args.forwarded_allow_ips or config.forwarded_allow_ips)
        _announce_on_start(server)
    except (UsageError, settings.SettingError, OSError, reloader.ReloadError) as exc:
        print("gswoole-serve: error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    if "on_starting" in config.hooks:
        config.hooks["on_starting"](server)
    try:
        server.start()
    except (ServerStateError, settings.SettingError) as exc:
        print("gswoole-serve: error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    if "on_exit" in config.hooks:
        config.hooks["on_exit"](server)
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
