"""The master's Prometheus endpoint (``metrics_bind``)."""

import socket
import time

import pytest

from conftest import recv_until_eof, wait_until

parser = pytest.importorskip("prometheus_client.parser")

ECHO = """
import gevent.monkey
def on_receive(s, fd, rid, data):
    if data.startswith(b"block"):
        emit("BLOCKED", s.worker_id)
        gevent.monkey.get_original("time", "sleep")(3600)
    s.send(fd, data)
server.on("receive", on_receive)
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid, os.getpid()))
"""


def scrape(port, path="/metrics", timeout=5.0):
    """GET the page: returns (status, {name: family})."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
        raw = recv_until_eof(sock, timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if status != 200:
        return status, body
    families = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
    return status, families


def value(families, name, **labels):
    """A sample's value; 0 for a labelled sample not there (yet)."""
    family_name = name[:-len("_total")] if name.endswith("_total") else name
    for sample in families[family_name].samples:
        if sample.name == name and all(sample.labels.get(k) == str(v)
                                       for k, v in labels.items()):
            return sample.value
    if not labels:
        raise KeyError(name)
    return 0


@pytest.fixture
def metrics_server(serve, tmp_path):
    def start(body=ECHO, workers=2, settings="", env=None):
        extra = "metrics_bind='127.0.0.1:0'" + (", " + settings if settings else "")
        srv = serve(body, workers=workers, settings=extra, env=env)
        srv.metrics_port = int(srv.wait_line(r"metrics at http://127.0.0.1:(\d+)/metrics",
                                             stream="err").group(1))
        return srv
    return start


def _echo(srv, data=b"hi"):
    with srv.connect() as sock:
        sock.sendall(data)
        assert sock.recv(100) == data


def test_page_parses_and_counts(metrics_server):
    srv = metrics_server(settings="task_worker_num=0")
    srv.wait_line(r"^WORKERSTART", count=2)
    for _ in range(5):
        _echo(srv)
    wait_until(lambda: value(scrape(srv.metrics_port)[1], "gswoole_requests_total") >= 5,
               message="requests_total to reach 5")
    status, families = scrape(srv.metrics_port)
    assert status == 200
    assert value(families, "gswoole_workers", kind="worker") == 2
    assert value(families, "gswoole_worker_starts_total", kind="worker") == 2
    assert value(families, "gswoole_connections_accepted_total") >= 5
    lags = [s for s in families["gswoole_event_loop_lag_seconds"].samples]
    assert len(lags) == 2 and all(s.value < 5 for s in lags)
    rss = families["gswoole_worker_rss_bytes"].samples
    assert len(rss) == 2 and all(s.value > 1e6 for s in rss)
    assert families["gswoole_task_duration_seconds"].type == "summary"
    assert scrape(srv.metrics_port, "/nothing")[0] == 404


def test_answers_while_every_worker_is_blocked(metrics_server):
    srv = metrics_server(settings="timeout=0")
    srv.wait_line(r"^WORKERSTART", count=2)
    blockers = []
    # each worker gets blocked: keep connecting until both said BLOCKED
    deadline = time.monotonic() + 10
    while len(srv.matching(r"^BLOCKED")) < 2 and time.monotonic() < deadline:
        sock = srv.connect()
        sock.sendall(b"block")
        blockers.append(sock)
        wait_until(lambda: len(srv.matching(r"^BLOCKED")) >= min(len(blockers), 2) or
                   len(blockers) > 1, timeout=3, message="a worker to block")
    assert len(srv.matching(r"^BLOCKED")) == 2
    started = time.monotonic()
    status, families = scrape(srv.metrics_port, timeout=3)
    assert status == 200 and time.monotonic() - started < 2
    ages = [s.value for s in families["gswoole_heartbeat_age_seconds"].samples]
    assert len(ages) == 2
    for sock in blockers:
        sock.close()


APP_COUNTER = """
from prometheus_client import Counter
hits = Counter("app_hits", "Requests the app saw")
def on_receive(s, fd, rid, data):
    hits.inc()
    s.send(fd, data)
server.on("receive", on_receive)
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid, os.getpid()))
"""


def test_app_counter_summed_across_worker_recycle(metrics_server, tmp_path):
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    srv = metrics_server(APP_COUNTER, workers=1, settings="max_request=5, max_request_grace=0",
                         env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    srv.wait_line(r"^WORKERSTART")
    for _ in range(6):
        _echo(srv)
    srv.wait_line(r"^WORKERSTART", count=2)   # recycled after 5
    wait_until(lambda: value(scrape(srv.metrics_port)[1], "gswoole_worker_exits_total",
                             kind="worker", cause="max_request") == 1,
               message="the max_request exit counted")
    for _ in range(3):
        _echo(srv)            # these go to the replacement
    _, families = scrape(srv.metrics_port)
    # the dead worker's hits stay in the sum (its file stays; its pid is marked dead)
    assert value(families, "app_hits_total") == 9
    wait_until(lambda: value(scrape(srv.metrics_port)[1], "gswoole_requests_total") == 9,
               message="requests_total to include the dead worker's requests")


def test_metrics_bind_conflict_is_a_clear_error(serve, tmp_path):
    import socket as _socket
    holder = _socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    pid_file = tmp_path / "m.pid"
    srv = serve("server.on('receive', lambda s, fd, rid, data: None)\n", ready=False,
                settings="metrics_bind='127.0.0.1:%d', pid_file=%r" % (taken, str(pid_file)))
    try:
        srv.wait_line(r"ServerStateError: metrics_bind 127.0.0.1:%d: .*in use" % taken,
                      stream="err")
        assert srv.wait_exit(10) != 0
        assert not pid_file.exists()
    finally:
        holder.close()
