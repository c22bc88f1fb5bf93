"""Callback resolution at on(): the four styles and every rejection."""

import functools
import sys
import types

import pytest

import gswoole
from gswoole.callbacks import canonical_event, resolve
from gswoole.errors import CallbackError


def receive_fn(server, fd, reactor_id, data):
    return ("fn", data)


class Handler:
    def __init__(self, tag="obj"):
        self.tag = tag

    def on_receive(self, server, fd, reactor_id, data):
        return (self.tag, data)

    @staticmethod
    def static_receive(server, fd, reactor_id, data):
        return ("static", data)

    @classmethod
    def class_receive(cls, server, fd, reactor_id, data):
        return ("class", data)

    def __call__(self, server, fd, reactor_id, data):
        return ("callable", data)


@pytest.fixture(autouse=True)
def handlers_module():
    module = types.ModuleType("gsw_test_handlers")
    module.receive_fn = receive_fn
    module.Handler = Handler
    module.not_callable = 42
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


@pytest.mark.parametrize("spelling", ["WorkerStart", "workerStart", "onWorkerStart",
                                      "worker_start", "on_worker_start", "WORKERSTART"])
def test_event_spellings(spelling):
    assert canonical_event(spelling) == "workerstart"


@pytest.mark.parametrize("callback, expected", [
    (receive_fn, "fn"),
    (lambda s, fd, rid, data: ("lambda", data), "lambda"),
    (Handler("bound").on_receive, "bound"),
    (Handler(), "callable"),
    (functools.partial(lambda tag, s, fd, rid, data: (tag, data), "partial"), "partial"),
    ("gsw_test_handlers:receive_fn", "fn"),
    ("gsw_test_handlers:Handler.static_receive", "static"),
    ("gsw_test_handlers:Handler.class_receive", "class"),
    ((Handler("tuple"), "on_receive"), "tuple"),
    ((Handler, "static_receive"), "static"),
    ((Handler, "class_receive"), "class"),
])
def test_callback_styles(callback, expected):
    event, fn = resolve("receive", callback)
    assert event == "receive"
    assert fn(None, 1, 0, b"x") == (expected, b"x")


@pytest.mark.parametrize("event, callback, message", [
    ("recieve", receive_fn, "unknown event 'recieve'"),
    ("receive", "no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
    ("receive", "gsw_test_handlers:missing", "has no attribute 'missing'"),
    ("receive", "gsw_test_handlers", "must look like 'module:function'"),
    ("receive", "gsw_test_handlers:not_callable", "is not callable"),
    ("receive", 42, "is not callable"),
    ("receive", (Handler(), "nope"), "has no method 'nope'"),
    ("receive", (Handler, "on_receive"), "pass an instance"),
    ("receive", lambda s, fd, rid: None, "cannot take the event's arguments"),
    ("connect", lambda s, fd, rid, data, extra: None, "cannot take the event's arguments"),
])
def test_rejected_at_on(event, callback, message):
    server = gswoole.Server("127.0.0.1", 0)
    with pytest.raises(CallbackError) as info:
        server.on(event, callback)
    assert message in str(info.value)


def test_variadic_callbacks_are_accepted():
    server = gswoole.Server("127.0.0.1", 0)
    assert server.on("receive", lambda *args: None)
    assert server.on("connect", lambda s, fd, rid, extra=None: None)


def test_start_without_receive_fails_clearly():
    server = gswoole.Server("127.0.0.1", 0)
    with pytest.raises(gswoole.ServerStateError, match="needs a 'receive' callback"):
        server.start()
