"""Swoole's spellings: the constructor's mode argument, the SSL flag, the one
alias table (walked over every public method of every server class), and
what set() does with Swoole's settings (docs/porting_from_swoole.md)."""

import inspect

import pytest

import gswoole
import gswoole.http
import gswoole.wsgi
from gswoole import swoole_settings
from gswoole.errors import SettingError
from gswoole.server import Server
from gswoole.swoole_names import ALIASES, camel_case


def _made(server):
    """Close what Server() bound (these tests never start it)."""
    for listener in server._listeners:
        listener.close()
    return server


@pytest.fixture
def servers():
    made = []
    yield made
    for server in made:
        _made(server)


def _all_server_classes():
    found, todo = [], [Server]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


# -- the constructor --------------------------------------------------------

def test_third_argument_is_the_mode_as_in_swoole(servers):
    # Swoole's literal 2 (SWOOLE_PROCESS) builds a TCP server that runs as BASE
    server = Server("127.0.0.1", 0, 2)
    servers.append(server)
    assert server.sock_type == gswoole.SOCK_TCP and server._listeners[0].is_stream
    assert server.mode == gswoole.BASE and server._asked_mode == gswoole.PROCESS
    for mode in (gswoole.BASE, gswoole.PROCESS):
        servers.append(Server("127.0.0.1", 0, mode))
        assert servers[-1].port > 0


def test_keywords_keep_working(servers):
    server = Server(host="127.0.0.1", port=0, mode=gswoole.PROCESS, sock_type=gswoole.SOCK_UDP)
    servers.append(server)
    assert server.type == gswoole.SOCK_UDP and not server._listeners[0].is_stream
    servers.append(Server("127.0.0.1", sock_type=gswoole.SOCK_UDP))
    assert not servers[-1]._listeners[0].is_stream
    servers.append(gswoole.http.Server("127.0.0.1", 0, gswoole.PROCESS))
    servers.append(gswoole.http.Server("127.0.0.1", 0, sock_type=gswoole.SOCK_TCP))
    servers.append(gswoole.wsgi.Server(lambda environ, start: [], "127.0.0.1", 0))
    servers.append(gswoole.wsgi.Server(lambda environ, start: [], "127.0.0.1", 0,
                                       gswoole.SOCK_TCP))
    assert all(s.port > 0 for s in servers[2:])


def test_a_socket_type_where_the_mode_goes_is_taken_as_the_socket_type(servers):
    # gswoole's socket types are their own type: never mistaken for a mode
    # (Swoole's literal 2 is PROCESS), so older gswoole code keeps working.
    server = Server("127.0.0.1", 0, gswoole.SOCK_UDP)
    servers.append(server)
    assert server.sock_type == gswoole.SOCK_UDP and server.mode == gswoole.BASE
    with pytest.raises(TypeError, match="two socket types"):
        Server("127.0.0.1", 0, gswoole.SOCK_UDP, sock_type=gswoole.SOCK_TCP6)
    with pytest.raises(ValueError, match="mode must be gswoole.BASE"):
        Server("127.0.0.1", 0, 3)


def test_ssl_flag_makes_a_tls_port_in_swoole_spellings(servers):
    assert gswoole.SSL == 512
    server = Server("127.0.0.1", 0, gswoole.BASE, gswoole.SOCK_TCP | gswoole.SSL)
    servers.append(server)
    assert server.ports[0]._listener.is_ssl
    extra = server.addlistener("127.0.0.1", 0, gswoole.SOCK_TCP | gswoole.SSL)
    assert extra._listener.is_ssl


def test_swoole_properties(servers):
    server = Server("127.0.0.1", 0)
    servers.append(server)
    assert server.master_pid == server.manager_pid == server.getManagerPid() == 0
    assert server.getMasterPid() == 0 and server.getWorkerId() == -1
    assert server.ssl is False


# -- the alias table --------------------------------------------------------

@pytest.mark.parametrize("cls", _all_server_classes(), ids=lambda c: c.__module__)
def test_every_public_method_has_its_camel_case_alias(cls):
    aliases = set(ALIASES)
    methods = [name for name, value in inspect.getmembers(cls)
               if not name.startswith("_") and name not in aliases and callable(value)
               and not inspect.isclass(value)]
    assert "get_worker_status" in methods and "sendfile" in methods
    missing = [name for name in methods
               if camel_case(name) != name and ALIASES.get(camel_case(name)) != name]
    assert not missing, "public methods without a camelCase alias in ALIASES: %s" % missing


def test_aliases_resolve_to_their_method(servers):
    server = Server("127.0.0.1", 0)
    servers.append(server)
    for alias, name in ALIASES.items():
        if not hasattr(Server, name):
            continue    # a subclass's method (WebSocket's is_established)
        assert getattr(Server, alias) is getattr(Server, name), alias
        assert getattr(server, alias) == getattr(server, name), alias
    import gswoole.websocket
    assert gswoole.websocket.Server.isEstablished is gswoole.websocket.Server.is_established
    # an instance attribute (what a worker binds) is what the alias gives
    server.send_message = marker = object()
    assert server.sendMessage is marker
    assert Server.taskWaitMulti is Server.taskwait_multi
    assert server.exists == server.exist and server.connection_info == server.get_client_info


