"""The one rule for running user code (gswoole/usercode.py)."""

import logging

import gevent
import pytest
from greenlet import GreenletExit

from gswoole.usercode import call_user, log_user_error


def test_call_user_returns_the_result():
    assert call_user("x callback", lambda a, b: a + b, 1, 2) == 3


@pytest.mark.parametrize("exc", [ValueError("bad"), gevent.Timeout(1), SystemExit(3),
                                 KeyboardInterrupt()])
def test_everything_raised_is_logged_and_swallowed(exc, caplog):
    def callback():
        raise exc
    with caplog.at_level(logging.ERROR, logger="gswoole"):
        assert call_user("receive callback (fd=%d)" % 7, callback) is None
    [record] = caplog.records
    assert record.getMessage() == "error in receive callback (fd=7)"
    assert record.exc_info[1] is exc


def test_greenlet_exit_goes_on():
    def callback():
        raise GreenletExit()
    with pytest.raises(GreenletExit):
        call_user("x", callback)


def test_log_user_error_formats_its_arguments(caplog):
    with caplog.at_level(logging.ERROR, logger="gswoole"):
        try:
            raise RuntimeError("boom")
        except BaseException:
            log_user_error("timer callback %r (timer #%d)", "cb", 4)
    assert caplog.records[0].getMessage() == "error in timer callback 'cb' (timer #4)"
