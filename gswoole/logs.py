"""Logging setup for every process of a server: the ``gswoole`` logger, the
user's ``log_config``, which process wrote a record, and reopening log files.

* ``configure_logging(setting)`` (master, before fork): ``log_config`` (a
  ``logging.config.dictConfig`` dict, or a file: ``.json`` holds such a dict,
  anything else is a ``fileConfig`` ini file) when given; else the
  ``gswoole`` logger at ``log_level`` to ``log_file`` or stderr, unless the
  application configured logging itself.
* Every record carries ``role`` ("master", "worker #0", "task worker #2")
  and ``worker_id`` (-1 in the master), set by one record factory per
  process (``set_process_role`` after fork) instead of being formatted into
  each message, so ``log_config`` formats can use ``%(role)s`` and a JSON
  formatter gets the worker id as a field.
* ``reopen_log_files()``: close every FileHandler of every logger; each
  reopens its path at its next record. The master runs it on SIGRTMIN
  (Swoole's signal for this) and forwards the signal to its workers, which
  run it too: what logrotate's ``postrotate`` needs.
"""

import json
import logging
import logging.config
import sys

from . import access_format, settings

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(role)s] [%(levelname)s] %(message)s"

_role = {"role": "master", "worker_id": -1}
_base_factory = logging.getLogRecordFactory()


def _record_factory(*args, **kwargs):
    record = _base_factory(*args, **kwargs)
    record.role = _role["role"]
    record.worker_id = _role["worker_id"]
    return record


logging.setLogRecordFactory(_record_factory)


def set_process_role(kind, worker_id):
    """After fork: records from this process say who wrote them."""
    _role["role"] = "%s #%d" % (kind, worker_id)
    _role["worker_id"] = worker_id


def configure_logging(setting):
    access_format.configure(setting["access_log_format"], setting["access_log_json"])
    log_config = setting["log_config"]
    if log_config is not None:
        apply_log_config(log_config)
        return
    logger = logging.getLogger("gswoole")
    logger.setLevel(settings.logging_level(setting["log_level"]))
    if setting["log_file"] == "-":   # as in gunicorn: "-" is stderr, not a file
        handler = logging.StreamHandler(sys.stderr)
    elif setting["log_file"]:
        handler = logging.FileHandler(setting["log_file"])
    elif logger.handlers or logging.getLogger().handlers:
        return  # the application configured logging itself
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)


def apply_log_config(config):
    """dictConfig a dict, or a .json file holding one, or fileConfig an ini file.

    Configuring "gswoole" resets its existing children, which would silently
    drop the access log that ``access_log`` set up on "gswoole.access"; it is
    kept unless the configuration names that logger itself."""
    access = logging.getLogger("gswoole.access")
    kept = (list(access.handlers), access.propagate, access.level)
    if isinstance(config, str) and config.endswith(".json"):
        with open(config) as f:
            config = json.load(f)
    if isinstance(config, dict):
        logging.config.dictConfig(config)
        names_access = "gswoole.access" in config.get("loggers", {})
    else:
        logging.config.fileConfig(config, disable_existing_loggers=False)
        # fileConfig resets an unnamed child to no handlers; a named one gets new ones
        names_access = bool(access.handlers) and access.handlers != kept[0]
    if not names_access and kept[0]:
        access.handlers[:] = kept[0]
        access.propagate, access.level = kept[1], kept[2]
        access.disabled = False


def reopen_log_files():
    """Close every FileHandler (they reopen their path on the next record)."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    handler.close()
                    # FileHandler.close() marks it closed; emit reopens a
                    # handler that is closed only when mode != 'w'.
                    handler._closed = False
                finally:
                    handler.release()
