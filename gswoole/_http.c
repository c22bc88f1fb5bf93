/* gswoole._http: the common HTTP/1.x request head read, and the usual
 * response header lines made, each in one C call.
 *
 * RequestParser (gswoole/http/parser.py) reads requests with llhttp through
 * httptools, whose five Python callbacks per request cost more than llhttp
 * itself. scan() reads the usual request -- a whole head, no body, nothing
 * that needs a second look -- in one call, and says "not mine" (None) for
 * everything else, which then goes to llhttp exactly as before. So what scan()
 * accepts must be a strict subset of what llhttp accepts and must read the
 * same; tests/test_http_parser.py checks both readings agree.
 *
 * Accepted, and nothing else:
 *   method SP target SP "HTTP/1." ("0" | "1") CRLF
 *   *( name ":" OWS value CRLF )
 *   CRLF
 * where method is a key of the `methods` dict (bytes -> str) the caller
 * passes, target is "/" then bytes 0x21-0x7E, name is 1*tchar, value is
 * HTAB / SP / VCHAR (no obs-text: llhttp takes it, scan() leaves it to
 * llhttp), OWS is SP / HTAB. Trailing OWS of a value is dropped, as the
 * parser does.
 *
 * Left to llhttp (scan() returns None): an incomplete head, any other byte,
 * bare CR or LF, obs-fold, empty lines before the request line, a field that
 * frames, expects or upgrades (Content-Length, Transfer-Encoding, Expect,
 * Upgrade), Proxy-Connection (llhttp reads it as Connection), a Connection
 * field other than one "close" or "keep-alive", a
 * second Host or Content-Type, HTTP/1.1 without Host, and anything over the
 * limits (the slow path then gives the right 4xx).
 *
 * scan(data, pos, methods, max_url, max_line, max_fields, max_field)
 *   -> (method, raw_uri, minor, headers, keep_alive, end) or None
 * headers: [(lower-case name, value), ...] as str (latin-1); end: the offset
 * just past the head.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

static unsigned char tchar[256];      /* RFC 9110 token characters */
static unsigned char vchar_sp[256];   /* field-value bytes: HTAB, SP, VCHAR */

static void
init_tables(void)
{
    const char *extra = "!#$%&'*+-.^_`|~";
    for (int c = '0'; c <= '9'; c++) tchar[c] = 1;
    for (int c = 'a'; c <= 'z'; c++) tchar[c] = 1;
    for (int c = 'A'; c <= 'Z'; c++) tchar[c] = 1;
    for (const char *p = extra; *p; p++) tchar[(unsigned char)*p] = 1;
    vchar_sp['\t'] = 1;
    for (int c = 0x20; c <= 0x7e; c++) vchar_sp[c] = 1;
}

