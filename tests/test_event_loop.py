"""EventLoopError, per_process and patch_all, each in a fresh interpreter
(the test process itself may already have a gevent hub)."""

import subprocess
import sys
import textwrap

import pytest


def run(code):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("setup", [
    "import gevent; g = gevent.spawn(gevent.sleep, 10)",
    "import gevent; g = gevent.spawn(gevent.sleep, 10); gevent.sleep(0)",
    "import gevent; t = gevent.get_hub().loop.timer(5); t.start(lambda: None)",
    "import gswoole; gswoole.Timer.tick(1000, lambda tid: None)",
    "import gswoole; gswoole.Timer.after(1000, lambda: None)",
])
def test_server_refuses_live_event_loop(setup):
    out = run(setup + """
import gswoole
try:
    gswoole.Server("127.0.0.1", 0)
except gswoole.EventLoopError as exc:
    print("ERROR", exc)
else:
    print("NO ERROR")
""")
    assert out.startswith("ERROR"), out
    assert "workerStart" in out


@pytest.mark.parametrize("setup", [
    "import gswoole",
    "import gevent, gevent.monkey; gevent.monkey.patch_all()",
    "import gswoole; gswoole.patch_all(); gswoole.patch_all()",
    "import gevent; g = gevent.spawn(lambda: None); g.join()",
    "import gswoole; t = gswoole.Timer.after(1000, lambda: None); gswoole.Timer.clear(t)",
])
def test_server_allows_quiet_process(setup):
    out = run(setup + """
import gswoole
s = gswoole.Server("127.0.0.1", 0)
print("OK", s.port > 0)
""")
    assert out == "OK True"


def test_importing_gswoole_patches_nothing():
    out = run("""
import gswoole, socket
import gevent.monkey
print(gevent.monkey.is_module_patched("socket"), socket.socket.__module__)
""")
    assert out == "False socket"


def test_patch_all_is_idempotent():
    out = run("""
import gswoole
print(gswoole.patch_all(), gswoole.patch_all())
import gevent.monkey
print(gevent.monkey.is_module_patched("socket"))
""")
    assert out.split() == ["True", "False", "True"]


def test_per_process_creates_again_in_a_forked_child():
    out = run("""
import os, itertools, gswoole
counter = itertools.count(1)
handle = gswoole.per_process(lambda: {"n": next(counter), "pid": os.getpid()})
first = handle()
assert handle() is first and handle.created
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    child = handle()
    os.write(w, b"%d %d %d" % (child["n"], child["pid"] == os.getpid(), child is first))
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(r, 100).decode(), handle()["n"])
""")
    assert out == "2 1 0 1"


def test_timer_outside_a_server():
    out = run("""
import gevent, gswoole
fired = []
def tick(timer_id, tag):
    fired.append(tag)
    if fired.count("t") == 3:
        gswoole.Timer.clear(timer_id)
gswoole.Timer.tick(5, tick, "t")
gswoole.Timer.after(1, fired.append, "a")
with gevent.Timeout(5):
    while len(gswoole.Timer):   # both timers gone: the after fired, the tick cleared itself
        gevent.sleep(0.005)
print(fired, len(gswoole.Timer))
""")
    assert out == "['a', 't', 't', 't'] 0"
