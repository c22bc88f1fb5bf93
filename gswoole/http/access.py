"""The HTTP access log, written by the ``gswoole.access`` logger when the
``access_log`` setting names a target; the line's format is
``gswoole.access_format`` (``access_log_format``, ``access_log_json``)."""

import logging
import sys

from ..access_format import atoms, format_access

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


def log_access(remote_addr, started, method, uri, protocol, status, sent, headers_in=None,
               headers_out=None):
    """One line, formatted by ``access_log_format`` (gswoole.access_format);
    by default: host - - [time] "request line" status bytes microseconds.
    ``headers_in``/``headers_out`` (lower-case name -> value) feed the
    {name}i / {name}o, f and a atoms."""
    access_log.info("%s", format_access(atoms(remote_addr, started, method, uri, protocol,
                                              status, sent, headers_in, headers_out)))
