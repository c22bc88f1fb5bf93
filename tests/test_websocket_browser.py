"""A real browser against the chat example: headless Chromium opens the
page, its script connects the WebSocket, and messages go both ways between
the browser and a Python client.

Chromium is driven over the DevTools protocol (a WebSocket itself), with
the websockets package's sync client: no driver, no npm. In CI Chromium is
installed by .ci/run (Debian's ``chromium``), which sets GSWOOLE_CI so that a
missing browser fails there; elsewhere the test skips when it is missing."""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import stop_process_group

from websockets.sync.client import connect

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAT = os.path.join(REPO, "examples", "chat", "server.py")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1"]

if CHROMIUM is None:
    if os.environ.get("GSWOOLE_CI"):
        raise RuntimeError("CI must run the browser test: .ci/run installs chromium")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)",
                allow_module_level=True)


class Lines:
    """Collects a process's output lines; ``wait(regex)`` for one to appear."""

    def __init__(self, stream):
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for raw in stream:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()

    def wait(self, pattern, timeout):
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no %r within %ss:\n%s" % (pattern, timeout,
                                                                   "\n".join(self.lines)))
                self.cond.wait(remaining)


def _start(args, **kw):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, **kw)


class DevTools:
    """The smallest DevTools client: commands to one page, over a flat session."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.session = None

    def call(self, method, timeout=10, **params):
        msg_id = next(self.ids)
        message = {"id": msg_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            answer = json.loads(self.ws.recv(max(0.1, deadline - time.monotonic())))
            if answer.get("id") == msg_id:
                if "error" in answer:
                    raise AssertionError("%s: %s" % (method, answer["error"]))
                return answer["result"]

    def open_page(self, url):
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("page never satisfied %s; log: %r" % (
                    expression, self.evaluate("document.getElementById('log').innerText")))
            time.sleep(0.05)



@pytest.mark.timeout(90)
def test_browser_chats_with_python_client(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    server = _start([sys.executable, CHAT, "0"], env=env)
    browser = None
    try:
        out = Lines(server.stdout)
        port = int(out.wait(r"on 127\.0\.0\.1:(\d+)", 20).group(1))
        browser = _start([CHROMIUM, *FLAGS, "--user-data-dir=%s" % (tmp_path / "profile"),
                          "about:blank"])
        endpoint = Lines(browser.stdout).wait(r"DevTools listening on (ws://\S+)", 30).group(1)
        with connect(endpoint, open_timeout=10, max_size=None) as cdp, \
                connect("ws://127.0.0.1:%d/ws" % port, open_timeout=10) as python:
            devtools = DevTools(cdp)
            python.recv(10)                                   # welcome
            devtools.open_page("http://127.0.0.1:%d/?say=hello-from-chromium" % port)
            # the browser's message reaches the Python client ...
            while True:
                line = python.recv(10)
                if line.endswith(": hello-from-chromium"):
                    break
            # ... and the page shows it too (the server broadcast it back)
            devtools.wait_for("document.body.dataset.state === 'open' && "
                              "document.getElementById('log').innerText"
                              ".includes(': hello-from-chromium')")
            python.send("hello-from-python")
            devtools.wait_for("document.getElementById('log').innerText"
                              ".includes(': hello-from-python')")
            # the browser typing into the form, as a user would
            devtools.evaluate("document.getElementById('text').value = 'typed in the page';"
                              "document.getElementById('form').requestSubmit(); true")
            while True:
                if python.recv(10).endswith(": typed in the page"):
                    break
    finally:
        if browser is not None:
            stop_process_group(browser, 15)
        stop_process_group(server, 15)
