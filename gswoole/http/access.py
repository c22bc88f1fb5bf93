"""The HTTP access log: common log format plus the response time, written by
the ``gswoole.access`` logger when the ``access_log`` setting names a target."""

import logging
import sys
import time

access_log = logging.getLogger("gswoole.access")


def configure_access_log(target):
    """Send the access log to ``target``: a path, or '-' for stderr (master, before fork)."""
    access_log.propagate = False
    access_log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr) if target == "-" \
        else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)


def access_log_enabled():
    return access_log.isEnabledFor(logging.INFO) and bool(access_log.handlers)


def log_access(remote_addr, started, method, uri, protocol, status, sent):
    """One line: host - - [time] "request line" status bytes microseconds."""
    access_log.info('%s - - [%s] "%s %s %s" %s %s %d', remote_addr or "-",
                    time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(started)),
                    method, uri, protocol, status, sent or "-",
                    int((time.time() - started) * 1e6))
