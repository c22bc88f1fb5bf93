"""Tests for gswoole.framing: every mode fed whole, per byte and in random chunks."""

import random
import struct

import hypothesis
import pytest

from gswoole.errors import GSwooleError
from gswoole.framing import FUNC_PROBE, LENGTH_TYPES, FramingError, make_splitter

MiB = 1024 * 1024
SEEDS = [0, 1, 2, 3, 42, 1234]


def setting(**overrides):
    """A full setting dict with Swoole's defaults, as the server passes it."""
    base = {
        "open_eof_check": False, "open_eof_split": False, "package_eof": b"\r\n",
        "open_length_check": False, "package_length_type": "N",
        "package_length_offset": 0, "package_body_offset": 0,
        "package_length_func": None, "package_max_length": 2 * MiB,
    }
    base.update(overrides)
    return base


def splitter(**overrides):
    return make_splitter(setting(**overrides))()


# -- chunkers: the same stream cut three ways --------------------------------

def whole(stream):
    return [stream]


def per_byte(stream):
    return [stream[i:i + 1] for i in range(len(stream))]


def random_chunks(seed, max_chunk=17):
    def chunk(stream):
        rng = random.Random(seed)
        chunks, i = [], 0
        while i < len(stream):
            n = rng.randint(1, max_chunk)
            chunks.append(stream[i:i + n])
            i += n
        return chunks
    chunk.__name__ = "random_chunks_%d" % seed
    return chunk


CHUNKERS = [whole, per_byte] + [random_chunks(seed) for seed in SEEDS]
chunkers = pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.__name__)


def feed_all(s, chunks):
    out = []
    for chunk in chunks:
        got = s.feed(chunk)
        assert isinstance(got, list)
        assert all(type(p) is bytes for p in got)
        out.extend(got)
    return out


def feed_until_error(s, chunks):
    """Feed until FramingError; return (packets delivered, the error)."""
    out = []
    for chunk in chunks:
        try:
            out.extend(s.feed(chunk))
        except FramingError as exc:
            return out + exc.packets, exc
    raise AssertionError("no FramingError; delivered %r" % (out,))


# -- make_splitter ------------------------------------------------------------

def test_no_framing_option_means_no_splitter():
    assert make_splitter(setting()) is None
    assert make_splitter({}) is None


def test_factory_makes_independent_splitters():
    factory = make_splitter(setting(open_eof_split=True))
    a, b = factory(), factory()
    assert a is not b
    assert a.feed(b"half") == []
    assert b.feed(b"x\r\n") == [b"x\r\n"]
    assert (a.buffered, b.buffered) == (4, 0)


@pytest.mark.parametrize("eof_key", ["open_eof_check", "open_eof_split"])
@pytest.mark.parametrize("length_key", ["open_length_check", "package_length_func"])
def test_eof_and_length_framing_conflict(eof_key, length_key):
    length_value = True if length_key == "open_length_check" else (lambda data: 0)
    with pytest.raises(ValueError, match="cannot both be on"):
        make_splitter(setting(**{eof_key: True, length_key: length_value}))


@pytest.mark.parametrize("overrides", [
    {"open_eof_split": True, "package_eof": b""},
    {"open_eof_split": True, "package_eof": b"123456789"},
    {"open_eof_check": True, "package_eof": 13},
    {"open_length_check": True, "package_length_type": "q"},
    {"open_length_check": True, "package_length_type": ["N"]},
    {"open_length_check": True, "package_length_offset": -1},
    {"open_length_check": True, "package_body_offset": "4"},
    {"open_length_check": True, "package_max_length": 0},
    {"package_length_func": "not callable"},
])
def test_invalid_settings_raise_value_error(overrides):
    with pytest.raises(ValueError):
        make_splitter(setting(**overrides))


def test_framing_error_is_a_value_error_and_a_gswoole_error():
    assert issubclass(FramingError, ValueError)
    assert issubclass(FramingError, GSwooleError)


def test_string_eof_is_encoded():
    s = splitter(open_eof_split=True, package_eof="\n")
    assert s.feed(b"a\nb\n") == [b"a\n", b"b\n"]


def test_non_bytes_reads_are_accepted():
    s = splitter(open_eof_split=True)
    assert s.feed(bytearray(b"a\r\nb")) == [b"a\r\n"]
    assert s.feed(memoryview(b"\r\n")) == [b"b\r\n"]


# -- open_eof_split -----------------------------------------------------------

