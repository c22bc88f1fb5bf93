"""A Flask app served by gswoole, and a client that shows what the server does.

    python examples/flask_app.py [port]            # gswoole.wsgi.Server, 2 workers (default port 9501)
    python examples/flask_app.py client [port]     # the client (urllib and threads)

The same app under the command line (it patches with gevent before importing
this file, the script below does it by hand):

    gswoole-serve examples/flask_app.py:app --bind 127.0.0.1:9501 --workers 2 --access-log -

Flask is in the test extra: pip install -e '.[test]'.
"""
import os
import sys

if __name__ == "__main__" and sys.argv[1:2] != ["client"]:
    # First thing, before Flask or any library that does I/O is imported:
    # blocking calls (time.sleep, sockets, DNS) become cooperative, so one slow
    # request waits without stalling the other requests of its worker.
    import gswoole
    gswoole.patch_all()

import time

from flask import Flask, jsonify, request, send_file

app = Flask(__name__)


@app.route("/")
def index():
    return "hello from Flask in pid %d\n" % os.getpid()


@app.route("/sum", methods=["POST"])
def add():
    numbers = request.get_json()["numbers"]
    return jsonify(sum=sum(numbers), count=len(numbers))


@app.route("/form", methods=["POST"])
def form():
    upload = request.files.get("upload")
    return jsonify(fields=request.form.to_dict(),
                   upload=upload and {"filename": upload.filename, "size": len(upload.read())})


@app.route("/headers")
def headers():
    # What reached the app: X-Api-Key does, X_Api_Key was dropped by the server.
    return jsonify({k: v for k, v in request.headers.items() if k.lower().startswith("x")})


@app.route("/slow")
def slow():
    time.sleep(0.5)          # patched: waits in this request's greenlet only
    return "slept 0.5 s in pid %d\n" % os.getpid()


@app.route("/download")
def download():
    # Flask hands the file to wsgi.file_wrapper; gswoole sends it with os.sendfile.
    return send_file(os.path.abspath(__file__), mimetype="text/x-python")


def serve(port):
    import gswoole.wsgi
    server = gswoole.wsgi.Server(app, "127.0.0.1", port)
    server.set(worker_num=2,
               package_max_length=1024 * 1024,   # largest request body: 1 MiB, else 413
               access_log="-")                   # one line per request on stderr
    server.on("start", lambda s: print("flask_app listening on 127.0.0.1:%d (master pid %d)"
                                       % (s.port, s.master_pid), flush=True))
    server.start()


# -- client -----------------------------------------------------------------

def run_client(port):
    import json
    import threading
    import urllib.error
    import urllib.request

    base = "http://127.0.0.1:%d" % port

    def fetch(path, data=None, headers=None, method=None):
        req = urllib.request.Request(base + path, data=data, headers=headers or {},
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    status, _, body = fetch("/")
    print("GET /          ->", status, body.decode().strip())

    status, _, body = fetch("/sum", json.dumps({"numbers": [1, 2, 39]}).encode(),
                            {"Content-Type": "application/json"})
    print("POST /sum      ->", status, json.loads(body))

    boundary = "flask-example"
    multipart = ("--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nnotes\r\n"
                 "--{b}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"n.txt\""
                 "\r\nContent-Type: text/plain\r\n\r\n" + "x" * 1000 + "\r\n--{b}--\r\n"
                 ).format(b=boundary).encode()
    status, _, body = fetch("/form", multipart,
                            {"Content-Type": "multipart/form-data; boundary=" + boundary})
    print("POST /form     ->", status, json.loads(body))

    status, _, body = fetch("/headers", headers={"X-Api-Key": "dash", "X_Api_Key": "underscore"})
    print("GET /headers   ->", status, json.loads(body), "(X_Api_Key was dropped)")

    status, headers, body = fetch("/download")
    print("GET /download  -> %d, Content-Length %s, %d bytes (sendfile)"
          % (status, headers["Content-Length"], len(body)))

    # Ten requests that each sleep 0.5 s, at once, on two workers.
    started = time.monotonic()
    threads = [threading.Thread(target=fetch, args=("/slow",)) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    print("10 x GET /slow -> %.2f s in all (one after another would take 5 s)" % took)

    # A body over package_max_length is refused before the app runs.
    status, headers, body = fetch("/sum", b"x" * (3 * 1024 * 1024),
                                  {"Content-Type": "application/json"})
    print("POST 3 MiB     ->", status, body.decode().strip())
    return 0 if took < 2.5 and status == 413 else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[-1]) if args and args[-1].isdigit() else 9501
    if args[:1] == ["client"]:
        sys.exit(run_client(port))
    serve(port)
