/*
 * cluster._speedups: the hot paths of the Python wrapper in C (optional).
 *
 * The wrapper works without this module (cffi calls libcluster directly);
 * with it, a send or a receive is one call from Python that builds the
 * envelope on the C stack or the Python objects straight from the received
 * envelope. It links against nothing: `init` hands it the addresses of
 * libcluster's functions, as cffi loaded them, so both use one library.
 *
 * Handles, envelope buffers and error structs are passed as integer
 * addresses owned by cluster.node (which keeps them alive during the call).
 * Every call into libcluster releases the GIL.
 *
 * A received message must never be lost to a KeyboardInterrupt, which Python
 * raises only after a call returns. So the received envelope stays in the
 * caller's buffer until its Python object exists; that object is stored in
 * the caller's `slot` list before the C payload is freed; the caller clears
 * the slot after the call returns, with no call in between.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <sched.h>
#include <stdlib.h>

#include "cluster.h"

typedef int (*send_fn)(const cluster_node_t *, const cluster_envelope_t *, int64_t,
                       cluster_error_t *);
typedef int (*send_batch_fn)(const cluster_node_t *, const cluster_envelope_t *, size_t,
                             int64_t, size_t *, cluster_error_t *);
typedef int (*recv_fn)(const cluster_node_t *, cluster_envelope_t *, int64_t,
                       cluster_error_t *);
typedef int (*recv_batch_fn)(const cluster_node_t *, cluster_envelope_t *, size_t, size_t *,
                             int64_t, cluster_error_t *);
typedef void (*free_fn)(cluster_envelope_t *, size_t);

static send_fn p_send;
static send_batch_fn p_send_batch;
static recv_fn p_recv;
static recv_batch_fn p_recv_batch;
static free_fn p_free;
static PyObject *envelope_type; /* cluster.Envelope, a tuple subclass */
static PyObject *decode_fn;     /* cluster.node.decode(kind, data) */

/* Before a receive parks its thread, it tries this many times more, yielding
 * the CPU in between: when a sender is only a little slower than this
 * receiver, the next message usually arrives meanwhile, which saves the
 * futex sleep and wake-up per message (+20-40% messages a second with plain
 * calls between two Python processes). Costs a few microseconds of CPU
 * before an idle wait. */
#define SPINS 20

/* Returned by send_many when an item is not (pid, msg_id, bytes[, kind]). */
#define NEEDS_PYTHON 1000

static void *address(PyObject *o) { return PyLong_AsVoidPtr(o); }

static int check_args(Py_ssize_t got, Py_ssize_t want, const char *name) {
    if (got != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments, got %zd", name, want, got);
        return -1;
    }
    return 0;
}

