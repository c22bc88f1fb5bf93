"""Running the user's code: one rule for what is caught, one way to log it.

A callback that raises must never take its process down, and the traceback
must say which callback it was. So every place that runs user code (the
reactor's event callbacks, workerStart and the other process events, timers,
task callbacks, AsyncClient events, gunicorn's hooks) catches every exception
(``BaseException``: a ``gevent.Timeout`` the user armed and did not catch is
one too) and logs it with ``log_user_error``. The one exception is
``GreenletExit``: it is how gevent kills a greenlet, and swallowing it would
keep alive a greenlet its owner has ended. Which process wrote the record
(role, worker id) is added by logs.py's record factory, not by each message.
"""

import logging
import sys

from greenlet import GreenletExit

log = logging.getLogger("gswoole")


def log_user_error(what, *args):
    """Call inside ``except BaseException:``. Logs the traceback as
    "error in <what % args>", and re-raises a GreenletExit."""
    if isinstance(sys.exc_info()[1], GreenletExit):
        raise
    log.exception("error in " + what, *args)


def call_user(what, callback, *args):
    """Run ``callback(*args)``; returns its result, or None if it raised (the
    error is logged as ``log_user_error(what)`` does)."""
    try:
        return callback(*args)
    except BaseException:
        log_user_error(what)
        return None
