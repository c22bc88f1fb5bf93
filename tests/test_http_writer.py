"""Tests for gswoole.http.writer (sans-IO): every framing decision, with the
bytes parsed back by h11 acting as a strict client."""

import h11
import pytest

from gswoole.http.writer import (CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, ResponseWriter,
                                 status_line)

DATE = b"Date: Sun, 06 Dec 2026 00:00:00 GMT\r\nServer: gswoole\r\n"
V11 = (1, 1)
V10 = (1, 0)


def respond(code, headers=(), body=b"", method="GET", version=V11, keep_alive=True,
            pieces=None, body_length="auto"):
    """Run one response through a writer: the head (body length known when
    ``pieces`` is None), the pieces, the end. Returns (writer, bytes)."""
    writer = ResponseWriter(method, version, keep_alive)
    if body_length == "auto":
        body_length = len(body) if pieces is None else None
    out = writer.start(code, status_line(version, code), list(headers), DATE, body_length)
    for piece in pieces or ():
        out += writer.body(piece)
    out += writer.end(body)
    return writer, out


def read_back(raw, method="GET"):
    """Parse a response as h11 does (it only speaks HTTP/1.1 as a client,
    but reads HTTP/1.0 responses): (response, body)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    response = client.next_event()
    assert isinstance(response, h11.Response), response
    body = b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(b"")          # the server closed: the body ends here
            continue
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage), event
            break
    return response, body


def header(response, name):
    values = [v for n, v in response.headers if n == name.lower().encode()]
    return values[0].decode() if len(values) == 1 else (values or None)


def test_known_body_gets_content_length_and_keeps_alive():
    writer, raw = respond(200, [("Content-Type", "text/plain")], b"hello")
    response, body = read_back(raw)
    assert (response.status_code, body) == (200, b"hello")
    assert header(response, "Content-Length") == "5"
    assert writer.mode == LENGTH and not writer.must_close and writer.sent == 5


def test_streamed_body_is_chunked_on_http11():
    writer, raw = respond(200, [], pieces=[b"ab", b"", b"cd"])
    response, body = read_back(raw)
    assert body == b"abcd" and header(response, "Transfer-Encoding") == "chunked"
    assert header(response, "Content-Length") is None
    assert writer.mode == CHUNKED and not writer.must_close


def test_streamed_body_on_http10_ends_with_the_close():
    writer, raw = respond(200, [], pieces=[b"ab"], version=V10, body=b"cd")
    assert b"Transfer-Encoding" not in raw and b"Connection: close" in raw
    _, body = read_back(raw)
    assert body == b"abcd"
    assert writer.mode == UNTIL_CLOSE and writer.must_close


def test_http10_keep_alive_is_announced():
    _, raw = respond(200, [], b"x", version=V10)
    assert b"Connection: keep-alive\r\n" in raw


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses_drop_the_body(code):
    writer, raw = respond(code, [("Content-Length", "0")] if code == 204 else [], b"body!")
    response, body = read_back(raw)
    assert (response.status_code, body) == (code, b"")
    assert raw.endswith(b"\r\n\r\n") and b"body!" not in raw
    assert b"Transfer-Encoding" not in raw
    if code == 204:
        assert b"Content-Length" not in raw      # RFC 9110 8.6: never on a 204
    assert writer.mode == NO_BODY and not writer.must_close


def test_304_keeps_the_handlers_content_length_and_streams_nothing():
    writer, raw = respond(304, [("Content-Length", "42")], pieces=[b"chunk"])
    assert b"Content-Length: 42\r\n" in raw and b"chunk" not in raw
    assert b"Transfer-Encoding" not in raw
    assert not writer.must_close


def test_head_announces_the_length_a_get_would_get_but_sends_no_body():
    writer, raw = respond(200, [], b"hello", method="HEAD")
    assert b"Content-Length: 5\r\n" in raw and raw.endswith(b"\r\n\r\n")
    response, body = read_back(raw, method="HEAD")
    assert body == b"" and writer.sent == 0 and not writer.must_close


def test_too_much_body_for_content_length_is_cut_and_counted():
    writer, raw = respond(200, [("Content-Length", "5")], b"helloworld")
    assert raw.endswith(b"\r\n\r\nhello")
    assert writer.excess == 5 and writer.sent == 5 and not writer.must_close


def test_too_little_body_for_content_length_closes():
    writer, raw = respond(200, [("Content-Length", "20")], b"helloworld")
    assert writer.remaining == 10 and writer.must_close


def test_content_length_then_streaming_is_not_chunked():
    writer, raw = respond(200, [("Content-Length", "4")], pieces=[b"ab", b"cd"])
    assert b"Transfer-Encoding" not in raw
    _, body = read_back(raw)
    assert body == b"abcd" and not writer.must_close


def test_handlers_transfer_encoding_is_not_copied():
    _, raw = respond(200, [("Transfer-Encoding", "chunked"), ("Content-Length", "2")], b"ok")
    assert b"Transfer-Encoding" not in raw and b"Content-Length: 2" in raw
    _, raw = respond(200, [("transfer-encoding", "chunked")], pieces=[b"ok"])
    assert raw.count(b"chunked") == 1
    _, body = read_back(raw)
    assert body == b"ok"


@pytest.mark.parametrize("value", ["close", "Close", "keep-alive, close"])
def test_handlers_connection_close_closes(value):
    writer, raw = respond(200, [("Connection", value)], b"ok")
    assert raw.count(b"Connection") == 1 and b"Connection: close\r\n" in raw
    assert writer.must_close


def test_other_hop_by_hop_headers_are_dropped():
    _, raw = respond(200, [("Keep-Alive", "timeout=5"), ("Upgrade", "h2c"), ("TE", "x"),
                           ("Trailer", "X"), ("Proxy-Connection", "close"),
                           ("Connection", "keep-alive"), ("X-Kept", "1")], b"ok")
    names = [line.split(b":")[0].lower() for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
    assert names == [b"date", b"server", b"x-kept", b"content-length"]


def test_handlers_own_date_and_server_replace_ours():
    _, raw = respond(200, [("Server", "mine")], b"")
    assert raw.count(b"Server:") == 1 and b"Server: mine" in raw and b"Date:" in raw
    _, raw = respond(200, [("Date", "yesterday")], b"")
    assert raw.count(b"Date:") == 1 and b"Server: gswoole" in raw


@pytest.mark.parametrize("headers", [
    [("Content-Length", "abc")],
    [("Content-Length", "-1")],
    [("Content-Length", "1"), ("Content-Length", "2")],
    [("X-Bad", "a\r\nInjected: 1")],
])
def test_bad_headers_raise_before_anything_is_decided(headers):
    writer = ResponseWriter("GET", V11, True)
    with pytest.raises(ValueError):
        writer.start(200, status_line(V11, 200), headers, DATE, 0)
    assert not writer.started
    # The caller can still answer 500 with the same writer.
    head = writer.start(500, status_line(V11, 500), [], DATE, 0)
    assert head.startswith(b"HTTP/1.1 500")


def test_not_keep_alive_announces_close():
    writer, raw = respond(200, [], b"x", keep_alive=False)
    assert b"Connection: close\r\n" in raw and writer.must_close


def test_file_count_respects_content_length_and_head():
    writer = ResponseWriter("GET", V11, True)
    writer.start(200, status_line(V11, 200), [("Content-Length", "3")], DATE, 10)
    assert writer.file_count(10) == 3 and writer.excess == 0 and writer.remaining == 0
    writer = ResponseWriter("HEAD", V11, True)
    writer.start(200, status_line(V11, 200), [], DATE, 10)
    assert writer.file_count(10) == 0


# -- the C-made header lines (gswoole/_http.c) are the Python path's ----------

from hypothesis import given, settings, strategies as st  # noqa: E402

from gswoole.http import writer as writer_module  # noqa: E402

_NAMES = st.sampled_from(["Content-Type", "Content-Length", "content-length", "X-A", "Date",
                          "Server", "Connection", "Set-Cookie", "Transfer-Encoding", "Upgrade"])
_VALUES = st.one_of(st.sampled_from(["13", "0", "7", "text/plain", "close", "a\r\nb", "x\n",
                                     "é", "\u20ac", " 13", "１３"]),
                    st.integers(min_value=0, max_value=99),
                    st.text(max_size=6))


def _framed(code, headers, method, version, keep_alive, body):
    writer = ResponseWriter(method, version, keep_alive)
    try:
        head = writer.start(code, status_line(version, code), headers, DATE, len(body))
    except (ValueError, TypeError, UnicodeError) as exc:
        return type(exc).__name__
    return (head + writer.end(body), writer.mode, writer.remaining, writer.keep_alive,
            writer.headers_sent, writer.must_close)


@pytest.mark.skipif(writer_module._fields is None, reason="the C helper gswoole._http is not built")
@settings(max_examples=300, deadline=None)
@given(st.sampled_from([200, 200, 200, 201, 204, 304, 404]),
       st.lists(st.tuples(_NAMES, _VALUES), max_size=3), st.booleans(),
       st.sampled_from(["GET", "GET", "GET", "HEAD"]), st.sampled_from([V11, V11, V11, V10]),
       st.sampled_from([True, True, True, False]),
       st.sampled_from([b"", b"Hello, World!", b"1234567"]))
def test_the_c_made_header_lines_are_the_python_paths(code, headers, usual, method, version,
                                                      keep_alive, body):
    if usual:   # mostly the answer the C path is for, with a few more fields
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))] + [
            header for header in headers if header[0] not in ("Transfer-Encoding",)]
    with_c = _framed(code, headers, method, version, keep_alive, body)
    fields, writer_module._fields = writer_module._fields, None
    try:
        assert _framed(code, headers, method, version, keep_alive, body) == with_c
    finally:
        writer_module._fields = fields
