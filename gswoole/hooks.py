"""gunicorn's server hooks, from a ``gswoole-serve -c`` config file.

A config file may define any of these functions, with gunicorn's names and
arguments; each is mapped onto the gswoole event or place where the same
moment happens:

=================  =========================================  ==================
hook               arguments                                  runs
=================  =========================================  ==================
on_starting        (server)                                   master, before start
when_ready         (server)                                   master, ``start`` event
post_fork          (server, worker)                           worker, before workerStart
worker_exit        (server, worker)                           worker, after workerStop
child_exit         (server, worker)                           master, a worker was reaped
on_exit            (server)                                   master, after shutdown
pre_request        (worker, req)                              worker, WSGI only
post_request       (worker, req, environ, resp)               worker, WSGI only
=================  =========================================  ==================

``server`` is the gswoole Server. ``worker`` describes the process
(``WorkerInfo``: ``worker_id``, ``pid``, ``taskworker``; in ``child_exit``
also ``exit_code`` and ``signal``). ``req`` has gunicorn's ``method``,
``path``, ``query``, ``uri``, ``version`` and ``headers`` (a list of
(NAME, value)); ``resp`` has ``status`` (the status line's text),
``status_code`` and ``headers``.
"""

import os

HOOKS = ("on_starting", "when_ready", "post_fork", "worker_exit", "child_exit", "on_exit",
         "pre_request", "post_request")


class WorkerInfo:
    """The ``worker`` argument of the hooks."""

    def __init__(self, worker_id, pid, taskworker, exit_code=None, signal=None):
        self.worker_id = worker_id
        self.pid = pid
        self.taskworker = taskworker
        self.exit_code = exit_code
        self.signal = signal

    def __repr__(self):
        return "<WorkerInfo #%d pid %d>" % (self.worker_id, self.pid)


def _this_worker(server):
    return WorkerInfo(server.worker_id, os.getpid(), server.taskworker)


def install(server, hooks):
    """Wire ``hooks`` ({name: function}) into ``server`` (before start()).
    on_starting and on_exit are the caller's to run around start()."""
    if "when_ready" in hooks:
        _chain(server, "start", lambda s: hooks["when_ready"](s), before=False)
    if "post_fork" in hooks:
        _chain(server, "workerStart", lambda s, wid: hooks["post_fork"](s, _this_worker(s)),
               before=True)
    if "worker_exit" in hooks:
        _chain(server, "workerStop", lambda s, wid: hooks["worker_exit"](s, _this_worker(s)),
               before=False)
    if "child_exit" in hooks:
        child_exit = hooks["child_exit"]
        server._child_exit_hook = lambda worker_id, pid, taskworker, code, sig: child_exit(
            server, WorkerInfo(worker_id, pid, taskworker, code, sig))


def _chain(server, event, hook, before):
    from .callbacks import canonical_event
    user = server._callbacks.get(canonical_event(event))

    def both(*args):
        if before:
            hook(*args)
        if user is not None:
            user(*args)
        if not before:
            hook(*args)
    server.on(event, both)


# -- pre_request / post_request: a WSGI middleware ----------------------------

class RequestInfo:
    def __init__(self, environ):
        self.method = environ.get("REQUEST_METHOD", "")
        self.path = environ.get("PATH_INFO", "")
        self.query = environ.get("QUERY_STRING", "")
        self.uri = environ.get("RAW_URI") or (self.path + ("?" + self.query if self.query
                                                            else ""))
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.0")
        major, _, minor = protocol.partition("/")[2].partition(".")
        self.version = (int(major or 1), int(minor or 0))
        self.headers = [(key[5:].replace("_", "-"), value) for key, value in environ.items()
                        if key.startswith("HTTP_")]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                self.headers.append((key.replace("_", "-"), environ[key]))


class ResponseInfo:
    def __init__(self):
        self.status = None
        self.headers = []

    @property
    def status_code(self):
        return int(self.status.split(None, 1)[0]) if self.status else None


def wrap_wsgi(app, pre_request=None, post_request=None, get_server=None):
    """``app`` with gunicorn's pre_request/post_request around each request;
    post_request runs once the response is complete (the body iterable closed).
    ``get_server()`` gives the Server, for the worker's id."""
    def hooked(environ, start_response):
        server = get_server() if get_server is not None else None
        worker = WorkerInfo(server.worker_id if server is not None else -1, os.getpid(), False)
        req = RequestInfo(environ)
        resp = ResponseInfo()
        if pre_request is not None:
            pre_request(worker, req)

        def recording_start_response(status, headers, exc_info=None):
            resp.status, resp.headers = status, list(headers)
            return start_response(status, headers, exc_info) if exc_info is not None \
                else start_response(status, headers)
        try:
            body = app(environ, recording_start_response)
        except BaseException:
            if post_request is not None:
                post_request(worker, req, environ, resp)
            raise
        return _ClosingBody(body, lambda: post_request and post_request(worker, req, environ,
                                                                        resp))
    return hooked


class _ClosingBody:
    """Iterates the app's body; on close() closes it and runs ``after``."""

    def __init__(self, body, after):
        self._body = body
        self._after = after

    def __iter__(self):
        return iter(self._body)

    def close(self):
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._after()
