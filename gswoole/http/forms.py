"""Query strings, cookies, urlencoded and multipart bodies: pure functions
over bytes/str, used lazily by ``Request`` (nothing is parsed unless asked).

Repeated keys follow PHP's (and so Swoole's) rule, the last one wins, except
names ending in ``[]`` which collect a list (``a[]=1&a[]=2``).
"""

import os
import tempfile
from urllib.parse import parse_qsl


def parse_query(text):
    result = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        _put(result, key, value)
    return result


def _put(result, key, value):
    if key.endswith("[]"):
        result.setdefault(key[:-2], []).append(value)
    else:
        result[key] = value


def parse_cookies(header):
    cookies = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies[name] = value
    return cookies


def content_type_params(value):
    """``'multipart/form-data; boundary=x'`` -> (``'multipart/form-data'``, {'boundary': 'x'})"""
    kind, _, rest = value.partition(";")
    params = {}
    for item in rest.split(";"):
        name, sep, val = item.partition("=")
        if sep:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            params[name.strip().lower()] = val
    return kind.strip().lower(), params


class MultipartError(ValueError):
    pass


def parse_multipart(body, boundary, upload_dir=None):
    """Split a multipart/form-data body into (fields, files).

    ``files`` maps each field name to Swoole's (PHP's) upload dict: name,
    type, tmp_name, size, error. Every uploaded file is written to a temp file
    in ``upload_dir`` (deleting them is the caller's job: ``Request`` removes
    them after the request), so handlers can move large uploads without
    holding them in memory twice."""
    if not boundary:
        raise MultipartError("multipart body without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    fields, files = {}, {}
    parts = body.split(delimiter)
    if len(parts) < 3 or not parts[-1].startswith(b"--"):
        raise MultipartError("multipart body is not terminated by its boundary")
    for part in parts[1:-1]:
        if part.startswith(b"\r\n"):
            part = part[2:]
        if part.endswith(b"\r\n"):
            part = part[:-2]
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("multipart part without a header block")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        _, disposition = content_type_params("x;" + headers.get("content-disposition", "")
                                             .partition(";")[2])
        name = disposition.get("name")
        if name is None:
            continue
        if "filename" in disposition:
            fd, path = tempfile.mkstemp(prefix="gswoole-upload-", dir=upload_dir)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            upload = {"name": disposition["filename"],
                      "type": headers.get("content-type", "application/octet-stream"),
                      "tmp_name": path, "size": len(content), "error": 0}
            _put(files, name, upload)
        else:
            _put(fields, name, content.decode("utf-8", "replace"))
    return fields, files