EOF_PAYLOADS = [b"hello", b"", b"x", b"\r", b"a\rb", b"\n\n", b"z" * 300, b"\rend\r"]


def eof_packets(eof, payloads=EOF_PAYLOADS):
    # A payload must not contain the EOF, or it would be two packets.
    return [p + eof for p in payloads if eof not in p + eof[:-1]]


@chunkers
@pytest.mark.parametrize("eof", [b"\r\n", b"\n", b"\r\n\r\n", b"END!", b"12345678"])
def test_eof_split_any_chunking(chunker, eof):
    packets = eof_packets(eof)
    s = splitter(open_eof_split=True, package_eof=eof)
    assert feed_all(s, chunker(b"".join(packets))) == packets
    assert s.buffered == 0


@chunkers
def test_eof_split_keeps_the_tail_buffered(chunker):
    s = splitter(open_eof_split=True)
    assert feed_all(s, chunker(b"one\r\ntwo\r\nthr\r")) == [b"one\r\n", b"two\r\n"]
    assert s.buffered == 4
    assert s.feed(b"\n") == [b"thr\r\n"]
    assert s.buffered == 0


def test_eof_split_eof_split_across_feeds():
    s = splitter(open_eof_split=True)
    assert s.feed(b"abc\r") == []
    assert s.buffered == 4
    assert s.feed(b"\n") == [b"abc\r\n"]

    s = splitter(open_eof_split=True, package_eof=b"\r\n\r\n")
    assert s.feed(b"head\r\n") == []
    assert s.feed(b"\r") == []
    assert s.feed(b"\nbody\r\n\r") == [b"head\r\n\r\n"]
    assert s.buffered == 7
    assert s.feed(b"\n") == [b"body\r\n\r\n"]


def test_eof_split_false_start_of_eof():
    # "\r\n\r" then "x": the partial EOF is data; search must resume correctly.
    s = splitter(open_eof_split=True, package_eof=b"\r\n\r\n")
    assert s.feed(b"a\r\n\r") == []
    assert s.feed(b"x\r\n\r\n") == [b"a\r\n\rx\r\n\r\n"]


def test_eof_split_many_packets_in_one_feed():
    packets = [b"%d\n" % i for i in range(1000)]
    s = splitter(open_eof_split=True, package_eof=b"\n")
    assert s.feed(b"".join(packets)) == packets


def test_eof_split_one_packet_across_many_feeds():
    s = splitter(open_eof_split=True)
    for i in range(1000):
        assert s.feed(b"%03d" % i) == []
    assert s.buffered == 3000
    (packet,) = s.feed(b"\r\n")
    assert packet == b"".join(b"%03d" % i for i in range(1000)) + b"\r\n"


@chunkers
def test_eof_split_packet_of_exactly_max_length_passes(chunker):
    s = splitter(open_eof_split=True, package_max_length=10)
    packets = [b"x" * 8 + b"\r\n", b"y\r\n"]
    assert feed_all(s, chunker(b"".join(packets))) == packets


@chunkers
def test_eof_split_oversize_packet(chunker):
    s = splitter(open_eof_split=True, package_max_length=10)
    stream = b"ok\r\n" + b"x" * 9 + b"\r\n" + b"never\r\n"
    delivered, exc = feed_until_error(s, chunker(stream))
    assert delivered == [b"ok\r\n"]
    assert "package_max_length" in str(exc)


def test_eof_split_unterminated_data_past_max_length():
    s = splitter(open_eof_split=True, package_max_length=10)
    assert s.feed(b"a\r\n" + b"x" * 9) == [b"a\r\n"]
    with pytest.raises(FramingError, match="unterminated") as info:
        s.feed(b"x")   # 10 bytes and no EOF: the packet will be > 10
    assert info.value.packets == []


# -- open_eof_check -----------------------------------------------------------

@chunkers
def test_eof_check_delivers_buffers_that_end_with_eof(chunker):
    packets = eof_packets(b"\r\n")
    stream = b"".join(packets)
    s = splitter(open_eof_check=True)
    delivered = feed_all(s, chunker(stream))
    # Swoole's check looks at the end of the buffer only: a delivery may hold
    # several packets, but it always ends on a packet boundary.
    assert b"".join(delivered) == stream
    assert all(p.endswith(b"\r\n") for p in delivered)
    assert s.buffered == 0


