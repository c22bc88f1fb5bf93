"""The import rules, checked on the source: imports flow one way (cli ->
server facade -> master/worker -> reactor/connection -> protocol cores),
sans-IO cores import no gevent and no sockets, and nothing low imports the
facade."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gswoole"

SANS_IO = ["framing.py", "http/parser.py", "http/writer.py", "http/forms.py", "settings.py",
           "callbacks.py", "errors.py", "proxy_protocol.py", "access_format.py", "proxy.py",
           "swoole_names.py", "swoole_settings.py", "websocket/protocol.py", "tls.py",
           "cluster/resp.py", "cluster/wire.py"]
LOW_LEVEL = ["reactor.py", "controls.py", "connection.py", "acceptor.py", "datagrams.py",
             "sending.py", "closing.py", "stopping.py", "transport.py", "encryption.py", "tls.py", "http/writer.py",
             "framing.py", "http/parser.py", "ipc.py", "websocket/protocol.py", "shm.py",
             "table.py", "sync.py", "user_process.py", "channels.py", "shared.py", "timers.py",
             "tasks.py", "worker.py", "task_worker.py", "master.py", "sockets.py",
             "watchdog.py", "metrics.py", "logs.py", "proxy_protocol.py", "access_format.py"]
FACADES = {"server", "cli", "wsgi", "http.server", "websocket.server"}


def imported_modules(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                names.add("." * node.level + module)
                names.update("." * node.level + (module + "." if module else "") + a.name
                             for a in node.names)
            else:
                names.add(module)
    return names


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_cores_import_no_io(name):
    found = imported_modules(PACKAGE / name)
    bad = {m for m in found if m.split(".")[0] in ("gevent", "greenlet", "socket", "_socket",
                                                   "select", "selectors")}
    assert not bad, "%s imports %s" % (name, sorted(bad))


@pytest.mark.parametrize("name", LOW_LEVEL)
def test_low_modules_do_not_import_the_facade(name):
    found = imported_modules(PACKAGE / name)
    bad = {m for m in found if m.lstrip(".") in FACADES or m.lstrip(".").startswith("cli")}
    assert not bad, "%s imports the facade: %s" % (name, sorted(bad))
