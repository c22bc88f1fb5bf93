"""Length-prefixed JSON RPC with gswoole.Client (and the server it talks to).

    python examples/rpc_client.py [port]          # the server (default port 9501)
    python examples/rpc_client.py client [port]   # the client

Wire format, both ways: a 4-byte big-endian body length, then a JSON body.
The server sets Swoole's length framing, so each ``receive`` is one whole
request; the client sets the same options, so each ``recv()`` is one whole
reply, however TCP cut or glued the bytes. To show that, the client also
sends a batch of requests in one write, and the server answers a request
with several replies in one write.

Requests: {"id": N, "method": "add" | "upper" | "count", "params": ...}.
Replies:  {"id": N, "result": ...} or {"id": N, "error": "..."}.
"count" answers with one reply per number from 1 to params, all in one write.
"""
import json
import struct
import sys

import gswoole

HEADER = struct.Struct(">I")
FRAMING = dict(open_length_check=True, package_length_type="N",
               package_length_offset=0, package_body_offset=4,
               package_max_length=1024 * 1024)


def encode(message):
    body = json.dumps(message).encode()
    return HEADER.pack(len(body)) + body


def decode(packet):
    return json.loads(packet[HEADER.size:])   # a packet includes its header


# -- server -------------------------------------------------------------------

METHODS = {
    "add": lambda params: sum(params),
    "upper": lambda params: params.upper(),
}


def serve(port):
    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2, **FRAMING)

    def on_receive(server, fd, reactor_id, data):
        request = decode(data)
        rid, method, params = request.get("id"), request.get("method"), request.get("params")
        if method == "count":
            # several replies in one send: the client still gets them one by one
            server.send(fd, b"".join(encode({"id": rid, "result": n})
                                     for n in range(1, int(params) + 1)))
            return
        try:
            reply = {"id": rid, "result": METHODS[method](params)}
        except KeyError:
            reply = {"id": rid, "error": "unknown method %r" % (method,)}
        except Exception as exc:
            reply = {"id": rid, "error": "%s: %s" % (type(exc).__name__, exc)}
        server.send(fd, encode(reply))

    server.on("receive", on_receive)
    server.on("start", lambda server: print(
        "rpc server on 127.0.0.1:%d, master pid %d" % (server.port, server.master_pid),
        flush=True))
    server.start()


# -- client -------------------------------------------------------------------

def call(client, request):
    """Send one request and wait for its reply; raises on any failure."""
    if client.send(encode(request)) is False:
        raise RuntimeError("send failed: [%d] %s" % (client.errCode, client.errMsg))
    return receive(client)


def receive(client):
    packet = client.recv()
    if packet is False:
        raise RuntimeError("recv failed: [%d] %s" % (client.errCode, client.errMsg))
    if packet == b"":
        raise RuntimeError("the server closed the connection")
    return decode(packet)


def run_client(port):
    client = gswoole.Client(gswoole.SOCK_TCP)
    client.set(FRAMING, timeout=5.0)
    if not client.connect("127.0.0.1", port):
        print("cannot connect to 127.0.0.1:%d: [%d] %s" % (port, client.errCode,
                                                            client.errMsg))
        return 1
    with client:
        print("add   ->", call(client, {"id": 1, "method": "add", "params": [1, 2, 39]}))
        print("upper ->", call(client, {"id": 2, "method": "upper", "params": "gswoole"}))
        print("nope  ->", call(client, {"id": 3, "method": "nope", "params": None}))

        # Three requests in one write: the server gets three receives.
        batch = [{"id": 10 + i, "method": "add", "params": [i, i]} for i in range(3)]
        client.send(b"".join(map(encode, batch)))
        for _ in batch:
            print("batch ->", receive(client))

        # One request, four replies in one write: four recv() calls.
        client.send(encode({"id": 20, "method": "count", "params": 4}))
        counted = [receive(client)["result"] for _ in range(4)]
        print("count ->", counted)
        assert counted == [1, 2, 3, 4], counted

        # Nothing more is coming: recv() gives up after its timeout.
        assert client.recv(timeout=0.2) is False
        print("idle  -> recv() returned False after 0.2 s, errCode %d (%s)"
              % (client.errCode, client.errMsg))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[-1]) if args and args[-1].isdigit() else 9501
    if args[:1] == ["client"]:
        sys.exit(run_client(port))
    serve(port)