def test_eof_check_whole_buffer_is_one_packet():
    s = splitter(open_eof_check=True)
    assert s.feed(b"a\r\nb\r\n") == [b"a\r\nb\r\n"]
    assert s.feed(b"a\r\nb") == []
    assert s.buffered == 4
    assert s.feed(b"\r\nc\r\n") == [b"a\r\nb\r\nc\r\n"]
    assert s.buffered == 0


def test_eof_check_per_byte_delivers_each_packet():
    packets = [b"GET\r\n", b"x\ry\r\n", b"\r\n"]
    s = splitter(open_eof_check=True)
    assert feed_all(s, per_byte(b"".join(packets))) == packets


def test_eof_check_eof_split_across_feeds():
    s = splitter(open_eof_check=True, package_eof=b"<EOF>")
    assert s.feed(b"data<E") == []
    assert s.feed(b"O") == []
    assert s.feed(b"F>") == [b"data<EOF>"]


@chunkers
def test_eof_check_oversize(chunker):
    s = splitter(open_eof_check=True, package_max_length=10)
    _, exc = feed_until_error(s, chunker(b"x" * 12 + b"\r\n"))
    assert "package_max_length" in str(exc)


def test_eof_check_exactly_max_length_passes_and_one_more_fails():
    s = splitter(open_eof_check=True, package_max_length=10)
    assert s.feed(b"x" * 8 + b"\r\n") == [b"x" * 8 + b"\r\n"]
    with pytest.raises(FramingError):
        s.feed(b"x" * 9 + b"\r\n")
    s = splitter(open_eof_check=True, package_max_length=10)
    assert s.feed(b"x" * 9) == []
    with pytest.raises(FramingError, match="unterminated"):
        s.feed(b"\r")   # 10 bytes, not terminated: the packet will be > 10


# -- open_length_check --------------------------------------------------------

SIGNED = {"c", "s", "l"}


def length_packets(code, offset, body_offset, bodies):
    """Packets with the length field at ``offset`` and the body at ``body_offset``."""
    field = struct.Struct(LENGTH_TYPES[code])
    packets = []
    for i, body in enumerate(bodies):
        header = bytearray(bytes([0xA0 + i % 16]) * body_offset)   # filler, not zeros
        field.pack_into(header, offset, len(body))
        packets.append(bytes(header) + body)
    return packets


BODIES = [b"hello", b"", b"\x00\xff" * 20, b"z" * 100, b"last"]


@chunkers
@pytest.mark.parametrize("code", sorted(LENGTH_TYPES))
@pytest.mark.parametrize("offset,extra", [(0, 0), (3, 0), (2, 5)])
def test_length_check_any_chunking(chunker, code, offset, extra):
    # extra > 0: header bytes after the length field (body_offset > offset + size)
    body_offset = offset + struct.calcsize(LENGTH_TYPES[code]) + extra
    packets = length_packets(code, offset, body_offset, BODIES)
    s = splitter(open_length_check=True, package_length_type=code,
                 package_length_offset=offset, package_body_offset=body_offset)
    assert feed_all(s, chunker(b"".join(packets))) == packets
    assert s.buffered == 0


@pytest.mark.parametrize("code,fmt", [
    ("c", "b"), ("C", "B"), ("s", "<h"), ("S", "<H"), ("n", ">H"),
    ("N", ">I"), ("l", "<i"), ("L", "<I"), ("v", "<H"), ("V", "<I"),
])
def test_length_types_byte_order(code, fmt):
    # Pinned down independently of LENGTH_TYPES: host-endian codes are little-endian.
    size = struct.calcsize(fmt)
    s = splitter(open_length_check=True, package_length_type=code, package_body_offset=size)
    packet = struct.pack(fmt, 3) + b"abc"
    assert s.feed(packet + packet[:2]) == [packet]
    assert s.buffered == 2


@pytest.mark.parametrize("code", sorted(SIGNED))
def test_length_check_negative_length(code):
    fmt = LENGTH_TYPES[code]
    size = struct.calcsize(fmt)
    s = splitter(open_length_check=True, package_length_type=code, package_body_offset=size)
    good = struct.pack(fmt, 1) + b"x"
    with pytest.raises(FramingError, match="negative") as info:
        s.feed(good + struct.pack(fmt, -1) + b"x")
    assert info.value.packets == [good]


@pytest.mark.parametrize("code", sorted(set(LENGTH_TYPES) - SIGNED))
def test_length_check_unsigned_types_read_high_bit_as_large(code):
    fmt = LENGTH_TYPES[code]
    size = struct.calcsize(fmt)
    big = (1 << (8 * size)) - 1
    s = splitter(open_length_check=True, package_length_type=code, package_body_offset=size,
                 package_max_length=big + size)
    assert s.feed(struct.pack(fmt, big) + b"x") == []
    assert s.buffered == size + 1


