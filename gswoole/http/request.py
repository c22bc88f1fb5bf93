"""Swoole's ``Request``: what the ``request`` callback receives.

Everything beyond the request line and headers is computed on first use
(``get``, ``post``, ``cookie``, ``files``, ``server``), so a handler that only
looks at ``path`` pays for nothing else.
"""

import os
import time
from urllib.parse import unquote

from .forms import MultipartError, content_type_params, parse_cookies, parse_multipart, \
    parse_query


class Request:
    __slots__ = ("fd", "method", "raw_uri", "query_string", "version", "keep_alive",
                 "_parsed", "_path", "_header", "_get", "_post", "_files", "_cookie",
                 "_server", "_client", "_upload_dir", "_https")

    def __init__(self, parsed, fd, client, upload_dir=None, https=False):
        self._parsed = parsed
        self.fd = fd
        self.method = parsed.method
        self.raw_uri = parsed.raw_uri
        self.query_string = parsed.query_string
        self.version = parsed.version
        self.keep_alive = parsed.keep_alive
        self._client = client          # (remote_ip, remote_port, server_port)
        self._upload_dir = upload_dir
        self._https = https            # arrived over TLS: server["https"] == "on"
        self._path = self._header = self._get = self._post = self._files = None
        self._cookie = self._server = None

    @property
    def path(self):
        """The path, percent-decoded (UTF-8), without the query string."""
        if self._path is None:
            self._path = unquote(self._parsed.path)
        return self._path

    @property
    def header(self):
        """Headers with lower-case names; repeated ones joined with ', '."""
        if self._header is None:
            header = {}
            for name, value in self._parsed.headers:
                if name in header:
                    header[name] += ("; " if name == "cookie" else ", ") + value
                else:
                    header[name] = value
            self._header = header
        return self._header

    @property
    def get(self):
        if self._get is None:
            self._get = parse_query(self.query_string)
        return self._get

    @property
    def cookie(self):
        if self._cookie is None:
            self._cookie = parse_cookies(self.header.get("cookie", ""))
        return self._cookie

    @property
    def post(self):
        if self._post is None:
            self._parse_body()
        return self._post

    @property
    def files(self):
        if self._files is None:
            self._parse_body()
        return self._files

    def _parse_body(self):
        self._post, self._files = {}, {}
        kind, params = content_type_params(self.header.get("content-type", ""))
        body = self._parsed.body
        if kind == "application/x-www-form-urlencoded":
            self._post = parse_query(body.decode("latin-1"))
        elif kind == "multipart/form-data":
            try:
                self._post, self._files = parse_multipart(body, params.get("boundary"),
                                                          self._upload_dir)
            except MultipartError:
                pass  # a malformed form reads as empty, as in Swoole and PHP

    @property
    def server(self):
        if self._server is None:
            now = time.time()
            remote_ip, remote_port, server_port = self._client
            self._server = {
                "request_method": self.method,
                "request_uri": self._parsed.path,
                "path_info": self.path,
                "query_string": self.query_string,
                "server_protocol": "HTTP/%d.%d" % self.version,
                "server_port": server_port,
                "remote_addr": remote_ip,
                "remote_port": remote_port,
                "request_time": int(now),
                "request_time_float": now,
            }
            if self._https:
                self._server["https"] = "on"
        return self._server

    def raw_content(self):
        """The request body as bytes (de-chunked)."""
        return self._parsed.body

    rawContent = getContent = raw_content

    def get_data(self):
        """The request as it would be sent again: head and body."""
        head = "%s %s HTTP/%d.%d\r\n" % (self.method, self.raw_uri, *self.version)
        head += "".join("%s: %s\r\n" % kv for kv in self._parsed.headers) + "\r\n"
        return head.encode("latin-1") + self._parsed.body

    getData = get_data

    def cleanup(self):
        """Remove uploaded temp files the handler did not move away."""
        for upload in _uploads(self._files):
            try:
                os.unlink(upload["tmp_name"])
            except OSError:
                pass

    def __repr__(self):
        return "<Request fd=%d %s %s>" % (self.fd, self.method, self.raw_uri)


def _uploads(files):
    for value in (files or {}).values():
        if isinstance(value, list):
            yield from value
        else:
            yield value