/* Case-insensitive compare of [p, p+n) with a lower-case literal. */
static int
is_named(const unsigned char *p, Py_ssize_t n, const char *lower, Py_ssize_t len)
{
    if (n != len)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* What a field means to scan(). */
enum { ORDINARY, HOST, CONTENT_TYPE, CONNECTION, NOT_MINE };

static int
field_kind(const unsigned char *name, Py_ssize_t n)
{
    switch (n) {
    case 4:
        return is_named(name, n, "host", 4) ? HOST : ORDINARY;
    case 6:
        return is_named(name, n, "expect", 6) ? NOT_MINE : ORDINARY;
    case 7:
        return is_named(name, n, "upgrade", 7) ? NOT_MINE : ORDINARY;
    case 10:
        return is_named(name, n, "connection", 10) ? CONNECTION : ORDINARY;
    case 12:
        return is_named(name, n, "content-type", 12) ? CONTENT_TYPE : ORDINARY;
    case 14:
        return is_named(name, n, "content-length", 14) ? NOT_MINE : ORDINARY;
    case 16:   /* llhttp reads it as Connection: leave its meaning to llhttp */
        return is_named(name, n, "proxy-connection", 16) ? NOT_MINE : ORDINARY;
    case 17:
        return is_named(name, n, "transfer-encoding", 17) ? NOT_MINE : ORDINARY;
    default:
        return ORDINARY;
    }
}

static PyObject *
lower_latin1(const unsigned char *p, Py_ssize_t n)
{
    PyObject *s = PyUnicode_New(n, 127);   /* names are tchar: ASCII */
    if (s == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        out[i] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
    }
    return s;
}

static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 7 arguments");
        return NULL;
    }
    PyObject *data = args[0], *methods = args[2];
    if (!PyBytes_CheckExact(data) || !PyDict_CheckExact(methods)) {
        PyErr_SetString(PyExc_TypeError, "scan(bytes, int, dict, int, int, int, int)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_url = PyLong_AsSsize_t(args[3]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[4]);
    Py_ssize_t max_fields = PyLong_AsSsize_t(args[5]);
    Py_ssize_t max_field = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred())
        return NULL;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        return NULL;
    }
    const unsigned char *p = buf + pos, *end = buf + size;

    /* The request line. */
    const unsigned char *method = p;
    while (p < end && tchar[*p])
        p++;
    Py_ssize_t method_len = p - method;
    if (method_len == 0 || p >= end || *p != ' ')
        Py_RETURN_NONE;
    p++;
    const unsigned char *target = p;
    if (p >= end || *p != '/')
        Py_RETURN_NONE;
    while (p < end && *p >= 0x21 && *p <= 0x7e)
        p++;
    Py_ssize_t target_len = p - target;
    if (target_len > max_url || method_len + target_len + 10 > max_line)
        Py_RETURN_NONE;
    if (end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || (p[8] != '0' && p[8] != '1')
            || p[9] != '\r' || p[10] != '\n')
        Py_RETURN_NONE;
    int minor = p[8] - '0';
    p += 11;

    /* The header fields. The head must be complete before any object is
     * made, so look for its end first. */
    const unsigned char *fields = p;
    int host = 0, content_type = 0, connection = 0, close = 0, keep_alive_token = 0;
    Py_ssize_t count = 0;
    for (;;) {
        if (end - p < 2)
            Py_RETURN_NONE;               /* incomplete: llhttp waits for the rest */
        if (p[0] == '\r' && p[1] == '\n')
            break;
        const unsigned char *name = p;
        while (p < end && tchar[*p])
            p++;
        Py_ssize_t name_len = p - name;
        if (name_len == 0 || p >= end || *p != ':')
            Py_RETURN_NONE;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const unsigned char *value = p;
        while (p < end && vchar_sp[*p])
            p++;
        Py_ssize_t value_len = p - value;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            Py_RETURN_NONE;
        p += 2;
        if (++count > max_fields || name_len + value_len > max_field)
            Py_RETURN_NONE;
        while (value_len && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
            value_len--;
        switch (field_kind(name, name_len)) {
        case HOST:
            if (host++)
                Py_RETURN_NONE;
            break;
        case CONTENT_TYPE:
            if (content_type++)
                Py_RETURN_NONE;
            break;
        case CONNECTION:
            if (connection++)
                Py_RETURN_NONE;
            if (is_named(value, value_len, "close", 5))
                close = 1;
            else if (is_named(value, value_len, "keep-alive", 10))
                keep_alive_token = 1;
            else
                Py_RETURN_NONE;
            break;
        case NOT_MINE:
            Py_RETURN_NONE;
        }
    }
    Py_ssize_t head_end = (p + 2) - buf;
    if (minor == 1 && !host)
        Py_RETURN_NONE;                   /* a 400: the slow path says so */

    /* The head is ours: make the objects. */
    PyObject *method_bytes = PyBytes_FromStringAndSize((const char *)method, method_len);
    if (method_bytes == NULL)
        return NULL;
    PyObject *method_str = PyDict_GetItemWithError(methods, method_bytes);
    Py_DECREF(method_bytes);
    if (method_str == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;                   /* a method we do not serve: 501 on the slow path */
    }
    Py_INCREF(method_str);                /* borrowed from the dict: hold it while allocating */
    PyObject *headers = PyList_New(count);
    if (headers == NULL) {
        Py_DECREF(method_str);
        return NULL;
    }
    p = fields;
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *name = p;
        while (*p != ':')
            p++;
        Py_ssize_t name_len = p - name;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        const unsigned char *value = p;
        while (*p != '\r')
            p++;
        Py_ssize_t value_len = p - value;
        p += 2;
        while (value_len && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
            value_len--;
        PyObject *key = lower_latin1(name, name_len);
        PyObject *text = key ? PyUnicode_DecodeLatin1((const char *)value, value_len, NULL)
                             : NULL;
        PyObject *pair = text ? PyTuple_Pack(2, key, text) : NULL;
        Py_XDECREF(key);
        Py_XDECREF(text);
        if (pair == NULL) {
            Py_DECREF(headers);
            Py_DECREF(method_str);
            return NULL;
        }
        PyList_SET_ITEM(headers, i, pair);
    }
    PyObject *raw_uri = PyUnicode_DecodeLatin1((const char *)target, target_len, NULL);
    if (raw_uri == NULL) {
        Py_DECREF(headers);
        Py_DECREF(method_str);
        return NULL;
    }
    /* llhttp's should_keep_alive for a request without a body. */
    int keep_alive = minor == 1 ? !close : (keep_alive_token && !close);
    return Py_BuildValue("(NNiNOn)", method_str, raw_uri, minor, headers,
                         keep_alive ? Py_True : Py_False, head_end);
}

