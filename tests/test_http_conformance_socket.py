"""The conformance corpus's invalid requests over a real socket: each gets a
4xx/5xx or a close, never a 2xx, and the worker keeps serving."""

import base64
import json
import socket
from pathlib import Path

import pytest

from conftest import recv_until_eof
from gswoole.http.parser import ParsedRequest, RequestParser
from test_http import HTTP_HEADER, FOOTER, request

CORPUS = Path(__file__).resolve().parent / "data" / "gunicorn-http-requests.json"
# Features gswoole does not offer (see test_http_parser.py for the reasons).
UNOFFERED = {"proxy_protocol", "header_map", "permit_obsolete_folding",
             "forwarded_allow_ips", "strip_header_spaces",
             "permit_unconventional_http_method", "casefold_http_method"}


def _invalid_cases():
    cases = json.loads(CORPUS.read_text())["invalid"]
    return [c for c in cases if not set(c["config"]) & UNOFFERED]


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory):
    import conftest
    path = tmp_path_factory.mktemp("corpus") / "server.py"
    limits = "limit_request_line=4094, limit_request_fields=100, limit_request_field_size=8190"
    path.write_text(HTTP_HEADER.format(workers=1, extra=", " + limits) + """
server.on("request", lambda req, resp: resp.end("served " + req.method))
""" + FOOTER)
    env = dict(__import__("os").environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=conftest.REPO_ROOT)
    srv = conftest.ServerProcess(path, env=env)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.mark.parametrize("case", _invalid_cases(), ids=lambda c: c["name"])
def test_invalid_request_never_gets_a_2xx(corpus_server, case):
    raw = base64.b64decode(case["raw_base64"])
    limits = case["config"]
    if limits:
        pytest.skip("needs per-case limits %s; the parser tests cover it" % limits)
    with socket.create_connection(("127.0.0.1", corpus_server.port), timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)   # the case is all the client sends
            answer = recv_until_eof(sock, timeout=10)
        except ConnectionResetError:
            answer = b""
    # Only the valid requests before the bad one (the parser tests prove
    # which those are) may be answered; after them, errors only.
    valid_before = [e for e in RequestParser().feed(raw) if isinstance(e, ParsedRequest)]
    statuses = [int(line.split()[1]) for line in answer.split(b"\r\n")
                if line.startswith(b"HTTP/1.")]
    assert answer.count(b"served ") == len(valid_before), (case["name"], answer[:300])
    assert all(status >= 400 for status in statuses[len(valid_before):]), \
        (case["name"], answer[:300])
    # and the worker is still there for the next client
    assert request(corpus_server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"served GET"