def test_get_callback_takes_any_spelling(servers):
    server = Server("127.0.0.1", 0)
    servers.append(server)

    def on_receive(server, fd, reactor_id, data):
        pass
    server.on("Receive", on_receive)
    assert server.getCallback("onReceive") is on_receive
    assert server.get_callback("close") is None


# -- settings ----------------------------------------------------------------

def test_php_style_booleans(servers):
    server = Server("127.0.0.1", 0)
    servers.append(server)
    server.set({"daemonize": 0, "open_tcp_nodelay": 1, "enable_reuse_port": 0,
                "enable_delay_receive": 1})
    assert server.setting["daemonize"] is False and server.setting["open_tcp_nodelay"] is True
    assert server.setting["enable_delay_receive"] is True
    with pytest.raises(SettingError, match="expected True or False"):
        server.set(daemonize=2)


def test_swoole_only_settings_are_kept_not_refused(servers):
    server = Server("127.0.0.1", 0)
    servers.append(server)
    php = {"reactor_num": 2, "dispatch_mode": 2, "enable_coroutine": True,
           "task_enable_coroutine": 1, "max_coroutine": 3000, "log_rotation": 1,
           "max_connection": 100, "output_buffer_size": 1 << 20, "open_http_protocol": 0}
    assert server.set(php) is True
    assert server.setting["reactor_num"] == 2 and server.setting["max_coroutine"] == 3000
    assert server.setting["max_conn"] == 100                       # Swoole's other spelling
    assert server.setting["buffer_output_size"] == 1 << 20
    assert "max_connection" not in server.setting


@pytest.mark.parametrize("name, value, alternative", [
    ("open_http_protocol", True, "gswoole.http.Server"),
    ("open_websocket_protocol", 1, "gswoole.websocket.Server"),
    ("ssl_method", 4, "ssl_min_version"),
    ("hook_flags", 1879048191, "gswoole.patch_all()"),
    ("open_tcp_keepalive", 1, "heartbeat_check_interval"),
    ("dispatch_func", "my_dispatch", "send_message"),
])
def test_settings_meaning_what_gswoole_lacks_are_refused_naming_the_alternative(
        servers, name, value, alternative):
    server = Server("127.0.0.1", 0)
    servers.append(server)
    with pytest.raises(SettingError) as info:
        server.set({name: value})
    assert name in str(info.value) and alternative in str(info.value)


def test_gswoole_settings_win_over_the_swoole_tables(monkeypatch):
    # A setting gswoole gains later (TLS, WebSocket) simply starts working.
    from gswoole import settings
    assert set(swoole_settings.RENAMED.values()) <= set(settings.BY_NAME)
    monkeypatch.setitem(swoole_settings.REFUSED, "open_tcp_nodelay", "never consulted")
    assert settings.validate_all({"open_tcp_nodelay": 1}) == {"open_tcp_nodelay": True}


def test_every_swoole_setting_in_the_tables_is_in_the_porting_guide():
    import os
    guide = open(os.path.join(os.path.dirname(__file__), "..", "docs",
                              "porting_from_swoole.md")).read()
    for table in (swoole_settings.IGNORED, swoole_settings.REFUSED, swoole_settings.RENAMED):
        missing = [name for name in table if "`%s`" % name not in guide]
        assert not missing, "not in docs/porting_from_swoole.md: %s" % missing


def test_swoole_only_settings_and_process_mode_are_logged_once_at_start(serve):
    srv = serve("""
import os, gswoole
def emit(*parts):
    os.write(1, (" ".join(map(str, parts)) + "\\n").encode())
server = gswoole.Server("127.0.0.1", 0, gswoole.PROCESS)
server.set({"worker_num": 1, "reactor_num": 4, "dispatch_mode": 2, "enable_coroutine": 1,
            "task_enable_coroutine": True, "max_coroutine": 3000, "log_rotation": 1,
            "daemonize": 0, "open_http_protocol": False})
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
server.on("start", lambda s: emit("READY", s.port, s.master_pid))
server.start()
""", raw=True)
    with srv.connect() as sock:
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
    for name in ("reactor_num", "dispatch_mode", "enable_coroutine", "task_enable_coroutine",
                 "max_coroutine", "log_rotation", "open_http_protocol"):
        srv.wait_line(r"setting %s=\S+ does nothing in gswoole: " % name, stream="err")
        assert len(srv.matching(r"setting %s=" % name, stream="err")) == 1
    assert "kernel balances" in srv.matching(r"setting dispatch_mode", stream="err")[0].string
    srv.wait_line(r"mode PROCESS runs as BASE", stream="err")
    assert len(srv.matching(r"mode PROCESS runs as BASE", stream="err")) == 1
    assert not srv.matching(r"setting daemonize", stream="err")
