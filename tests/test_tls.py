"""TLS ports and clients, end to end, with certificates made by trustme."""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

import pytest

trustme = pytest.importorskip("trustme")

from conftest import EMIT, recv_exactly, recv_until_eof, wait_until  # noqa: E402
from test_wsgi import APP_FILE, _port_of  # noqa: E402
from conftest import reload_workers, stop_process_group  # noqa: E402

TLS_PORT = "gswoole.SOCK_TCP | gswoole.SSL"


class Pki:
    """A local CA and the certificates the tests use, as files."""

    def __init__(self, folder):
        self.ca = trustme.CA()
        self.folder = folder
        self.ca_file = self._write("ca.pem", self.ca.cert_pem)
        self.cert, self.key = self._issue("server", "localhost", "127.0.0.1")
        self.other_cert, self.other_key = self._issue("other", "other.test")
        self.client_cert, self.client_key = self._issue("client", "client.test")
        stranger = trustme.CA().issue_cert("client.test")   # signed by an unknown CA
        self.stranger_cert = self._write("stranger.pem", stranger.cert_chain_pems[0])
        self.stranger_key = self._write("stranger.key", stranger.private_key_pem)

    def _write(self, name, blob):
        path = str(self.folder / name)
        blob.write_to_path(path)
        return path

    def _issue(self, name, *identities):
        issued = self.ca.issue_cert(*identities)
        return (self._write(name + ".pem", issued.cert_chain_pems[0]),
                self._write(name + ".key", issued.private_key_pem))

    def settings(self, extra=""):
        values = "ssl_cert_file=%r, ssl_key_file=%r" % (self.cert, self.key)
        return values + (", " + extra if extra else "")

    def client_context(self, **kwargs):
        context = ssl.create_default_context(cafile=self.ca_file)
        for name, value in kwargs.items():
            setattr(context, name, value)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_connect(pki, port, host="localhost", context=None, timeout=10.0, **wrap):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return (context or pki.client_context()).wrap_socket(raw, server_hostname=host, **wrap)


ECHO = """
def receive(server, fd, reactor_id, data):
    if data == b"info":
        server.send(fd, json.dumps(server.get_client_info(fd)).encode())
    elif data == b"bye":
        server.close(fd)
    else:
        server.send(fd, data)
server.on("receive", receive)
server.on("connect", lambda server, fd, rid: emit("CONNECT", fd))
server.on("close", lambda server, fd, rid: emit("CLOSE", fd))
"""


def test_echo_over_tls_info_and_close_notify(serve, pki):
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT, settings=pki.settings())
    with tls_connect(pki, srv.port, suppress_ragged_eofs=False) as conn:
        conn.sendall(b"hello")
        assert conn.recv(100) == b"hello"
        big = os.urandom(3 * 1024 * 1024)   # more than the output buffer in flight
        conn.sendall(big)
        assert recv_exactly(conn, len(big)) == big
        conn.sendall(b"info")
        info = json.loads(conn.recv(4096))
        assert info["ssl_version"] == conn.version()
        assert info["ssl_cipher"] == conn.cipher()[0]
        assert "ssl_client_cert" not in info
        conn.sendall(b"bye")
        # With ragged EOFs not suppressed, b"" means a close_notify came
        # before the FIN (else SSLEOFError).
        assert conn.recv(100) == b""
    srv.wait_line(r"^CLOSE \d+")
    assert len(srv.matching(r"^CONNECT")) == 1