/* init(send, send_batch, recv, recv_batch, envelopes_free, Envelope, decode) */
static PyObject *sp_init(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    if (check_args(n, 7, "init") < 0)
        return NULL;
    p_send = (send_fn)address(a[0]);
    p_send_batch = (send_batch_fn)address(a[1]);
    p_recv = (recv_fn)address(a[2]);
    p_recv_batch = (recv_batch_fn)address(a[3]);
    p_free = (free_fn)address(a[4]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyType_Check(a[5]) || !PyType_IsSubtype((PyTypeObject *)a[5], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Envelope must be a tuple subclass");
        return NULL;
    }
    Py_XDECREF(envelope_type);
    Py_XDECREF(decode_fn);
    Py_INCREF(a[5]);
    Py_INCREF(a[6]);
    envelope_type = a[5];
    decode_fn = a[6];
    Py_RETURN_NONE;
}

/* The Envelope for a received C envelope; NULL with an exception set (the C
 * envelope is left as it is). */
static PyObject *make_envelope(const cluster_envelope_t *e) {
    PyObject *data = PyBytes_FromStringAndSize((const char *)e->data, (Py_ssize_t)e->len);
    if (data == NULL)
        return NULL;
    PyObject *msg = data;
    if (e->kind == 1) {
        msg = PyUnicode_DecodeUTF8((const char *)e->data, (Py_ssize_t)e->len, NULL);
        if (msg == NULL) { /* not UTF-8: handed over as bytes */
            PyErr_Clear();
            msg = data;
        } else {
            Py_DECREF(data);
        }
    } else if (e->kind != 0) {
        msg = PyObject_CallFunction(decode_fn, "kO", (unsigned long)e->kind, data);
        Py_DECREF(data);
        if (msg == NULL)
            return NULL;
    }
    PyObject *fields = Py_BuildValue("(LLNk)", (long long)e->pid, (long long)e->msg_id, msg,
                                     (unsigned long)e->kind);
    if (fields == NULL)
        return NULL;
    /* tuple.__new__(Envelope, fields) */
    PyObject *args = PyTuple_Pack(1, fields);
    Py_DECREF(fields);
    if (args == NULL)
        return NULL;
    PyObject *env = PyTuple_Type.tp_new((PyTypeObject *)envelope_type, args, NULL);
    Py_DECREF(args);
    return env;
}

/* Stores `value` in slot[0] (a list), keeping the caller's reference. */
static int keep_in(PyObject *slot, PyObject *value) {
    Py_INCREF(value);
    if (PyList_SetItem(slot, 0, value) < 0) /* steals the new reference */
        return -1;
    return 0;
}

/* send(node, pid, msg_id, kind, data: bytes, timeout_ms, err) -> status */
static PyObject *sp_send(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    if (check_args(n, 7, "send") < 0)
        return NULL;
    const cluster_node_t *node = address(a[0]);
    long long pid = PyLong_AsLongLong(a[1]);
    long long msg_id = PyLong_AsLongLong(a[2]);
    unsigned long kind = PyLong_AsUnsignedLong(a[3]);
    long long ms = PyLong_AsLongLong(a[5]);
    cluster_error_t *err = address(a[6]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(a[4])) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    if (kind > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "kind does not fit in 32 bits");
        return NULL;
    }
    cluster_envelope_t env = {
        .pid = pid,
        .msg_id = msg_id,
        .kind = (uint32_t)kind,
        .data = (const uint8_t *)PyBytes_AS_STRING(a[4]),
        .len = (size_t)PyBytes_GET_SIZE(a[4]),
        ._owner = NULL,
    };
    int rc;
    /* `a[4]` is immutable and held by the caller while the GIL is released. */
    Py_BEGIN_ALLOW_THREADS
    rc = p_send(node, &env, ms, err);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(rc);
}

/* send_many(node, items: list, timeout_ms, sent: size_t*, err) -> status, or
 * NEEDS_PYTHON (nothing sent) if an item is not (pid, msg_id, bytes[, kind]). */
static PyObject *sp_send_many(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    if (check_args(n, 5, "send_many") < 0)
        return NULL;
    const cluster_node_t *node = address(a[0]);
    long long ms = PyLong_AsLongLong(a[2]);
    size_t *sent = address(a[3]);
    cluster_error_t *err = address(a[4]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(a[1])) {
        PyErr_SetString(PyExc_TypeError, "items must be a list");
        return NULL;
    }
    PyObject *items = a[1];
    Py_ssize_t count = PyList_GET_SIZE(items);
    cluster_envelope_t *envs = PyMem_Calloc(count ? (size_t)count : 1, sizeof *envs);
    if (envs == NULL)
        return PyErr_NoMemory();
    /* Own a reference to each payload: the list may change once the GIL is released. */
    PyObject **keep = PyMem_Calloc(count ? (size_t)count : 1, sizeof *keep);
    if (keep == NULL) {
        PyMem_Free(envs);
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    Py_ssize_t i;
    for (i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3 || PyTuple_GET_SIZE(item) > 4)
            break;
        PyObject *msg = PyTuple_GET_ITEM(item, 2);
        if (!PyBytes_CheckExact(msg))
            break;
        unsigned long kind = 0;
        if (PyTuple_GET_SIZE(item) == 4 && PyTuple_GET_ITEM(item, 3) != Py_None) {
            kind = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 3));
            if (PyErr_Occurred() || kind > UINT32_MAX) {
                PyErr_Clear();
                break;
            }
        }
        long long pid = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 0));
        long long msg_id = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 1));
        if (PyErr_Occurred())
            goto done;
        envs[i].pid = pid;
        envs[i].msg_id = msg_id;
        envs[i].kind = (uint32_t)kind;
        envs[i].data = (const uint8_t *)PyBytes_AS_STRING(msg);
        envs[i].len = (size_t)PyBytes_GET_SIZE(msg);
        Py_INCREF(msg);
        keep[i] = msg;
    }
    if (i < count) {
        result = PyLong_FromLong(NEEDS_PYTHON);
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = p_send_batch(node, envs, (size_t)count, ms, sent, err);
    Py_END_ALLOW_THREADS
    result = PyLong_FromLong(rc);
done:
    for (Py_ssize_t j = 0; j < count; j++)
        Py_XDECREF(keep[j]);
    PyMem_Free(keep);
    PyMem_Free(envs);
    return result;
}

