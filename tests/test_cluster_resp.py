"""Redis's wire protocol (gswoole/cluster/resp.py), sans-IO: commands as
bytes, replies parsed from whatever pieces the socket hands over."""

import pytest

from gswoole.cluster.resp import Parser, ProtocolError, RespError, command

REPLIES = (b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n"   # a pub/sub message
           b":1\r\n"                                                # PUBLISH's receiver count
           b"+OK\r\n"
           b"-ERR unknown command\r\n"
           b"$-1\r\n"                                               # null bulk
           b"*-1\r\n"                                               # null array
           b"$0\r\n\r\n"                                            # empty bulk
           b"*2\r\n*1\r\n:-5\r\n$2\r\n\r\n\r\n"                     # nested; CRLF as data
           b"*0\r\n")
VALUES = [[b"message", b"chan", b"hello"], 1, "OK", RespError("ERR unknown command"), None,
          None, b"", [[-5], b"\r\n"], []]


def test_command_is_an_array_of_bulk_strings():
    assert command("PUBLISH", "gswoole:channel:1", b"a\r\nb") == (
        b"*3\r\n$7\r\nPUBLISH\r\n$17\r\ngswoole:channel:1\r\n$4\r\na\r\nb\r\n")
    assert command(b"INCR", 12) == b"*2\r\n$4\r\nINCR\r\n$2\r\n12\r\n"
    assert command("SET", "k", "é") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n"


@pytest.mark.parametrize("bad", [(), ("PING", 1.5), ("PING", None), ("PING", True)])
def test_command_refuses_what_redis_cannot_take(bad):
    with pytest.raises((TypeError, ValueError)):
        command(*bad)


def test_every_kind_of_reply_in_one_feed():
    parser = Parser()
    assert parser.feed(REPLIES) == VALUES
    assert parser.pending == 0


def test_replies_cut_at_every_byte_come_out_whole_and_in_order():
    parser = Parser()
    out = []
    for i in range(len(REPLIES)):
        out += parser.feed(REPLIES[i:i + 1])
    assert out == VALUES and parser.pending == 0


@pytest.mark.parametrize("cut", range(1, 40))
def test_a_reply_cut_anywhere_waits_for_its_rest(cut):
    parser = Parser()
    data = REPLIES[:40]
    first = parser.feed(data[:cut])
    assert first + parser.feed(data[cut:] + REPLIES[40:]) == VALUES


def test_a_long_bulk_string_arriving_in_pieces():
    body = bytes(range(256)) * 4096          # 1 MiB, CRLFs inside
    data = b"$%d\r\n%s\r\n:7\r\n" % (len(body), body)
    parser = Parser()
    out = []
    for i in range(0, len(data), 65536):
        out += parser.feed(data[i:i + 65536])
        if i + 65536 < len(data) - 6:
            assert out == []
    assert out == [body, 7] and parser.pending == 0


def test_many_pipelined_integer_replies():
    assert Parser().feed(b"".join(b":%d\r\n" % i for i in range(1000))) == list(range(1000))


@pytest.mark.parametrize("bad", [b"?what\r\n", b":12x\r\n", b"$3\r\nabcde\r\n", b"*x\r\n",
                                 b"$999999999999\r\n"])
def test_bytes_that_are_not_resp_are_a_protocol_error(bad):
    with pytest.raises(ProtocolError):
        Parser().feed(bad)


def test_an_endless_header_line_is_a_protocol_error():
    parser = Parser()
    with pytest.raises(ProtocolError):
        parser.feed(b":" + b"1" * 70000)


def test_error_replies_are_values_that_compare():
    assert RespError("ERR x") == RespError("ERR x") != RespError("ERR y")
    assert isinstance(RespError("ERR x"), Exception)