/* fields(headers, kinds) -> (bytes, content_length or None) or None
 *
 * The response side: ResponseWriter.start's header lines for the usual list,
 * each (name, value) a pair of str whose name `kinds` (the writer's cache of
 * what a name means) knows as ordinary (0) or Content-Length (1), with no CR
 * or LF and nothing past latin-1: "Name: value\r\n" for each, and the
 * Content-Length value (ASCII digits). Anything else -- another kind of
 * field, a name not yet in the cache, a value that is not str, two
 * different lengths, a line break -- is None: the writer's Python path then
 * decides, and raises where it must. The decision stays in the writer; this
 * only makes its bytes. */
#define FIELD_ORDINARY 0
#define FIELD_CONTENT_LENGTH 1

static PyObject *
fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "fields(headers, kinds: dict)");
        return NULL;
    }
    PyObject *headers = args[0], *kinds = args[1];
    if (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers))
        Py_RETURN_NONE;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(headers);
    PyObject **items = PySequence_Fast_ITEMS(headers);
    Py_ssize_t total = 0;
    long long length = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = items[i];
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            Py_RETURN_NONE;
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyUnicode_CheckExact(name) || !PyUnicode_CheckExact(value)
                || PyUnicode_KIND(name) != PyUnicode_1BYTE_KIND
                || PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND)
            Py_RETURN_NONE;
        PyObject *kind = PyDict_GetItemWithError(kinds, name);
        if (kind == NULL) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE;
        }
        long k = PyLong_Check(kind) ? PyLong_AsLong(kind) : -1;
        if (k != FIELD_ORDINARY && k != FIELD_CONTENT_LENGTH) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        Py_ssize_t name_len = PyUnicode_GET_LENGTH(name), value_len = PyUnicode_GET_LENGTH(value);
        const char *nv = (const char *)PyUnicode_1BYTE_DATA(name);
        const char *vv = (const char *)PyUnicode_1BYTE_DATA(value);
        if (memchr(nv, '\r', name_len) || memchr(nv, '\n', name_len)
                || memchr(vv, '\r', value_len) || memchr(vv, '\n', value_len))
            Py_RETURN_NONE;
        if (k == FIELD_CONTENT_LENGTH) {
            if (value_len == 0 || value_len > 18)
                Py_RETURN_NONE;
            long long v = 0;
            for (Py_ssize_t j = 0; j < value_len; j++) {
                if (vv[j] < '0' || vv[j] > '9')
                    Py_RETURN_NONE;
                v = v * 10 + (vv[j] - '0');
            }
            if (length >= 0 && v != length)
                Py_RETURN_NONE;
            length = v;
        }
        total += name_len + value_len + 4;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(items[i], 0), *value = PyTuple_GET_ITEM(items[i], 1);
        Py_ssize_t name_len = PyUnicode_GET_LENGTH(name), value_len = PyUnicode_GET_LENGTH(value);
        memcpy(w, PyUnicode_1BYTE_DATA(name), name_len);
        w += name_len;
        *w++ = ':';
        *w++ = ' ';
        memcpy(w, PyUnicode_1BYTE_DATA(value), value_len);
        w += value_len;
        *w++ = '\r';
        *w++ = '\n';
    }
    if (length < 0)
        return Py_BuildValue("(NO)", out, Py_None);
    return Py_BuildValue("(NL)", out, length);
}

static PyMethodDef methods[] = {
    {"fields", (PyCFunction)(void (*)(void))fields, METH_FASTCALL,
     "fields(headers, kinds): the usual response header lines as bytes and "
     "their Content-Length, or None (see the module's source)."},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, pos, methods, max_url, max_line, max_fields, max_field): the "
     "common request head at data[pos:], or None (see the module's source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gswoole._http",
    "The common HTTP/1.x request head in one C call (see gswoole/_http.c).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__http(void)
{
    init_tables();
    return PyModule_Create(&module);
}