/* recv(node, buf: cluster_envelope_t*, timeout_ms, err, slot: list) -> Envelope
 * or a status. A buffer that still holds an envelope (an interrupted call)
 * is converted without receiving. */
static PyObject *sp_recv(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    if (check_args(n, 5, "recv") < 0)
        return NULL;
    const cluster_node_t *node = address(a[0]);
    cluster_envelope_t *buf = address(a[1]);
    long long ms = PyLong_AsLongLong(a[2]);
    cluster_error_t *err = address(a[3]);
    if (PyErr_Occurred())
        return NULL;
    if (buf->_owner == NULL) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = p_recv(node, buf, 0, err);
        for (int i = 0; rc == CLUSTER_E_TIMEOUT && ms != 0 && i < SPINS; i++) {
            sched_yield();
            rc = p_recv(node, buf, 0, err);
        }
        if (rc == CLUSTER_E_TIMEOUT && ms != 0)
            rc = p_recv(node, buf, ms, err);
        Py_END_ALLOW_THREADS
        if (rc != 0)
            return PyLong_FromLong(rc);
    }
    PyObject *env = make_envelope(buf);
    if (env == NULL)
        return NULL;
    if (keep_in(a[4], env) < 0) {
        Py_DECREF(env);
        return NULL;
    }
    p_free(buf, 1);
    return env;
}

/* recv_many(node, arr, cap, count: size_t*, timeout_ms, err, slot) -> list of
 * Envelopes or a status. With *count > 0 (an interrupted call), converts
 * those without receiving. */
static PyObject *sp_recv_many(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    if (check_args(n, 7, "recv_many") < 0)
        return NULL;
    const cluster_node_t *node = address(a[0]);
    cluster_envelope_t *arr = address(a[1]);
    size_t cap = PyLong_AsSize_t(a[2]);
    size_t *count = address(a[3]);
    long long ms = PyLong_AsLongLong(a[4]);
    cluster_error_t *err = address(a[5]);
    if (PyErr_Occurred())
        return NULL;
    if (*count == 0) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = p_recv_batch(node, arr, cap, count, 0, err);
        for (int i = 0; rc == CLUSTER_E_TIMEOUT && ms != 0 && i < SPINS; i++) {
            sched_yield();
            rc = p_recv_batch(node, arr, cap, count, 0, err);
        }
        if (rc == CLUSTER_E_TIMEOUT && ms != 0)
            rc = p_recv_batch(node, arr, cap, count, ms, err);
        Py_END_ALLOW_THREADS
        if (rc != 0)
            return PyLong_FromLong(rc);
    }
    size_t got = *count;
    PyObject *list = PyList_New((Py_ssize_t)got);
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i < got; i++) {
        PyObject *env = make_envelope(&arr[i]);
        if (env == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, env);
    }
    if (keep_in(a[6], list) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    *count = 0;
    p_free(arr, got);
    return list;
}

static PyMethodDef methods[] = {
    {"init", (PyCFunction)(void (*)(void))sp_init, METH_FASTCALL,
     "init(send, send_batch, recv, recv_batch, envelopes_free, Envelope, decode)"},
    {"send", (PyCFunction)(void (*)(void))sp_send, METH_FASTCALL,
     "send(node, pid, msg_id, kind, data, timeout_ms, err) -> status"},
    {"send_many", (PyCFunction)(void (*)(void))sp_send_many, METH_FASTCALL,
     "send_many(node, items, timeout_ms, sent, err) -> status"},
    {"recv", (PyCFunction)(void (*)(void))sp_recv, METH_FASTCALL,
     "recv(node, buf, timeout_ms, err, slot) -> Envelope or status"},
    {"recv_many", (PyCFunction)(void (*)(void))sp_recv_many, METH_FASTCALL,
     "recv_many(node, arr, cap, count, timeout_ms, err, slot) -> list or status"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cluster._speedups",
    "The hot paths of cluster's Python wrapper in C (optional).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "NEEDS_PYTHON", NEEDS_PYTHON) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
