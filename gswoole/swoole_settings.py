"""Swoole's settings that gswoole does not have, and what ``set()`` does with them.

A PHP configuration copied into ``server.set()`` carries settings for parts
of Swoole that gswoole does not have. Two kinds, told apart by one question:
would the program behave differently without it?

* ``IGNORED``: no (reactor threads, coroutine limits, IPC tuning, ...).
  ``set()`` accepts the value (``server.setting`` keeps it, as Swoole's
  does) and the master logs one line at start saying why it does nothing.
* ``REFUSED``: yes (a protocol, TLS, keep-alive probes, ...). ``set()``
  raises SettingError naming the alternative or the issue that will bring
  it, unless the value turns the thing off (0, False, "", None): asking
  for its absence is granted, with the same log line.

``RENAMED``: Swoole's second spellings of settings gswoole has.

Settings declared in settings.py always win over these tables, so a
setting that gswoole gains later simply starts working.
"""

IGNORED = {
    # processes and threads
    "reactor_num": "there are no reactor threads: each worker is its own reactor "
                   "(Swoole's BASE mode)",
    "dispatch_mode": "the kernel balances connections among the workers' accepts "
                     "(as in Swoole's BASE mode); a connection stays with the worker "
                     "that accepted it, and send/close for it work from any worker",
    "single_thread": "there are no reactor threads",
    "socket_buffer_size": "no master-to-worker pipe carries connection data (BASE mode)",
    "max_queued_bytes": "reading stops on its own when a connection's callbacks fall "
                        "64 events behind",
    "discard_timeout_request": "no data is queued between processes (BASE mode)",
    "enable_unsafe_event": "connect and close are always delivered, in order",
    "message_queue_key": "tasks travel over unix socketpairs, not System V queues",
    "task_ipc_mode": "tasks travel over unix socketpairs; an idle task worker takes the "
                     "next task, and dst_worker_id still works",
    "task_tmpdir": "large task payloads travel in memory files (memfd), never on disk",
    "reload_async": "a reloading worker always finishes what it holds, up to max_wait_time",
    "open_cpu_affinity": "workers are not pinned to CPUs; use taskset(1) on the master",
    "cpu_affinity_ignore": "workers are not pinned to CPUs",
    "start_session_id": "fds count from 1, unique across workers, never reused",
    # coroutines: gswoole's callbacks always run in greenlets
    "enable_coroutine": "callbacks always run in gevent greenlets, which is what "
                        "coroutines are for",
    "task_enable_coroutine": "a task worker runs one task at a time; use gevent "
                             "inside the task if it should wait cooperatively",
    "max_coroutine": "greenlets are not capped; bound connections with max_conn",
    "max_coro_num": "greenlets are not capped; bound connections with max_conn",
    "c_stack_size": "greenlet stacks grow as needed",
    "stack_size": "greenlet stacks grow as needed",
    "enable_deadlock_check": "a greenlet waiting forever is not a deadlock gevent reports",
    "aio_core_worker_num": "there is no AIO thread pool (gevent's threadpool serves DNS)",
    "aio_worker_num": "there is no AIO thread pool",
    "aio_max_wait_time": "there is no AIO thread pool",
    "aio_max_idle_time": "there is no AIO thread pool",
    # coroutine clients: Python clients take their own timeouts
    "dns_server": "name resolution is the system's (or gevent's resolver)",
    "socket_dns_timeout": "clients take their own timeouts",
    "socket_connect_timeout": "clients take their own timeouts",
    "socket_read_timeout": "clients take their own timeouts",
    "socket_recv_timeout": "clients take their own timeouts",
    "socket_write_timeout": "clients take their own timeouts",
    "socket_send_timeout": "clients take their own timeouts",
    "socket_timeout": "clients take their own timeouts",
    # logging and debugging
    "log_rotation": "rotate with logrotate (copytruncate) or a rotating handler on "
                    "the 'gswoole' logger",
    "log_date_format": "the log format is Python logging's; set a Formatter on the "
                       "'gswoole' logger",
    "log_date_with_microseconds": "the log format is Python logging's",
    "display_errors": "a PHP setting: errors in callbacks are logged with their traceback",
    "debug_mode": "a Swoole debug-build setting; use log_level='debug'",
    "trace_flags": "a Swoole debug-build setting; use log_level='debug'",
    "request_slowlog_file": "removed from Swoole itself",
    "request_slowlog_timeout": "removed from Swoole itself",
    # sockets: tuning whose absence a program cannot observe
    "tcp_fastopen": "not set on the listening sockets",
    "tcp_defer_accept": "not set: a connection is accepted when it arrives, connect "
                        "runs then",
    "buffer_input_size": "unframed input is delivered as it is read (64 KiB at a time); "
                         "framed input is bounded by package_max_length",
    "input_buffer_size": "unframed input is delivered as it is read; framed input is "
                         "bounded by package_max_length",
    "buffer_high_watermark": "flow control stops reading a connection at half of "
                             "buffer_output_size and resumes at a quarter",
    "buffer_low_watermark": "flow control stops reading a connection at half of "
                            "buffer_output_size and resumes at a quarter",
    # HTTP: gswoole.http always parses these
    "http_parse_post": "request.post is always parsed",
    "http_parse_cookie": "request.cookie is always parsed",
    "http_parse_files": "request.files is always parsed",
}