def test_length_framing_over_tls_on_an_extra_port(serve, pki):
    # The main port is plaintext; the listen() port is TLS with its own settings.
    srv = serve("""
        tls = server.listen("127.0.0.1", 0, gswoole.SOCK_TCP | gswoole.SSL)
        tls.set(ssl_cert_file=%r, ssl_key_file=%r, open_length_check=True,
                package_length_type="N", package_body_offset=4)
        tls.on("receive", lambda server, fd, rid, packet: server.send(fd, packet))
        server.on("receive", lambda server, fd, rid, data: server.send(fd, b"plain:" + data))
        server.on("start", lambda server: (emit("TLSPORT", server.ports[1].port),
                                           emit("READY", server.port, server.master_pid)))
    """ % (pki.cert, pki.key))
    tls_port = int(srv.wait_line(r"^TLSPORT (\d+)").group(1))
    with srv.connect() as plain:
        plain.sendall(b"x")
        assert plain.recv(100) == b"plain:x"
    packets = [struct.pack("!I", len(body)) + body for body in (b"one", b"two" * 1000, b"")]
    stream = b"".join(packets)
    with tls_connect(pki, tls_port) as conn:
        conn.sendall(stream[:5])     # a packet split across records
        conn.sendall(stream[5:])     # and the rest in one record
        assert recv_exactly(conn, len(stream)) == stream


HTTP_APP = EMIT.replace("{", "{{").replace("}", "}}") + """
import gswoole, gswoole.http
server = gswoole.http.Server("127.0.0.1", 0, gswoole.SOCK_TCP | gswoole.SSL)
server.set(worker_num=1, {settings})
server.on("start", lambda s: emit("READY", s.port, s.master_pid))
def request(req, resp):
    if req.server["request_uri"] == "/file":
        resp.sendfile(__file__)
    elif req.server["request_uri"] == "/upload":
        resp.end(str(len(req.getContent())))
    else:
        resp.end(req.server.get("https", "off") + " " + str(req.server["server_port"]))
server.on("request", request)
server.start()
"""


def test_http_keep_alive_and_sendfile_over_tls(serve, pki):
    srv = serve(HTTP_APP.format(settings=pki.settings()), raw=True)
    conn = http.client.HTTPSConnection("localhost", srv.port, timeout=10,
                                       context=pki.client_context())
    try:
        for _ in range(3):
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200
            assert response.read() == b"on %d" % srv.port
        sock = conn.sock
        conn.request("GET", "/file")
        response = conn.getresponse()
        assert response.read() == open(srv.path, "rb").read()
        conn.request("POST", "/upload", body=os.urandom(1000000))
        assert conn.getresponse().read() == b"1000000"
        assert conn.sock is sock    # one connection throughout: keep-alive
    finally:
        conn.close()


def test_client_certificates_accepted_and_refused(serve, pki):
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT, settings=pki.settings(
        "ssl_verify_peer=True, ssl_client_cert_file=%r" % pki.ca_file))
    context = pki.client_context()
    context.load_cert_chain(pki.client_cert, pki.client_key)
    with tls_connect(pki, srv.port, context=context) as conn:
        conn.sendall(b"info")
        info = json.loads(recv_until_json(conn))
        pem = info["ssl_client_cert"]
        assert pem.startswith("-----BEGIN CERTIFICATE-----")
        assert ssl.PEM_cert_to_DER_cert(pem) == \
            ssl.PEM_cert_to_DER_cert(open(pki.client_cert).read())
    for cert in (None, (pki.stranger_cert, pki.stranger_key)):
        context = pki.client_context()
        if cert:
            context.load_cert_chain(*cert)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with tls_connect(pki, srv.port, context=context) as conn:
                # TLS 1.3: the client finishes first; the refusal is the next read.
                conn.sendall(b"info")
                if not conn.recv(100):
                    raise ConnectionError("closed")
    srv.wait_line(r"TLS handshake failed: .*(CERTIFICATE|certificate)", stream="err", count=2)
    assert len(srv.matching(r"^CONNECT")) == 1   # the refused never reached the app


def recv_until_json(conn):
    data = b""
    while not data.endswith(b"}"):
        chunk = conn.recv(4096)
        assert chunk
        data += chunk
    return data


