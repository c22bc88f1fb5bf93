"""gswoole: Swoole's server model for Python, on gevent.

Importing gswoole patches nothing and starts no event loop; see
``gswoole.patch_all()`` and ``Server.start()``.
"""

__version__ = "0.1.0"

from . import errors
from .client import AsyncClient, Client
from .errors import (CallbackError, EventLoopError, GSwooleError, ServerStateError,
                     SettingError, TaskError)
from .process import patch_all, per_process
from .server import Server
from .sync import Atomic, Lock
from .table import Table
from .user_process import Process
from .sockets import (SOCK_TCP, SOCK_TCP6, SOCK_UDP, SOCK_UDP6, SOCK_UNIX_DGRAM,
                      SOCK_UNIX_STREAM, SSL)
from .timers import Timer

__all__ = [
    "__version__", "errors", "Server", "Timer", "per_process", "patch_all", "Client",
    "AsyncClient", "Table", "Atomic", "Lock", "Process",
    "SOCK_TCP", "SOCK_TCP6", "SOCK_UDP", "SOCK_UDP6", "SOCK_UNIX_STREAM", "SOCK_UNIX_DGRAM",
    "SSL",
    "GSwooleError", "EventLoopError", "TaskError", "SettingError", "CallbackError",
    "ServerStateError",
]