def test_length_check_length_includes_header():
    # body_offset 0: the length field counts the whole packet, itself included.
    s = splitter(open_length_check=True, package_length_type="N")
    packets = [struct.pack(">I", 4 + len(b)) + b for b in BODIES]
    assert feed_all(s, per_byte(b"".join(packets))) == packets


def test_length_check_length_shorter_than_header():
    s = splitter(open_length_check=True, package_length_type="N")
    with pytest.raises(FramingError, match="shorter than its own"):
        s.feed(struct.pack(">I", 3) + b"abc")


def test_length_check_waits_for_the_whole_header():
    s = splitter(open_length_check=True, package_length_type="N",
                 package_length_offset=4, package_body_offset=8)
    assert s.feed(b"HEAD\x00\x00") == []
    assert s.buffered == 6
    assert s.feed(b"\x00\x02h") == []
    assert s.feed(b"iNEXT") == [b"HEAD\x00\x00\x00\x02hi"]
    assert s.buffered == 4


def test_length_check_many_packets_in_one_feed():
    packets = length_packets("n", 0, 2, [b"%d" % i for i in range(1000)])
    s = splitter(open_length_check=True, package_length_type="n", package_body_offset=2)
    assert s.feed(b"".join(packets)) == packets


def test_length_check_one_packet_across_many_feeds():
    body = bytes(range(256)) * 400
    (packet,) = length_packets("N", 0, 4, [body])
    s = splitter(open_length_check=True, package_body_offset=4)
    for i in range(0, len(packet) - 1, 7):
        assert s.feed(packet[i:min(i + 7, len(packet) - 1)]) == []
    assert s.buffered == len(packet) - 1
    assert s.feed(packet[-1:]) == [packet]


@chunkers
def test_length_check_max_length(chunker):
    s = splitter(open_length_check=True, package_length_type="n", package_body_offset=2,
                 package_max_length=10)
    ok = length_packets("n", 0, 2, [b"x" * 8])          # exactly 10 bytes
    big = length_packets("n", 0, 2, [b"y" * 9])         # 11 bytes
    delivered, exc = feed_until_error(s, chunker(b"".join(ok + big + ok)))
    assert delivered == ok
    assert "package_max_length" in str(exc)


def test_length_check_oversize_is_reported_from_the_header_alone():
    s = splitter(open_length_check=True, package_body_offset=4, package_max_length=100)
    with pytest.raises(FramingError, match="package_max_length"):
        s.feed(struct.pack(">I", 1000))   # no body yet: no need to wait for it


# -- package_length_func ------------------------------------------------------

def header_func(calls=None):
    """A typical length function: 2-byte big-endian body length, then the body."""
    def length(data):
        if calls is not None:
            calls.append(len(data))
        assert type(data) is bytes
        if len(data) < 2:
            return 0
        return 2 + struct.unpack_from(">H", data)[0]
    return length


def line_func(data):
    """A length function that scans: the packet ends at the first newline."""
    i = data.find(b"\n")
    return 0 if i < 0 else i + 1


@chunkers
@pytest.mark.parametrize("length_check", [False, True])
def test_length_func_any_chunking(chunker, length_check):
    packets = length_packets("n", 0, 2, BODIES)
    # With open_length_check on, the function wins over package_length_type.
    s = splitter(open_length_check=length_check, package_length_type="c",
                 package_length_offset=7, package_length_func=header_func())
    assert feed_all(s, chunker(b"".join(packets))) == packets
    assert s.buffered == 0


@chunkers
def test_length_func_that_scans_sees_more_when_it_needs_more(chunker):
    # Longer than FUNC_PROBE: the function must be shown more than the first probe.
    packets = [b"a" * (FUNC_PROBE * 5) + b"\n", b"b\n", b"c" * 1000 + b"\n"]
    s = splitter(package_length_func=line_func)
    assert feed_all(s, chunker(b"".join(packets))) == packets


def test_length_func_return_zero_waits():
    s = splitter(package_length_func=header_func())
    assert s.feed(b"\x00") == []
    assert s.buffered == 1
    assert s.feed(b"\x03ab") == []
    assert s.buffered == 4
    assert s.feed(b"c\x00") == [b"\x00\x03abc"]
    assert s.buffered == 1


