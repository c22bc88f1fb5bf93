"""A TLS echo server, and a gswoole.Client that verifies it.

    python examples/tls_echo.py            # listens on 127.0.0.1:9443 (TLS)
    python examples/tls_echo.py client 9443

For the example, the server makes a local CA and a certificate for
127.0.0.1 with trustme (pip install trustme) and writes them to
/tmp/gswoole-tls-example-PORT/; in production, point ssl_cert_file and
ssl_key_file at your CA's files (docs/tls.md). The client trusts that CA
only, checks the certificate and the host name, and echoes a line.
"""
import os
import shutil
import sys
import tempfile

import gswoole


def folder_for(port):
    return os.path.join(tempfile.gettempdir(), "gswoole-tls-example-%d" % port)


def make_certificates(folder):
    import trustme
    os.makedirs(folder, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.cert_chain_pems[0].write_to_path(os.path.join(folder, "cert.pem"))
    issued.private_key_pem.write_to_path(os.path.join(folder, "key.pem"))
    ca.cert_pem.write_to_path(os.path.join(folder, "ca.pem"))


def serve(port):
    server = gswoole.Server("127.0.0.1", port, gswoole.SOCK_TCP | gswoole.SSL)
    folder = folder_for(server.port)
    make_certificates(folder)
    server.set(worker_num=2, ssl_cert_file=os.path.join(folder, "cert.pem"),
               ssl_key_file=os.path.join(folder, "key.pem"))

    def on_connect(server, fd, reactor_id):
        # connect runs after the handshake: the TLS facts are known.
        info = server.get_client_info(fd)
        print("fd %d: %s, %s" % (fd, info["ssl_version"], info["ssl_cipher"]), flush=True)

    server.on("connect", on_connect)
    server.on("receive", lambda server, fd, reactor_id, data: server.send(fd, data))
    server.on("start", lambda server: print("TLS echo on 127.0.0.1:%d, master pid %d"
                                            % (server.port, server.master_pid), flush=True))
    try:
        server.start()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def client(port):
    client = gswoole.Client(gswoole.SOCK_TCP | gswoole.SSL)
    client.set(ssl_cafile=os.path.join(folder_for(port), "ca.pem"))
    if not client.connect("127.0.0.1", port, timeout=5):
        sys.exit("connect failed: %d %s" % (client.errCode, client.errMsg))
    client.send(b"hello over TLS\n")
    print("echoed:", client.recv().decode().strip())
    client.close()
    # The same server, asked for a name its certificate does not carry:
    wrong = gswoole.Client(gswoole.SOCK_TCP | gswoole.SSL)
    wrong.set(ssl_cafile=os.path.join(folder_for(port), "ca.pem"), ssl_host_name="example.com")
    assert not wrong.connect("127.0.0.1", port, timeout=5)
    print("wrong host name refused: %d %s" % (wrong.errCode, wrong.errMsg))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "client":
        client(int(sys.argv[2]))
    else:
        serve(int(sys.argv[1]) if len(sys.argv) > 1 else 9443)
