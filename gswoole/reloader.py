"""``gswoole-serve --reload``: restart the server when a source file changes.

A development aid, built like uvicorn's: this process does not serve; it
runs ``gswoole-serve`` (the same arguments) as a child process, watches the
directory tree for changed ``.py`` files with ``watchfiles`` (an optional
extra, ``gswoole[reload]``), and on a change stops the child gracefully
(SIGTERM) and starts a new one, which imports the application afresh. A
worker reload (SIGHUP) would not do: workers are forked from the master,
which imported the application once. TERM or INT to this process stops the
child and ends.
"""

import logging
import os
import signal
import subprocess
import sys
import threading

log = logging.getLogger("gswoole")

CHILD_ENV = "GSWOOLE_RELOADER_CHILD"
STOP_WAIT = 15.0


class ReloadError(Exception):
    pass


def in_child():
    return os.environ.get(CHILD_ENV) == "1"


def run_with_reloader(argv, root):
    """Run ``gswoole-serve argv`` in a child, restarting it on changes under
    ``root``; returns the last child's exit code once told to stop."""
    try:
        import watchfiles
    except ImportError:
        raise ReloadError("--reload needs watchfiles: pip install 'gswoole[reload]'") from None
    stop = threading.Event()
    child = None

    def on_signal(signum, frame):
        stop.set()
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    env = dict(os.environ, **{CHILD_ENV: "1"})
    command = [sys.executable, "-m", "gswoole"] + list(argv)
    print("gswoole-serve: reloader %d watching %s for .py changes" % (os.getpid(), root),
          file=sys.stderr, flush=True)
    try:
        while not stop.is_set():
            child = subprocess.Popen(command, env=env)
            for changes in watchfiles.watch(root, watch_filter=watchfiles.PythonFilter(),
                                            stop_event=stop, rust_timeout=500,
                                            yield_on_timeout=True, raise_interrupt=False):
                if changes:
                    names = sorted({os.path.relpath(path, root) for _, path in changes})
                    print("gswoole-serve: %s changed; restarting" % ", ".join(names[:5]),
                          file=sys.stderr, flush=True)
                    break
                if child.poll() is not None:
                    stop.set()   # the server ended on its own (or failed to start)
                    break
            _stop_child(child)
        return child.returncode if child is not None else 0
    finally:
        if child is not None:
            _stop_child(child)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_child(child):
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
