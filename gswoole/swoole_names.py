"""Swoole's names for what a ported program calls: the server modes, the
worker status values, and the one table of method aliases.

A Swoole program spells methods in camelCase (``getClientInfo``,
``taskWaitMulti``) and sometimes by older names (``connection_info``,
``addlistener``). gswoole's methods are snake_case; ``ALIASES`` maps every
other spelling to the method it means, and ``Server`` grows one attribute per
entry (server.py). An alias is looked up on the instance each time, so in a
worker ``server.sendMessage`` is the very method ``server.send_message`` is
bound to there. tests/test_swoole_names.py walks the public methods of every
server class and fails when one has no alias.
"""

from .sockets import NamedInt

# Server modes (Swoole's SWOOLE_BASE and SWOOLE_PROCESS, same numbers, so a
# literal 2 copied from PHP means PROCESS here too).


class ServerMode(NamedInt):
    """A server mode (``gswoole.BASE``, ``gswoole.PROCESS``)."""


BASE = ServerMode(1, "BASE")
PROCESS = ServerMode(2, "PROCESS")
MODES = {int(BASE): BASE, int(PROCESS): PROCESS}

PROCESS_AS_BASE = (
    "mode PROCESS runs as BASE: gswoole has no reactor threads in the master; each "
    "worker accepts and reads its own connections (the kernel balances them), and "
    "send/close/exist/... for another worker's fd are routed to that worker")

# getWorkerStatus() values (SWOOLE_WORKER_BUSY/IDLE/EXIT).
WORKER_BUSY = 1
WORKER_IDLE = 2
WORKER_EXIT = 3


def camel_case(name):
    """'get_client_info' -> 'getClientInfo'."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# alias -> the gswoole method it stands for. Every public method with an
# underscore has its camelCase spelling here; Swoole's own irregular names
# (taskWaitMulti for taskwait_multi, the lower-case addlistener) and old
# aliases sit next to it.
ALIASES = {
    # configuration
    "addListener": "listen",
    "addlistener": "listen",
    "addProcess": "add_process",
    "getCallback": "get_callback",
    # connections
    "getClientInfo": "get_client_info",
    "connection_info": "get_client_info",
    "getClientList": "get_client_list",
    "connection_list": "get_client_list",
    "exists": "exist",
    "getLastError": "get_last_error",
    # tasks and messages
    "taskWaitMulti": "taskwait_multi",
    "taskwaitMulti": "taskwait_multi",
    "sendMessage": "send_message",
    # timers
    "clearTimer": "clear_timer",
    # processes
    "getWorkerId": "get_worker_id",
    "getWorkerPid": "get_worker_pid",
    "getWorkerStatus": "get_worker_status",
    "getManagerPid": "get_manager_pid",
    "getMasterPid": "get_master_pid",
    # WebSocket (gswoole.websocket.Server only)
    "isEstablished": "is_established",
}