def test_sni_picks_the_certificate_and_alpn(serve, pki):
    sni = {"other.test": {"ssl_cert_file": pki.other_cert, "ssl_key_file": pki.other_key}}
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT, settings=pki.settings(
        "ssl_sni_certs=%r, ssl_alpn_protocols=['h2', 'http/1.1']" % sni))
    for name, expected in (("other.test", "other.test"), ("localhost", "localhost")):
        context = pki.client_context()
        context.set_alpn_protocols(["http/1.1"])
        with tls_connect(pki, srv.port, host=name, context=context) as conn:
            names = [v for k, v in conn.getpeercert()["subjectAltName"] if k == "DNS"]
            assert names == [expected]
            assert conn.selected_alpn_protocol() == "http/1.1"
            conn.sendall(b"info")
            assert json.loads(recv_until_json(conn))["ssl_alpn_protocol"] == "http/1.1"


def test_stalled_handshakes_do_not_hold_up_a_normal_client(serve, pki):
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT, settings=pki.settings())
    stalled = []
    try:
        hello = _client_hello(pki)
        for i in range(20):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            # Nothing, half a ClientHello, or all of it (the server answers and
            # waits for the client's Finished); then silence.
            sock.sendall((b"", hello[:len(hello) // 2], hello)[i % 3])
            stalled.append(sock)
        started = time.monotonic()
        with tls_connect(pki, srv.port) as conn:
            for _ in range(20):
                conn.sendall(b"ping")
                assert conn.recv(100) == b"ping"
        # Served at once (well under the 10 s handshake timeout), not after them.
        assert time.monotonic() - started < 5.0
    finally:
        for sock in stalled:
            sock.close()


def _client_hello(pki):
    """The first flight of a real TLS client, taken from a memory BIO."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = pki.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_handshake_timeout(serve, pki):
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT,
                settings=pki.settings("ssl_handshake_timeout=0.5"))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        started = time.monotonic()
        assert recv_until_eof(sock) == b""
        assert 0.3 < time.monotonic() - started < 5.0
    srv.wait_line(r"TLS handshake not finished within 0.5s", stream="err")
    assert not srv.matching(r"^(CONNECT|CLOSE)")  # the app never saw it
    with tls_connect(pki, srv.port) as conn:   # the worker carries on
        conn.sendall(b"still")
        assert conn.recv(100) == b"still"


def test_plaintext_truncated_handshake_and_garbage_records(serve, pki):
    srv = serve("import json\n" + ECHO + "\nserver.on('workerStart', lambda s, w: emit('WORKER', "
                "os.getpid()))", sock_type=TLS_PORT, settings=pki.settings())
    worker = srv.wait_line(r"^WORKER (\d+)").group(1)
    # A plaintext request on the TLS port: closed, and the log says why once.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        recv_until_eof(sock)
    srv.wait_line(r"TLS handshake failed: .*plaintext on a TLS port", stream="err")
    # A handshake cut short.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(_client_hello(pki)[:20])
    srv.wait_line(r"left during the TLS handshake", stream="err")
    # Garbage records after a good handshake: the app saw connect, sees close.
    conn = tls_connect(pki, srv.port)
    conn.sendall(b"ok")
    assert conn.recv(100) == b"ok"
    os.write(conn.fileno(), b"\x17\x03\x03\x00\x20" + os.urandom(32))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        if not conn.recv(100):
            raise ConnectionError("closed")
    conn.close()
    srv.wait_line(r"^CLOSE \d+")
    srv.wait_line(r"TLS error: .*", stream="err")
    # Each failure is one line, and the same worker still serves.
    assert len(srv.matching(r"plaintext on a TLS port", stream="err")) == 1
    assert len(srv.matching(r"TLS error", stream="err")) == 1
    with tls_connect(pki, srv.port) as conn:
        conn.sendall(b"alive")
        assert conn.recv(100) == b"alive"
    assert srv.matching(r"^WORKER (\d+)")[-1].group(1) == worker
    assert not srv.matching(r"Traceback", stream="err")


def test_a_tls_port_without_certificate_fails_at_start():
    script = """
import gswoole
server = gswoole.Server("127.0.0.1", 0, gswoole.SOCK_TCP | gswoole.SSL)
server.on("receive", lambda *a: None)
try:
    server.start()
except gswoole.SettingError as exc:
    print("ERROR", exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30)
    assert "ERROR TLS port 127.0.0.1:" in out.stdout
    assert "needs ssl_cert_file and ssl_key_file" in out.stdout


@pytest.mark.parametrize("client_certs", [False, True])
def test_gswoole_serve_certfile(tmp_path, pki, client_certs):
    (tmp_path / "myapp.py").write_text(APP_FILE + """
def scheme(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %s" % (environ["wsgi.url_scheme"], environ.get("HTTPS"))).encode()]
""")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    extra = ["--ca-certs", pki.ca_file, "--cert-reqs", "2"] if client_certs else []
    proc = subprocess.Popen([sys.executable, "-m", "gswoole", "myapp:scheme", "--bind",
                             "127.0.0.1:0", "-w", "1", "--certfile", pki.cert, "--keyfile",
                             pki.key] + extra, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        port = _port_of(proc)
        context = pki.client_context()
        if client_certs:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                refused = http.client.HTTPSConnection("localhost", port, timeout=10,
                                                      context=pki.client_context())
                refused.request("GET", "/")
                refused.getresponse().read()
            context.load_cert_chain(pki.client_cert, pki.client_key)
        conn = http.client.HTTPSConnection("localhost", port, timeout=10, context=context)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"https on"
        conn.close()
    finally:
        stop_process_group(proc)


def test_min_version_and_ciphers(serve, pki):
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT, settings=pki.settings(
        "ssl_min_version='TLSv1.3'"))
    old = pki.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        tls_connect(pki, srv.port, context=old)
    with tls_connect(pki, srv.port) as conn:
        assert conn.version() == "TLSv1.3"
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT, settings=pki.settings(
        "ssl_ciphers='ECDHE+AESGCM'"))
    with tls_connect(pki, srv.port, context=pki.client_context(
            maximum_version=ssl.TLSVersion.TLSv1_2)) as conn:
        assert conn.version() == "TLSv1.2" and "GCM" in conn.cipher()[0]


def test_client_verifies_and_refuses_a_wrong_host_name(serve, pki):
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT, settings=pki.settings())
    script = """
import sys, gswoole
port, ca = int(sys.argv[1]), sys.argv[2]
def attempt(**settings):
    client = gswoole.Client(gswoole.SOCK_TCP | gswoole.SSL)
    client.set(**settings)
    if not client.connect("127.0.0.1", port, timeout=5):
        return "refused %d %s" % (client.errCode, client.errMsg)
    client.send(b"hi")
    reply = client.recv()
    client.close()
    return reply.decode()
print("GOOD", attempt(ssl_cafile=ca))
print("NAMED", attempt(ssl_cafile=ca, ssl_host_name="localhost"))
print("WRONG", attempt(ssl_cafile=ca, ssl_host_name="wrong.test"))
print("NOCA", attempt())
print("NOVERIFY", attempt(ssl_verify_peer=False, ssl_host_name="wrong.test"))
"""
    out = subprocess.run([sys.executable, "-c", script, str(srv.port), pki.ca_file],
                         capture_output=True, text=True, timeout=30).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["GOOD"] == "hi" and lines["NAMED"] == "hi" and lines["NOVERIFY"] == "hi"
    assert lines["WRONG"].startswith("refused 1014 ") and "wrong.test" in lines["WRONG"]
    assert lines["NOCA"].startswith("refused 1014 ")


def test_async_client_over_tls(serve, pki):
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT, settings=pki.settings())
    script = """
import sys, gevent, gswoole
client = gswoole.AsyncClient(gswoole.SOCK_TCP | gswoole.SSL)
client.set(ssl_cafile=sys.argv[2])
client.on("connect", lambda c: c.send(b"async"))
client.on("receive", lambda c, data: (print("GOT", data.decode()), c.close()))
client.on("error", lambda c: print("ERROR", c.errCode, c.errMsg))
client.on("close", lambda c: print("CLOSED"))
client.connect("localhost", int(sys.argv[1]), timeout=5)
gevent.wait()
"""
    out = subprocess.run([sys.executable, "-c", script, str(srv.port), pki.ca_file],
                         capture_output=True, text=True, timeout=30).stdout
    assert out.split() == ["GOT", "async", "CLOSED"]