REFUSED = {
    # processes
    "dispatch_func": "gswoole has no dispatcher: the kernel hands each connection to a "
                     "worker; reach a connection from any worker with send()/close(), "
                     "or another worker with send_message()",
    "chroot": "not supported; start the server inside the chroot (or a container)",
    "hook_flags": "call gswoole.patch_all() at the top of the program (gswoole-serve "
                  "does it for you): gevent's monkey patching is what hooks blocking calls",
    "enable_preemptive_scheduler": "greenlets switch only when they wait; move CPU-heavy "
                                   "work to task workers",
    "task_use_object": "the task callback takes (server, task_id, src_worker_id, data)",
    "task_object": "the task callback takes (server, task_id, src_worker_id, data)",
    "event_object": "callbacks take Swoole's positional arguments",
    "stats_file": "read server.stats() (for example from a timer) and write it yourself",
    "admin_server": "there is no admin server; use server.stats()",
    # sockets
    "open_tcp_keepalive": "TCP keep-alive probes are not set; heartbeat_check_interval "
                          "and heartbeat_idle_time close idle connections",
    "tcp_keepidle": "TCP keep-alive probes are not set; use heartbeat_idle_time",
    "tcp_keepinterval": "TCP keep-alive probes are not set; use heartbeat_check_interval",
    "tcp_keepcount": "TCP keep-alive probes are not set; use heartbeat_idle_time",
    "tcp_user_timeout": "not set; send_timeout resets a peer that takes no output, and "
                        "heartbeat_idle_time closes a silent one",
    # protocols
    "open_http_protocol": "use gswoole.http.Server (or gswoole.wsgi.Server)",
    "open_http2_protocol": "HTTP/2 is not available; put a proxy that speaks it in front",
    "open_websocket_protocol": "use gswoole.websocket.Server",
    "open_mqtt_protocol": "frame MQTT yourself with package_length_func",
    "open_redis_protocol": "frame RESP yourself with package_length_func",
    "http_compression": "compress in the application (or a proxy) for now",
    "document_root": "serve files with response.sendfile() (or a proxy) for now",
    "enable_static_handler": "serve files with response.sendfile() (or a proxy) for now",
    # TLS: Swoole's settings that gswoole spells differently or leaves to OpenSSL
    "ssl_method": "set ssl_min_version ('TLSv1.2' or 'TLSv1.3') instead",
    "ssl_protocols": "set ssl_min_version ('TLSv1.2' or 'TLSv1.3') instead",
    "ssl_allow_self_signed": "make a CA for it and give it as ssl_client_cert_file",
    "ssl_compress": "TLS compression is off (CRIME); there is no switch",
    "ssl_verify_depth": "the chain depth is OpenSSL's default; there is no switch",
    "ssl_prefer_server_ciphers": "the server's cipher order is OpenSSL's default",
    "ssl_dhparam": "gswoole uses ECDHE key exchange; there is no DH parameter file",
    "ssl_ecdh_curve": "the curves are OpenSSL's defaults; there is no switch",
}

RENAMED = {
    "max_connection": "max_conn",
    "output_buffer_size": "buffer_output_size",
}


class Refused(ValueError):
    """A Swoole setting whose absence a program would notice."""


def check(name, value):
    """For a setting gswoole does not declare: the reason it does nothing
    (to log), None if Swoole does not have it either. Raises Refused with
    the alternative when the value asks for something gswoole lacks."""
    reason = IGNORED.get(name)
    if reason is not None:
        return reason
    reason = REFUSED.get(name)
    if reason is None:
        return None
    if value in (0, False, "", None):
        return "turned off, and gswoole does not have it: " + reason
    raise Refused(reason)
