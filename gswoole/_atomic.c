/* gswoole._atomic: the two CPU atomic operations gswoole's shared memory
 * needs (shm.py), as plain C functions of Python ints.
 *
 * Optional: shm.py calls libatomic through ctypes when this module was not
 * built. It exists because that ctypes call is most of the cost of a
 * Table.set (about 0.4 us of ~1.5 us, measured: see docs/shared_memory.md);
 * called from here the compare-and-swap costs a few tens of ns.
 *
 * Addresses are raw: shm.CpuWords computes them inside a mapping it keeps
 * alive (base address + offset of an aligned 8-byte word). Every value is
 * taken modulo 2**64, as ctypes' c_int64 does, so results wrap like C.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static int
words_of(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
         const char *usage, uint64_t *out)
{
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        if (!PyLong_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, usage);
            return -1;
        }
        out[i] = PyLong_AsUnsignedLongLongMask(args[i]);
        if (out[i] == (uint64_t)-1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* cas(address, expected, new) -> bool: store new if the word is expected. */
static PyObject *
atomic_cas(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t w[3];
    if (words_of(args, nargs, 3, "cas(address, expected, new) takes 3 ints", w) < 0)
        return NULL;
    int64_t expected = (int64_t)w[1];
    if (__atomic_compare_exchange_n((int64_t *)(uintptr_t)w[0], &expected, (int64_t)w[2],
                                    0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* add(address, delta) -> int: the new value (wrapping at 64 bits). */
static PyObject *
atomic_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t w[2];
    if (words_of(args, nargs, 2, "add(address, delta) takes 2 ints", w) < 0)
        return NULL;
    uint64_t value = __atomic_add_fetch((uint64_t *)(uintptr_t)w[0], w[1], __ATOMIC_SEQ_CST);
    return PyLong_FromLongLong((long long)(int64_t)value);
}

static PyMethodDef atomic_methods[] = {
    {"cas", (PyCFunction)(void (*)(void))atomic_cas, METH_FASTCALL,
     "cas(address, expected, new) -> bool"},
    {"add", (PyCFunction)(void (*)(void))atomic_add, METH_FASTCALL,
     "add(address, delta) -> int"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef atomic_module = {
    PyModuleDef_HEAD_INIT, "gswoole._atomic",
    "CPU compare-and-swap and add on raw addresses, for gswoole.shm.", -1, atomic_methods
};

PyMODINIT_FUNC
PyInit__atomic(void)
{
    return PyModule_Create(&atomic_module);
}
