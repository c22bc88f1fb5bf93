"""What crosses Redis between nodes, as bytes: signed JSON (sans-IO).

Anyone who can write to the Redis can put bytes on a node's channel or in
the task stream, so nothing read from Redis is trusted until its HMAC
(SHA-256, keyed with ``cluster_secret``) checks out, and nothing is ever
unpickled: the format is JSON, which can carry data but never code. Bytes
(what ``send`` sends) travel as base64 under a one-key tag; tuples arrive as
lists.

A message is ``hex digest`` + ``.`` + the JSON text.
"""

import base64
import hashlib
import hmac
import json

_BYTES = "__b64__"
_DIGEST_SIZE = hashlib.sha256().digest_size * 2


class BadSignature(ValueError):
    """A message whose signature does not match: dropped by the receiver."""


def _default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {_BYTES: base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError("a %s cannot cross to another node (JSON data, bytes and str only)"
                    % type(obj).__name__)


def _hook(obj):
    if len(obj) == 1 and _BYTES in obj:
        return base64.b64decode(obj[_BYTES])
    return obj


def encode(secret, obj):
    """``obj`` (JSON data, bytes allowed) as a signed message."""
    body = json.dumps(obj, default=_default, separators=(",", ":")).encode("utf-8")
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
    return digest + b"." + body


def decode(secret, message):
    """The object in a signed message; BadSignature if it was not signed
    with ``secret`` (or is not a message at all)."""
    if isinstance(message, str):
        message = message.encode("utf-8", "replace")
    digest, body = message[:_DIGEST_SIZE], message[_DIGEST_SIZE + 1:]
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
    if message[_DIGEST_SIZE:_DIGEST_SIZE + 1] != b"." or \
            not hmac.compare_digest(digest, expected):
        raise BadSignature("bad signature")
    try:
        return json.loads(body, object_hook=_hook)
    except ValueError as exc:
        raise BadSignature("signed but not JSON: %s" % exc) from None


def key(secret):
    """The HMAC key (bytes) for a ``cluster_secret`` setting."""
    return secret.encode("utf-8")
