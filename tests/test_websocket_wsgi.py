"""WebSocket for WSGI apps under gswoole-serve: environ["wsgi.websocket"]
(gevent-websocket's API), "gunicorn.socket" for apps that take the socket
over, and a Flask-SocketIO app (async_mode="gevent") driven by the
python-socketio client, both ways python-engineio can run it."""

import os
import threading

import pytest

from conftest import stop_process_group
from test_wsgi import _port_of, request

pytest.importorskip("flask_socketio")
socketio = pytest.importorskip("socketio")
ws_client = pytest.importorskip("websockets.sync.client")

RAW_APP = """
def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain"]
    if environ["PATH_INFO"] == "/refuse":
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"no websocket for you"]
    assert "gunicorn.socket" in environ
    ws.send("hello %s %s" % (ws.path, ws.version))
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)
    return []
"""

SIO_APP = """
from flask import Flask
from flask_socketio import SocketIO, emit
app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")

@socketio.on("chat")
def chat(text):
    emit("chat", {"text": text}, broadcast=True)
"""


def _serve(tmp_path, source, *args, block_gevent_websocket=False):
    import subprocess
    import sys
    (tmp_path / "wsapp.py").write_text(source)
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    if block_gevent_websocket:
        # A plain `pip install flask-socketio`: python-engineio finds no
        # gevent-websocket and falls back to simple-websocket.
        blocker = tmp_path / "blocker" / "geventwebsocket"
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text("raise ImportError('blocked by the test')\n")
        paths.insert(0, str(blocker.parent))
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "gswoole", "wsapp:app", "--bind",
                             "127.0.0.1:0", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    return proc, _port_of(proc)


def test_wsgi_websocket_echo_plain_and_refused(tmp_path):
    proc, port = _serve(tmp_path, RAW_APP)
    try:
        assert request(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"plain"
        with ws_client.connect("ws://127.0.0.1:%d/echo" % port, open_timeout=10) as ws:
            assert ws.recv(10) == "hello /echo 13"
            ws.send("text")
            assert ws.recv(10) == "text"
            ws.send(b"\x00bin")
            assert ws.recv(10) == b"\x00bin"
        # An app that answers with plain HTTP refuses the upgrade.
        with pytest.raises(Exception) as refused:
            ws_client.connect("ws://127.0.0.1:%d/refuse" % port, open_timeout=10)
        assert "403" in str(refused.value)
        # The worker is fine afterwards.
        assert request(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"plain"
    finally:
        stop_process_group(proc)


@pytest.mark.parametrize("driver", ["simple-websocket", "gevent-websocket"])
def test_flask_socketio_under_gswoole_serve(tmp_path, driver):
    if driver == "gevent-websocket":
        pytest.importorskip("geventwebsocket")
    proc, port = _serve(tmp_path, SIO_APP, "-w", "1",
                        block_gevent_websocket=driver == "simple-websocket")
    clients = []
    try:
        received = [[], []]
        both = threading.Event()
        for i in range(2):
            sio = socketio.Client()

            def on_chat(data, i=i):
                received[i].append(data["text"])
                if all(received):
                    both.set()
            sio.on("chat", on_chat)
            sio.connect("http://127.0.0.1:%d" % port, transports=["websocket"],
                        wait_timeout=10)
            assert sio.transport() == "websocket"
            clients.append(sio)
        clients[0].emit("chat", "hello from 0")
        assert both.wait(10), received
        assert received == [["hello from 0"], ["hello from 0"]]
    finally:
        for sio in clients:
            sio.disconnect()
        stop_process_group(proc)
    errors = proc.stderr.read().decode()
    assert "Traceback" not in errors, errors
