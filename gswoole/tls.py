"""TLS without sockets: server contexts from the ssl_* settings, and one
connection's TLS layer over the standard library's memory BIOs.

The layer is sans-IO, as asyncio's sslproto is: the reactor gives it the
ciphertext it read (``feed``) and gets back plaintext for the port's
splitter; it gives it the plaintext a protocol sends (``encrypt``) and
writes the ciphertext itself. The handshake is the same loop: ``feed``
advances it as far as the bytes received allow (OpenSSL says WANT_READ
otherwise) and what OpenSSL wants to send is left in ``outgoing()``. So no
call here ever waits for the network, and a client that stalls mid-handshake
costs its own connection only.

Contexts are built in the master before the workers fork, so a missing or
wrong certificate fails ``start()``; a new worker builds them again if the
files changed since (``refresh``), so a worker started by a reload (SIGUSR1)
serves the certificate files as they are now.
"""

import logging
import os
import ssl

from .errors import SettingError

log = logging.getLogger("gswoole")

READ_SIZE = 65536
_MIN_VERSION = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_WANT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _base_context(setting):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSION[setting["ssl_min_version"]]
    # No TLS-level compression (CRIME), the server's cipher order, and no
    # TLS 1.2 renegotiation (a CPU sink for a client to pull on, and a write
    # could then find the session busy mid-handshake).
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                        | ssl.OP_NO_RENEGOTIATION)
    if setting["ssl_ciphers"]:
        context.set_ciphers(setting["ssl_ciphers"])
    verify = setting["ssl_verify_peer"]
    if verify:
        context.verify_mode = ssl.CERT_OPTIONAL if verify == "optional" else ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=setting["ssl_client_cert_file"])
    if setting["ssl_alpn_protocols"]:
        context.set_alpn_protocols(setting["ssl_alpn_protocols"])
    return context


def build_server_context(setting, where):
    """An SSLContext for a TLS port from its (merged) settings; SettingError
    saying what is wrong, naming the port ``where``."""
    if not setting["ssl_cert_file"] or not setting["ssl_key_file"]:
        raise SettingError("TLS port %s needs ssl_cert_file and ssl_key_file (server.set() "
                           "or that port's set())" % where)
    if setting["ssl_verify_peer"] and not setting["ssl_client_cert_file"]:
        raise SettingError("TLS port %s: ssl_verify_peer needs ssl_client_cert_file (the CA "
                           "that client certificates must chain to)" % where)
    try:
        context = _base_context(setting)
        context.load_cert_chain(setting["ssl_cert_file"], setting["ssl_key_file"])
        sni = {}
        for host, files in (setting["ssl_sni_certs"] or {}).items():
            sni[host] = _base_context(setting)
            sni[host].load_cert_chain(files["ssl_cert_file"], files["ssl_key_file"])
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise SettingError("TLS port %s: %s" % (where, exc)) from None
    if sni:
        def pick(sslobj, server_name, _context):
            chosen = sni.get(server_name.lower()) if server_name else None
            if chosen is not None:
                sslobj.context = chosen
        context.sni_callback = pick
    return context


def files_stamp(setting):
    """What tells whether the port's certificate files changed: their
    (path, mtime, size)."""
    paths = [setting["ssl_cert_file"], setting["ssl_key_file"],
             setting["ssl_client_cert_file"]]
    for files in (setting["ssl_sni_certs"] or {}).values():
        paths += [files["ssl_cert_file"], files["ssl_key_file"]]
    stamp = []
    for path in paths:
        if path:
            try:
                info = os.stat(path)
                stamp.append((path, info.st_mtime_ns, info.st_size))
            except OSError:
                stamp.append((path, None, None))
    return stamp


def refresh(listener, worker_id):
    """In a new worker: if the port's certificate files changed since the
    context was built, build it again (so a reload picks up renewed
    certificates). If that fails the worker keeps the context it inherited,
    and says so."""
    stamp = files_stamp(listener.ssl_setting)
    if stamp == listener.ssl_stamp:
        return
    try:
        listener.ssl_context = build_server_context(listener.ssl_setting, listener.describe())
        listener.ssl_stamp = stamp
        log.info("worker #%d: TLS port %s: reloaded its certificate files", worker_id,
                 listener.describe())
    except SettingError as exc:
        log.error("worker #%d: %s; serving the certificate loaded at start", worker_id, exc)


class TlsError(Exception):
    """The peer broke TLS (a plaintext request, a bad record, a failed
    handshake or certificate check): the connection cannot go on."""


class TlsLayer:
    """One server-side TLS connection over memory BIOs.

    ``handshaking`` is True until the handshake completes; ``pending``
    holds plaintext sent meanwhile (written once the keys exist)."""

    __slots__ = ("_in", "_out", "_obj", "handshaking", "pending", "timer", "closed",
                 "broken", "started")

    def __init__(self, context):
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self.handshaking = True
        self.pending = None
        self.timer = None          # the reactor's handshake timeout, while handshaking
        self.closed = False        # the peer sent close_notify
        self.broken = False        # a TLS error: nothing more can be sent
        self.started = False       # the peer sent something of a handshake

    def feed(self, data):
        """Ciphertext in; plaintext out (b"" if none is complete yet).
        Raises TlsError. ``handshaking`` turns False when the handshake
        completes; ``closed`` turns True on the peer's close_notify."""
        self._in.write(data)
        obj = self._obj
        chunks = []
        try:
            if self.handshaking:
                self.started = True
                try:
                    obj.do_handshake()
                except _WANT:
                    return b""
                self.handshaking = False
            # Read until OpenSSL has no whole record left; asking once more
            # when the BIO is empty would only raise WANT_READ.
            while True:
                try:
                    chunk = obj.read(READ_SIZE)
                except _WANT:
                    break
                if not chunk:
                    self.closed = True
                    break
                chunks.append(chunk)
                if not self._in.pending and not obj.pending():
                    break
        except ssl.SSLZeroReturnError:
            self.closed = True
            return b"".join(chunks)
        except ssl.SSLError as exc:
            raise TlsError(_describe(exc)) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def encrypt(self, data):
        """Plaintext in, ciphertext out (after the handshake)."""
        self._obj.write(data)
        return self._out.read()

    def outgoing(self):
        """Ciphertext OpenSSL produced on its own (handshake, alerts, tickets)."""
        return self._out.read() if self._out.pending else b""

    def close_notify(self):
        """The close_notify alert to send before our FIN (b"" if none can be)."""
        if self.handshaking or self.broken:
            return b""
        try:
            self._obj.unwrap()
        except _WANT:
            pass       # it waits for the peer's close_notify; ours is written
        except (ssl.SSLError, ValueError):
            pass
        return self.outgoing()

    def info(self):
        """get_client_info's TLS fields."""
        obj = self._obj
        cipher = obj.cipher()
        info = {"ssl_version": obj.version(), "ssl_cipher": cipher[0] if cipher else None}
        alpn = obj.selected_alpn_protocol()
        if alpn:
            info["ssl_alpn_protocol"] = alpn
        der = obj.getpeercert(binary_form=True) if not self.handshaking else None
        if der:
            info["ssl_client_cert"] = ssl.DER_cert_to_PEM_cert(der)
        return info

    @property
    def ssl_object(self):
        return self._obj


def _describe(exc):
    reason = getattr(exc, "reason", None) or ""
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    if reason in ("HTTP_REQUEST", "WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL",
                  "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        text += " (not TLS: plaintext on a TLS port?)"
    return text