def test_reload_serves_renewed_certificate_files(serve, pki, tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    shutil.copy(pki.cert, cert)
    shutil.copy(pki.key, key)
    srv = serve("import json\n" + ECHO, sock_type=TLS_PORT,
                settings="ssl_cert_file=%r, ssl_key_file=%r" % (cert, key))

    def served_names():
        with tls_connect(pki, srv.port, host="localhost") as conn:
            return [v for k, v in conn.getpeercert()["subjectAltName"]]

    assert "127.0.0.1" in served_names()
    renewed = pki.ca.issue_cert("localhost")   # same CA, no IP address this time
    renewed.cert_chain_pems[0].write_to_path(cert + ".new")
    renewed.private_key_pem.write_to_path(key + ".new")
    os.replace(key + ".new", key)
    os.replace(cert + ".new", cert)
    srv.signal(signal.SIGUSR1)
    srv.wait_line(r"reloaded its certificate files", stream="err")
    wait_until(lambda: served_names() == ["localhost"], message="the renewed certificate")
    # A broken renewal: the next worker keeps the certificate it inherited.
    with open(key, "w") as f:
        f.write("not a key")
    srv.signal(signal.SIGUSR1)
    srv.wait_line(r"serving the certificate loaded at start", stream="err")
    with tls_connect(pki, srv.port) as conn:
        conn.sendall(b"still")
        assert conn.recv(100) == b"still"


def test_cert_reqs_values_and_bad_tls_settings():
    from gswoole import settings
    assert settings.validate("ssl_verify_peer", "2") is True
    assert settings.validate("ssl_verify_peer", 1) == "optional"
    assert settings.validate("ssl_verify_peer", "0") is False
    with pytest.raises(settings.SettingError, match="ssl_verify_peer"):
        settings.validate("ssl_verify_peer", 3)
    with pytest.raises(settings.SettingError, match="no such file"):
        settings.validate("ssl_cert_file", "/nonexistent/cert.pem")
    with pytest.raises(settings.SettingError, match="ssl_min_version"):
        settings.validate("ssl_min_version", "TLSv1.0")


def test_rolling_reloads_under_https_keep_alive_load_lose_no_request(serve, pki):
    from test_http_reload import APP, KeepAliveLoad

    class HttpsLoad(KeepAliveLoad):
        def __init__(self, port, context):
            self.context = context
            super().__init__(port)

        def _connect(self):
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            return self.context.wrap_socket(raw, server_hostname="localhost")

    app = APP.replace('"127.0.0.1", 0)', '"127.0.0.1", 0, gswoole.SOCK_TCP | gswoole.SSL)')
    srv = serve(app.format(settings=", " + pki.settings()), raw=True)
    load = HttpsLoad(srv.port, pki.client_context())
    try:
        wait_until(lambda: load.answered > 50, message="load running")
        for _ in range(3):
            reload_workers(srv)
        answered = load.answered
        wait_until(lambda: load.answered > answered + 50, message="serving after the reloads")
    finally:
        load.stop()
    assert not load.lost, load.lost[:5]
    assert load.reconnects > 0


def test_async_client_closed_during_a_stalled_handshake(pki):
    # A listener that accepts and never answers: the handshake stalls until
    # close() ends it, with one 'close' and no 'error'.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        script = """
import sys, gevent, gswoole
client = gswoole.AsyncClient(gswoole.SOCK_TCP | gswoole.SSL)
client.on("connect", lambda c: print("CONNECT"))
client.on("receive", lambda c, data: None)
client.on("error", lambda c: print("ERROR", c.errCode))
client.on("close", lambda c: print("CLOSED"))
client.connect("127.0.0.1", int(sys.argv[1]), timeout=-1)
gevent.sleep(0.3)
client.close()
gevent.wait(timeout=5)
print("DONE")
"""
        out = subprocess.run([sys.executable, "-c", script, str(listener.getsockname()[1])],
                             capture_output=True, text=True, timeout=30).stdout
    assert out.split() == ["CLOSED", "DONE"]
