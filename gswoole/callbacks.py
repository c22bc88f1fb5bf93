"""Event names and callback resolution.

``on()`` accepts Swoole's spellings ("WorkerStart", "onWorkerStart",
"worker_start") and four callback styles: any callable, a
``"module:function"`` / ``"module:Class.method"`` string, or an
``(object_or_class, "method")`` tuple. Everything is resolved and checked when
``on()`` is called, so a typo fails at registration rather than on the first
connection, in a worker, with only a log line to show for it.
"""

import importlib
import inspect

from .errors import CallbackError

# canonical name -> (arguments passed, where it runs)
EVENTS = {
    "start": ("server",),
    "shutdown": ("server",),
    "workerstart": ("server", "worker_id"),
    "workerstop": ("server", "worker_id"),
    "workererror": ("server", "worker_id", "worker_pid", "exit_code", "signal"),
    "connect": ("server", "fd", "reactor_id"),
    "receive": ("server", "fd", "reactor_id", "data"),
    "close": ("server", "fd", "reactor_id"),
    "packet": ("server", "data", "client_info"),
    "task": ("server", "task_id", "src_worker_id", "data"),
    "finish": ("server", "task_id", "data"),
    "pipemessage": ("server", "src_worker_id", "message"),
    "request": ("request", "response"),
    "handshake": ("request", "response"),
    "open": ("server", "request"),
    "message": ("server", "frame"),
}

# How the docs and error messages spell them.
DISPLAY = {
    "workerstart": "workerStart", "workerstop": "workerStop",
    "workererror": "workerError", "pipemessage": "pipeMessage",
}


def canonical_event(name, events=EVENTS, what="event"):
    """Map any accepted spelling to the canonical event name of ``events``, or raise."""
    if not isinstance(name, str):
        raise CallbackError("event name must be a string, got %r" % (name,))
    key = name.replace("_", "").lower()
    if key not in events and key.startswith("on") and key[2:] in events:
        key = key[2:]
    if key not in events:
        known = ", ".join(DISPLAY.get(e, e) for e in events)
        raise CallbackError("unknown %s %r; known events: %s" % (what, name, known))
    return key


def import_attribute(module_name, attr_path):
    """The object ``attr_path`` ("name" or "Class.method") names in module
    ``module_name``, importing the module. Raises ImportError as the import
    does, and AttributeError naming the object and the missing part: the
    one "module:attr" lookup for callback strings and gswoole-serve's TARGET."""
    obj = importlib.import_module(module_name)
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError("%r has no attribute %r" % (obj, part)) from None
    return obj


def _import_target(spec):
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise CallbackError("callback string %r must look like 'module:function' or "
                            "'module:Class.method'" % spec)
    try:
        return import_attribute(module_name, attr_path)
    except ImportError as exc:
        raise CallbackError("callback %r: cannot import module %r: %s"
                            % (spec, module_name, exc)) from None
    except AttributeError as exc:
        raise CallbackError("callback %r: %s" % (spec, exc)) from None


def resolve(event, callback):
    """Return ``(canonical_event, callable)`` or raise CallbackError.

    The callable is checked against the event's argument count, so a
    receive handler written for connect's three arguments is caught here."""
    event = canonical_event(event)
    original = callback
    if isinstance(callback, str):
        callback = _import_target(callback)
    elif isinstance(callback, tuple):
        if len(callback) != 2 or not isinstance(callback[1], str):
            raise CallbackError("callback tuple for %r must be (object_or_class, "
                                "'method_name'), got %r" % (event, callback))
        owner, method = callback
        try:
            callback = getattr(owner, method)
        except AttributeError:
            raise CallbackError("callback for %r: %r has no method %r"
                                % (event, owner, method)) from None
    if not callable(callback):
        raise CallbackError("callback for %r is not callable: %r" % (event, original))
    _check_arity(event, callback, original)
    return event, callback


def _check_arity(event, callback, original):
    args = EVENTS[event]
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):
        return  # builtins without a signature: trust them
    try:
        signature.bind(*args)
    except TypeError as exc:
        hint = ""
        if isinstance(original, tuple) and inspect.isclass(original[0]):
            hint = " (an instance method looked up on the class: pass an instance)"
        raise CallbackError(
            "callback %r for %r cannot take the event's arguments (%s): %s%s"
            % (original, DISPLAY.get(event, event), ", ".join(args), exc, hint)) from None