def test_length_func_not_called_again_while_waiting_for_a_known_length():
    calls = []
    s = splitter(package_length_func=header_func(calls))
    body = b"x" * 5000
    packet = struct.pack(">H", len(body)) + body
    for i in range(len(packet) - 1):
        assert s.feed(packet[i:i + 1]) == []
    assert calls == [1, 2]          # b"\x13" -> 0, b"\x13\x88" -> 5002, then no more
    assert s.feed(packet[-1:]) == [packet]


@pytest.mark.parametrize("result,reason", [
    (-1, "rejected"), (-2, "returned -2"), (None, "not an int"), (1.5, "not an int"),
    (True, "not an int"), ("7", "not an int"),
])
def test_length_func_bad_results(result, reason):
    s = splitter(package_length_func=lambda data: result)
    with pytest.raises(FramingError, match=reason):
        s.feed(b"anything")


def test_length_func_error_keeps_earlier_packets():
    def length(data):
        return -1 if data[:1] == b"!" else 2
    s = splitter(package_length_func=length)
    with pytest.raises(FramingError) as info:
        s.feed(b"ab" + b"cd" + b"!x")
    assert info.value.packets == [b"ab", b"cd"]


def test_length_func_max_length():
    s = splitter(package_length_func=lambda data: 11, package_max_length=10)
    with pytest.raises(FramingError, match="package_max_length"):
        s.feed(b"x")
    s = splitter(package_length_func=lambda data: 10, package_max_length=10)
    assert s.feed(b"y" * 25) == [b"y" * 10, b"y" * 10]
    assert s.buffered == 5


# -- a large stream -----------------------------------------------------------

N_LARGE = 50000


def large_case(mode):
    bodies = [b"m%d" % i for i in range(N_LARGE)]
    if mode == "eof_split":
        return setting(open_eof_split=True), [b + b"\r\n" for b in bodies]
    if mode == "length":
        return (setting(open_length_check=True, package_body_offset=4),
                length_packets("N", 0, 4, bodies))
    return setting(package_length_func=header_func()), length_packets("n", 0, 2, bodies)


@pytest.mark.parametrize("mode", ["eof_split", "length", "length_func"])
@pytest.mark.parametrize("chunker", [whole, random_chunks(7, max_chunk=4096)],
                         ids=["whole", "random_4k"])
def test_large_stream(mode, chunker):
    conf, packets = large_case(mode)
    s = make_splitter(conf)()
    assert feed_all(s, chunker(b"".join(packets))) == packets
    assert s.buffered == 0


def test_large_stream_eof_check():
    packets = [b"m%d\r\n" % i for i in range(N_LARGE)]
    stream = b"".join(packets)
    s = splitter(open_eof_check=True)
    assert feed_all(s, [stream]) == [stream]
    delivered = feed_all(s, random_chunks(7, max_chunk=4096)(stream))
    assert b"".join(delivered) == stream


# -- properties ------------------------------------------------------------------

def test_properties_with_hypothesis():
    st = hypothesis.strategies

    payloads = st.lists(st.binary(max_size=40), max_size=30)
    cuts = st.lists(st.integers(min_value=0, max_value=2000), max_size=20)

    def cut(stream, points):
        points = sorted({p % (len(stream) + 1) for p in points})
        edges = [0] + points + [len(stream)]
        return [stream[a:b] for a, b in zip(edges, edges[1:])]

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(payloads, cuts, st.sampled_from(sorted(LENGTH_TYPES)))
    def length_roundtrip(bodies, points, code):
        size = struct.calcsize(LENGTH_TYPES[code])   # bodies <= 40 bytes fit even int8
        packets = length_packets(code, 1, 1 + size, bodies)
        s = splitter(open_length_check=True, package_length_type=code,
                     package_length_offset=1, package_body_offset=1 + size)
        assert feed_all(s, cut(b"".join(packets), points)) == packets
        assert s.buffered == 0

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(payloads, cuts, st.sampled_from([b"\n", b"\r\n", b"\r\n\r\n", b"aa"]))
    def eof_split_roundtrip(bodies, points, eof):
        stream = b"".join(b + eof for b in bodies)
        expected = []   # reference: split by the EOF, left to right
        rest = stream
        while eof in rest:
            i = rest.index(eof) + len(eof)
            expected.append(rest[:i])
            rest = rest[i:]
        s = splitter(open_eof_split=True, package_eof=eof)
        assert feed_all(s, cut(stream, points)) == expected
        assert s.buffered == len(rest)

    length_roundtrip()
    eof_split_roundtrip()
