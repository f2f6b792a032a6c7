/*
 * cluster._port: the one send path and the one receive path of the Python
 * wrapper, in C. Each node gets a `Port`; `Node.send`, `Outbox.put`,
 * `Node.send_many`, `Node.recv`, `Inbox.get` and `Node.recv_many` are its
 * methods, so a plain call is one C call from Python.
 *
 * libcluster's functions are looked up by name, typed by the header
 * (`__typeof__(cluster_send)`), in the copy of the library that cffi opened
 * (`init(path)`), so both use one library; the envelope is the header's
 * struct.
 *
 * Sends: every call into libcluster that may block releases the GIL. On
 * the main thread (the only one Python raises KeyboardInterrupt in) a send
 * that may wait longer than its first slice waits in slices instead, with
 * `cluster_try_send`: a slice that runs out leaves the message with the
 * caller, not sent and not counted; Python's signal handlers run, and the
 * send goes on. When the whole timeout has run out, `cluster_send` with no
 * wait drops and counts it as a plain send would. A broadcast that waits so
 * is sent to each peer in turn (one call would drop it for a peer that
 * stays full for a slice).
 *
 * Receives: a receive first takes what is there without releasing the GIL
 * (the core's own read-ahead makes that one short call), then waits in
 * slices of at most SLICE_MS with the GIL released, running signal
 * handlers in between. No message is lost to an exception:
 * - a message whose conversion to an Envelope fails (a KeyboardInterrupt
 *   inside a JSON decoder, say) stays in the port, in C, and the next
 *   receive returns it first (`held`);
 * - Python may raise an interrupt right after `recv` returns (CPython
 *   checks for signals after a call into C), before the caller stored the
 *   result. So on the main thread the port keeps what it returned last in
 *   `pending`; the wrapper sets `port.pending = None` once it holds the
 *   result (an attribute store, where CPython checks no signal), and the
 *   next receive returns a result still pending again.
 * The core counts a message delivered when it is taken from the inbox.
 *
 * The port's own state is only touched with the GIL held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <math.h>
#include <pythread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "cluster.h"

/* The functions of libcluster this module calls, with the header's types. */
#define CLUSTER_FUNCTIONS(X)                                                                    \
    X(cluster_send)                                                                             \
    X(cluster_try_send)                                                                         \
    X(cluster_recv)                                                                             \
    X(cluster_recv_batch)                                                                       \
    X(cluster_envelope_free)                                                                    \
    X(cluster_envelopes_free)                                                                   \
    X(cluster_peers)

#define DECLARE(name) static __typeof__(&name) p_##name;
CLUSTER_FUNCTIONS(DECLARE)
#undef DECLARE

static PyObject *envelope_type; /* cluster.Envelope, a tuple subclass */
static PyObject *decode_fn;     /* cluster.node.decode(kind, data) -> msg */
static PyObject *encode_fn;     /* cluster.node.encode(msg, kind) -> (kind, data) */
static PyObject *error_for_fn;  /* cluster.errors.error_for(code, message) -> exception */
static PyObject *out_of_range;  /* cluster.errors.OutOfRange */
static unsigned long main_thread; /* ident of the thread Python raises signal exceptions in */

/* Longest wait in C before Python's signal handlers run (Ctrl-C). */
#define SLICE_MS 50

/* A send returns this (with an exception set) when a signal handler raised. */
#define INTERRUPTED 1001

/* Most envelopes one `recv_many` takes (a larger `max` counts as this). */
#define MAX_BATCH 65536

static int check_args(Py_ssize_t got, Py_ssize_t want, const char *name) {
    if (got != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments, got %zd", name, want, got);
        return -1;
    }
    return 0;
}

/* init(library_path, Envelope, decode, encode, error_for, OutOfRange, main_thread_ident) */
static PyObject *port_init(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    if (check_args(n, 7, "init") < 0)
        return NULL;
    const char *path = PyUnicode_AsUTF8(a[0]);
    if (path == NULL)
        return NULL;
    /* cffi has opened it already: this takes another reference to that copy. */
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return PyErr_Format(PyExc_ImportError, "cluster._port: %s", dlerror());
#define RESOLVE(name)                                                                           \
    p_##name = (__typeof__(&name))dlsym(lib, #name);                                            \
    if (p_##name == NULL)                                                                       \
        return PyErr_Format(PyExc_ImportError, "cluster._port: %s lacks %s", path, #name);
    CLUSTER_FUNCTIONS(RESOLVE)
#undef RESOLVE
    main_thread = PyLong_AsUnsignedLong(a[6]);
    if (PyErr_Occurred())
        return NULL;
    PyObject **slots[] = {&envelope_type, &decode_fn, &encode_fn, &error_for_fn, &out_of_range};
    for (int i = 0; i < 5; i++) {
        Py_INCREF(a[i + 1]);
        Py_XSETREF(*slots[i], a[i + 1]);
    }
    Py_RETURN_NONE;
}

/* `o` as an int64_t argument: 0, or -1 with OutOfRange (naming the argument
 * `name`, or `envelopes[index].name` for index >= 0, and the range) or a
 * TypeError set. */
static int arg_int64(PyObject *o, const char *name, Py_ssize_t index, int64_t *out) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    const char *problem = NULL;
    if (v == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return -1;
        PyErr_Clear();
        problem = "an integer";
    } else if (overflow != 0) {
        problem = "in -2**63..2**63-1";
    }
    if (problem == NULL) {
        *out = (int64_t)v;
        return 0;
    }
    PyObject *type = overflow != 0 ? out_of_range : PyExc_TypeError;
    PyObject *what = index < 0 ? PyUnicode_FromString(name)
                               : PyUnicode_FromFormat("envelopes[%zd].%s", index, name);
    if (what == NULL)
        return -1;
    if (overflow != 0)
        PyErr_Format(type, "%U must be %s, got %R", what, problem, o);
    else
        PyErr_Format(type, "%U must be %s, not %.100s", what, problem, Py_TYPE(o)->tp_name);
    Py_DECREF(what);
    return -1;
}

/* Raises the exception of status `code` with the message of `err` (NULL or
 * empty: the core's words for it); returns NULL. */
static PyObject *raise_status(int code, const cluster_error_t *err) {
    const char *text = err != NULL ? err->message : "";
    if (text[0] == '\0') {
        if (code == CLUSTER_E_CLOSED)
            text = "node is closed";
        else if (code == CLUSTER_E_TIMEOUT)
            text = "timed out";
    }
    size_t len = strnlen(text, CLUSTER_ERROR_MESSAGE_LEN);
    PyObject *exc = PyObject_CallFunction(error_for_fn, "is#", code, text, (Py_ssize_t)len);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* Seconds (None = for ever) as the C ABI's milliseconds (-1 = for ever), as
 * cluster.node.timeout_ms does; -2 with an exception set. */
static long long timeout_ms(PyObject *timeout) {
    if (timeout == NULL || timeout == Py_None)
        return -1;
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError) && PyLong_Check(timeout)) {
            PyErr_Clear(); /* an int beyond a double: for ever, or negative */
            PyObject *zero = PyLong_FromLong(0);
            int positive = zero == NULL ? -1 : PyObject_RichCompareBool(timeout, zero, Py_GT);
            Py_XDECREF(zero);
            if (positive < 0)
                return -2;
            t = positive ? INFINITY : -1.0;
        } else {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "timeout must be None or a number of seconds, not %.100s",
                             Py_TYPE(timeout)->tp_name);
            }
            return -2;
        }
    }
    if (isnan(t) || t < 0) {
        PyErr_Format(PyExc_ValueError, "timeout must be None or >= 0 seconds, got %R", timeout);
        return -2;
    }
    if (t * 1000.0 >= 9.2e18) /* inf, or longer than int64 milliseconds: for ever */
        return -1;
    return (long long)ceil(t * 1000.0);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The deadline (ns) of a wait of `ms` from now; 0 for none (ms < 0). */
static long long deadline_of(long long ms) { return ms < 0 ? 0 : now_ns() + ms * 1000000LL; }

/* Milliseconds until `deadline` (0 = none: `cap`), at most `cap`; 0 once it
 * has passed. */
static long long slice_until(long long deadline, long long cap) {
    if (deadline == 0)
        return cap;
    long long left = deadline - now_ns();
    if (left <= 0)
        return 0;
    long long ms = (left + 999999) / 1000000;
    return ms < cap ? ms : cap;
}

/* The Envelope for a received C envelope; NULL with an exception set (the C
 * envelope is left as it is). The tuple is made as tuple.__new__ would. */
static PyObject *make_envelope(const cluster_envelope_t *e) {
    PyObject *msg;
    if (e->kind == 0) {
        msg = PyBytes_FromStringAndSize((const char *)e->data, (Py_ssize_t)e->len);
    } else if (e->kind == 1) {
        msg = PyUnicode_DecodeUTF8((const char *)e->data, (Py_ssize_t)e->len, NULL);
        if (msg == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear(); /* not UTF-8: handed over as bytes */
            msg = PyBytes_FromStringAndSize((const char *)e->data, (Py_ssize_t)e->len);
        }
    } else {
        PyObject *data = PyBytes_FromStringAndSize((const char *)e->data, (Py_ssize_t)e->len);
        if (data == NULL)
            return NULL;
        msg = PyObject_CallFunction(decode_fn, "kO", (unsigned long)e->kind, data);
        Py_DECREF(data);
    }
    if (msg == NULL)
        return NULL;
    PyObject *fields[4] = {PyLong_FromLongLong(e->pid), PyLong_FromLongLong(e->msg_id), msg,
                           PyLong_FromUnsignedLong(e->kind)};
    PyObject *env = NULL;
    if (fields[0] != NULL && fields[1] != NULL && fields[3] != NULL)
        /* As tuple.__new__(Envelope, fields) makes it (Envelope has no
         * __dict__: NamedTuple sets __slots__ = ()), but not yet tracked by
         * the garbage collector; the type's reference is taken here. */
        env = (PyObject *)PyObject_GC_NewVar(PyTupleObject, (PyTypeObject *)envelope_type, 4);
    if (env == NULL) {
        for (int i = 0; i < 4; i++)
            Py_XDECREF(fields[i]);
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        PyTuple_SET_ITEM(env, i, fields[i]);
    /* Made of ints and bytes or str, it can be part of no reference cycle, so
     * it stays untracked and the collector never walks it (CPython does the
     * same for plain tuples, not for tuple subclasses). A JSON value (a dict
     * or a list) could be, so its envelope is tracked. */
    if (!PyBytes_CheckExact(msg) && !PyUnicode_CheckExact(msg))
        PyObject_GC_Track(env);
    return env;
}

/* -- Port ----------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    const cluster_node_t *node;
    PyObject *keep;        /* keeps `node` alive: the wrapper's handle */
    long long first_slice; /* ms: the first slice of a send that waits in slices */
    int virtual_clock; /* a mock server on a virtual clock: receives wait in virtual time */
    unsigned long long slices; /* send slices that ran out, the send waiting on */
    /* Received envelopes not yet made into Envelopes (a conversion failed):
     * held[head..tail), in order, returned before anything else. */
    cluster_envelope_t *held;
    size_t held_cap, head, tail;
    PyObject *again;   /* Envelopes to return again (a pending result), in order */
    PyObject *pending; /* the main thread's last result, until the wrapper has it */
} Port;

static PyTypeObject PortType;

static int on_main_thread(void) { return PyThread_get_thread_ident() == main_thread; }

/* -- sending -------------------------------------------------------------- */

/* A unicast `env` in slices, the first `first` ms long, until `deadline`
 * (ns; 0 = none): the status, or INTERRUPTED with an exception set. */
static int unicast_sliced(Port *p, const cluster_envelope_t *env, long long deadline,
                          long long first, cluster_error_t *err) {
    for (long long slice = first;; slice = SLICE_MS) {
        long long wait = slice_until(deadline, slice);
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = p_cluster_try_send(p->node, env, wait, err);
        if (rc == CLUSTER_E_TIMEOUT && wait == 0) /* the timeout ran out: as cluster_send */
            rc = p_cluster_send(p->node, env, 0, err);
        Py_END_ALLOW_THREADS
        if (rc != CLUSTER_E_TIMEOUT)
            return rc;
        p->slices++;
        if (PyErr_CheckSignals() < 0)
            return INTERRUPTED;
    }
}

/* A broadcast `env` as a unicast to each peer in turn, each in slices, until
 * `deadline`: as a broadcast, a peer whose queue stays full drops it
 * (counted) with no error. The status, or INTERRUPTED. */
static int broadcast_sliced(Port *p, cluster_envelope_t *env, long long deadline,
                            cluster_error_t *err) {
    int64_t stack[64];
    int64_t *ids = stack;
    size_t cap = 64, n = 0;
    int rc;
    while ((rc = p_cluster_peers(p->node, ids, cap, &n, err)) == CLUSTER_E_BUFFER_TOO_SMALL) {
        if (ids != stack)
            PyMem_Free(ids);
        cap = n;
        ids = PyMem_Malloc(cap * sizeof *ids);
        if (ids == NULL) {
            PyErr_NoMemory();
            return INTERRUPTED;
        }
    }
    if (rc == 0 && n == 0) { /* nothing to wait for: what the core says (TooLarge, Closed) */
        Py_BEGIN_ALLOW_THREADS
        rc = p_cluster_send(p->node, env, 0, err);
        Py_END_ALLOW_THREADS
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        env->pid = ids[i];
        int r = unicast_sliced(p, env, deadline, i == 0 ? p->first_slice : SLICE_MS, err);
        if (r != 0 && r != CLUSTER_E_FULL && r != CLUSTER_E_UNKNOWN_PEER) /* a mock server closed */
            rc = r;
    }
    env->pid = CLUSTER_BROADCAST;
    if (ids != stack)
        PyMem_Free(ids);
    return rc;
}

/* Sends envs[0..n) in order, each with a timeout of `ms` (-1 = for ever),
 * stopping at the first error; `*sent` is how many went out. The status, or
 * INTERRUPTED with an exception set. The GIL is released once for a run of
 * envelopes, not once per envelope. */
static int send_envs(Port *p, cluster_envelope_t *envs, size_t n, long long ms, size_t *sent,
                     cluster_error_t *err) {
    /* On the main thread a send that may wait long does so in slices, so
     * that Ctrl-C interrupts it (see the top of this file). */
    int sliced = (ms < 0 || ms > p->first_slice) && on_main_thread();
    long long slice = p->first_slice;
    long long deadline = sliced ? deadline_of(ms) : 0;
    int rc = 0;
    size_t i = 0;
    while (rc == 0 && i < n) {
        if (sliced && envs[i].pid == CLUSTER_BROADCAST) {
            rc = broadcast_sliced(p, &envs[i], deadline, err);
            if (rc == 0) {
                i++;
                deadline = deadline_of(ms);
            }
            continue;
        }
        long long wait = 0;
        Py_BEGIN_ALLOW_THREADS
        for (; i < n; i++) {
            if (!sliced) {
                rc = p_cluster_send(p->node, &envs[i], ms, err);
            } else if (envs[i].pid == CLUSTER_BROADCAST) {
                break;
            } else {
                wait = slice_until(deadline, slice);
                rc = p_cluster_try_send(p->node, &envs[i], wait, err);
                if (rc == CLUSTER_E_TIMEOUT && wait == 0) /* the timeout ran out: as cluster_send */
                    rc = p_cluster_send(p->node, &envs[i], 0, err);
            }
            if (rc != 0)
                break;
            if (sliced) {
                slice = p->first_slice;
                deadline = deadline_of(ms);
            }
        }
        Py_END_ALLOW_THREADS
        if (rc == CLUSTER_E_TIMEOUT && sliced) { /* a slice ran out: envs[i] waits on */
            p->slices++;
            if (PyErr_CheckSignals() < 0)
                rc = INTERRUPTED;
            else
                rc = 0;
            slice = SLICE_MS;
        }
    }
    *sent = i;
    return rc;
}

/* Fills `env` for a send of `msg` (`kind` NULL or None: chosen from its
 * type), keeping what holds the payload in `*hold` (a buffer view to
 * release, with its owner). 0, or -1 with an exception set. */
static int fill_payload(cluster_envelope_t *env, PyObject *msg, PyObject *kind, Py_buffer *hold) {
    memset(hold, 0, sizeof *hold);
    if ((kind == NULL || kind == Py_None) && PyBytes_CheckExact(msg)) {
        env->kind = 0;
        env->data = (const uint8_t *)PyBytes_AS_STRING(msg);
        env->len = (size_t)PyBytes_GET_SIZE(msg);
        Py_INCREF(msg);
        hold->obj = msg; /* released with Py_DECREF, not as a view (buf is NULL) */
        return 0;
    }
    PyObject *encoded =
        PyObject_CallFunctionObjArgs(encode_fn, msg, kind == NULL ? Py_None : kind, NULL);
    if (encoded == NULL)
        return -1;
    int rc = -1;
    if (!PyTuple_Check(encoded) || PyTuple_GET_SIZE(encoded) != 2) {
        PyErr_SetString(PyExc_TypeError, "encode must return (kind, data)");
    } else {
        unsigned long k = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(encoded, 0));
        if (PyErr_Occurred()) {
        } else if (k > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "kind does not fit in 32 bits");
        } else if (PyObject_GetBuffer(PyTuple_GET_ITEM(encoded, 1), hold, PyBUF_SIMPLE) == 0) {
            env->kind = (uint32_t)k;
            env->data = hold->buf;
            env->len = (size_t)hold->len;
            rc = 0;
        }
    }
    Py_DECREF(encoded);
    return rc;
}

static void release_payload(Py_buffer *hold) {
    if (hold->buf != NULL)
        PyBuffer_Release(hold);
    else
        Py_XDECREF(hold->obj);
    hold->obj = NULL;
}

/* Fills `env` from pid, msg, msg_id (NULL: 0) and kind; -1 on an error. */
static int fill_envelope(cluster_envelope_t *env, PyObject *pid, PyObject *msg, PyObject *msg_id,
                         PyObject *kind, Py_ssize_t index, Py_buffer *hold) {
    memset(env, 0, sizeof *env);
    hold->obj = NULL;
    hold->buf = NULL;
    if (arg_int64(pid, "pid", index, &env->pid) < 0 ||
        (msg_id != NULL && arg_int64(msg_id, "msg_id", index, &env->msg_id) < 0))
        return -1;
    if (fill_payload(env, msg, kind, hold) < 0)
        return -1;
    if (env->len == 0)
        env->data = NULL;
    return 0;
}

/* The payload of an envelope-like tuple (pid, msg_id, msg[, kind]) and the
 * kind it is sent with: its own for a bytes-like payload (so a received
 * envelope travels on unchanged), else chosen from the payload's type. */
static PyObject *kind_of(PyObject *env) {
    PyObject *msg = PyTuple_GET_ITEM(env, 2);
    if (PyTuple_GET_SIZE(env) > 3 &&
        (PyBytes_Check(msg) || PyByteArray_Check(msg) || PyMemoryView_Check(msg)))
        return PyTuple_GET_ITEM(env, 3);
    return NULL;
}

/* Sends one envelope and raises what failed; None. */
static PyObject *send_one(Port *p, PyObject *pid, PyObject *msg, PyObject *msg_id,
                          PyObject *timeout, PyObject *kind) {
    long long ms = timeout_ms(timeout);
    cluster_envelope_t env;
    Py_buffer hold;
    if (ms == -2 || fill_envelope(&env, pid, msg, msg_id, kind, -1, &hold) < 0)
        return NULL;
    cluster_error_t err = {0, {0}};
    size_t sent;
    int rc = send_envs(p, &env, 1, ms, &sent, &err);
    release_payload(&hold);
    if (rc == INTERRUPTED)
        return NULL;
    if (rc != 0)
        return raise_status(rc, &err);
    Py_RETURN_NONE;
}

/* Fills `fields` (n of them) from positional `args` and keywords as Python
 * would for def f(names[0], ..., names[n-1]) with at most `npos` positional
 * and `required` required; unset ones are NULL. */
static int parse(const char *fname, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                 const char *const *names, Py_ssize_t n, Py_ssize_t npos, Py_ssize_t required,
                 PyObject **fields) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional arguments (%zd given)",
                     fname, npos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        fields[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t j = 0;
        while (j < n && PyUnicode_CompareWithASCIIString(key, names[j]) != 0)
            j++;
        if (j == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", fname, key);
            return -1;
        }
        if (fields[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[j]);
            return -1;
        }
        fields[j] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < required; i++) {
        if (fields[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

static const char *const send_names[] = {"pid", "msg", "msg_id", "timeout", "kind"};

static PyObject *port_send(PyObject *self, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
    PyObject *f[5];
    if (parse("send", args, nargsf, kwnames, send_names, 5, 4, 2, f) < 0)
        return NULL;
    return send_one((Port *)self, f[0], f[1], f[2], f[3], f[4]);
}

static const char *const put_names[] = {"env", "timeout"};

static PyObject *port_put(PyObject *self, PyObject *const *args, size_t nargsf,
                          PyObject *kwnames) {
    PyObject *f[2];
    if (parse("put", args, nargsf, kwnames, put_names, 2, 2, 1, f) < 0)
        return NULL;
    PyObject *env = PyTuple_Check(f[0]) ? (Py_INCREF(f[0]), f[0]) : PySequence_Tuple(f[0]);
    if (env == NULL)
        return NULL;
    PyObject *result = NULL;
    if (PyTuple_GET_SIZE(env) < 3)
        PyErr_SetString(PyExc_TypeError, "put takes an Envelope or a (pid, msg_id, msg) tuple");
    else
        result = send_one((Port *)self, PyTuple_GET_ITEM(env, 0), PyTuple_GET_ITEM(env, 2),
                          PyTuple_GET_ITEM(env, 1), f[1], kind_of(env));
    Py_DECREF(env);
    return result;
}

/* Sets `sent` on the exception being raised. */
static void tell_sent(size_t sent) {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *n = PyLong_FromSize_t(sent);
    if (n == NULL || PyObject_SetAttrString(exc, "sent", n) < 0)
        PyErr_Clear();
    Py_XDECREF(n);
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *n = PyLong_FromSize_t(sent);
    if (n == NULL || value == NULL || PyObject_SetAttrString(value, "sent", n) < 0)
        PyErr_Clear();
    Py_XDECREF(n);
    PyErr_Restore(type, value, tb);
#endif
}

static const char *const send_many_names[] = {"envelopes", "timeout"};

/* send_many(envelopes, timeout=None) -> count: Node.send_many. */
static PyObject *port_send_many(PyObject *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames) {
    PyObject *f[2];
    if (parse("send_many", args, nargsf, kwnames, send_many_names, 2, 2, 1, f) < 0)
        return NULL;
    long long ms = timeout_ms(f[1]);
    if (ms == -2)
        return NULL;
    /* A list of its own: the caller's may change once the GIL is released. */
    PyObject *items = PySequence_List(f[0]);
    if (items == NULL)
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(items);
    size_t room = count ? (size_t)count : 1;
    cluster_envelope_t *envs = PyMem_Calloc(room, sizeof *envs);
    Py_buffer *holds = PyMem_Calloc(room, sizeof *holds);
    PyObject *result = NULL;
    Py_ssize_t filled = 0;
    if (envs == NULL || holds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; filled < count; filled++) {
        PyObject *item = PyList_GET_ITEM(items, filled);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3 || PyTuple_GET_SIZE(item) > 4) {
            PyErr_Format(PyExc_TypeError,
                         "envelopes[%zd] must be an Envelope or a (pid, msg_id, msg) tuple", filled);
            goto done;
        }
        if (fill_envelope(&envs[filled], PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 2),
                          PyTuple_GET_ITEM(item, 1), kind_of(item), filled, &holds[filled]) < 0)
            goto done;
    }
    cluster_error_t err = {0, {0}};
    size_t sent = 0;
    int rc = send_envs((Port *)self, envs, (size_t)count, ms, &sent, &err);
    if (rc == 0)
        result = PyLong_FromSsize_t(count);
    else if (rc != INTERRUPTED)
        raise_status(rc, &err);
    if (rc != 0)
        tell_sent(sent);
done:
    for (Py_ssize_t i = 0; i < filled; i++)
        release_payload(&holds[i]);
    PyMem_Free(holds);
    PyMem_Free(envs);
    Py_DECREF(items);
    return result;
}

static const char *const try_send_names[] = {"pid", "msg", "msg_id", "kind"};

/* try_send(pid, msg, msg_id=0, kind=None) -> bool: cluster_try_send with no
 * wait; False when a live peer's queue is full (nothing sent, nothing
 * counted). For event loops. */
static PyObject *port_try_send(PyObject *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames) {
    PyObject *f[4];
    if (parse("try_send", args, nargsf, kwnames, try_send_names, 4, 4, 2, f) < 0)
        return NULL;
    cluster_envelope_t env;
    Py_buffer hold;
    if (fill_envelope(&env, f[0], f[1], f[2], f[3], -1, &hold) < 0)
        return NULL;
    cluster_error_t err = {0, {0}};
    int rc = p_cluster_try_send(((Port *)self)->node, &env, 0, &err);
    release_payload(&hold);
    if (rc == CLUSTER_E_TIMEOUT)
        Py_RETURN_FALSE;
    if (rc != 0)
        return raise_status(rc, &err);
    Py_RETURN_TRUE;
}

/* -- receiving ------------------------------------------------------------ */

/* Keeps envs[0..n) (taken from the node, not yet made into Envelopes) in
 * front of `held`; -1 (MemoryError) if there is no room for them. */
static int hold_front(Port *p, const cluster_envelope_t *envs, size_t n) {
    size_t have = p->tail - p->head;
    if (p->head < n) {
        if (p->held_cap < have + n) {
            cluster_envelope_t *held = PyMem_Realloc(p->held, (have + n) * sizeof *held);
            if (held == NULL)
                return -1;
            p->held = held;
            p->held_cap = have + n;
        }
        memmove(p->held + n, p->held + p->head, have * sizeof *p->held);
        p->head = n;
        p->tail = n + have;
    }
    p->head -= n;
    memcpy(p->held + p->head, envs, n * sizeof *envs);
    return 0;
}

/* Envelopes of envs[0..n): one (`list` = 0) or a list. All or nothing: if
 * one fails, none is made and the C envelopes stay as they are. */
static PyObject *convert(const cluster_envelope_t *envs, size_t n, int list) {
    if (!list)
        return make_envelope(envs);
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; out != NULL && i < n; i++) {
        PyObject *env = make_envelope(&envs[i]);
        if (env == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, (Py_ssize_t)i, env);
    }
    return out;
}

/* What a receive returns before it takes anything new: a result the main
 * thread never got, or what a failed conversion left. NULL (no exception
 * set) when there is none. */
static PyObject *take_kept(Port *p, size_t max, int list) {
    if (p->again != NULL && on_main_thread()) {
        Py_ssize_t n = PyList_GET_SIZE(p->again);
        if ((size_t)n > max)
            n = (Py_ssize_t)max;
        PyObject *out = list ? PyList_GetSlice(p->again, 0, n) : PyList_GET_ITEM(p->again, 0);
        if (out == NULL)
            return NULL;
        if (!list)
            Py_INCREF(out);
        if (PyList_SetSlice(p->again, 0, n, NULL) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (PyList_GET_SIZE(p->again) == 0)
            Py_CLEAR(p->again);
        return out;
    }
    if (p->head == p->tail)
        return NULL;
    size_t n = p->tail - p->head;
    if (n > max)
        n = max;
    PyObject *out = convert(p->held + p->head, list ? n : 1, list);
    if (out == NULL)
        return NULL;
    n = list ? n : 1;
    p_cluster_envelopes_free(p->held + p->head, n);
    p->head += n;
    if (p->head == p->tail)
        p->head = p->tail = 0;
    return out;
}

/* Takes up to `max` envelopes from the node into `buf`, waiting up to `ms`
 * (-1 = for ever) for the first, in slices; the count, or -1 with an
 * exception set. */
static Py_ssize_t take(const Port *p, cluster_envelope_t *buf, size_t max, long long ms) {
    cluster_error_t err = {0, {0}};
    size_t n = 1;
    int rc = max == 1 ? p_cluster_recv(p->node, buf, 0, &err)
                      : p_cluster_recv_batch(p->node, buf, max, &n, 0, &err);
    if (rc == CLUSTER_E_TIMEOUT && ms != 0 && p->virtual_clock) {
        /* `ms` is virtual time, which only another thread's advance moves:
         * one wait, which Ctrl-C does not cut short. */
        Py_BEGIN_ALLOW_THREADS
        rc = max == 1 ? p_cluster_recv(p->node, buf, ms, &err)
                      : p_cluster_recv_batch(p->node, buf, max, &n, ms, &err);
        Py_END_ALLOW_THREADS
    }
    /* The clock is read only by a receive that waits. */
    long long deadline = rc == CLUSTER_E_TIMEOUT ? deadline_of(ms) : 0;
    while (rc == CLUSTER_E_TIMEOUT && ms != 0 && !p->virtual_clock) {
        long long slice = slice_until(deadline, SLICE_MS);
        if (slice == 0)
            break;
        Py_BEGIN_ALLOW_THREADS
        rc = max == 1 ? p_cluster_recv(p->node, buf, slice, &err)
                      : p_cluster_recv_batch(p->node, buf, max, &n, slice, &err);
        Py_END_ALLOW_THREADS
        if (rc == CLUSTER_E_TIMEOUT && PyErr_CheckSignals() < 0)
            return -1;
    }
    if (rc != 0)
        return raise_status(rc, &err), -1;
    return (Py_ssize_t)n;
}

/* A receive on the main thread: first puts back a result it never got. */
static int restore_pending(Port *p) {
    if (p->pending == NULL || !on_main_thread())
        return 0;
    PyObject *result = p->pending;
    p->pending = NULL;
    PyObject *items = PyList_Check(result) ? PySequence_List(result) : PyList_New(1);
    if (items != NULL && !PyList_Check(result)) {
        Py_INCREF(result);
        PyList_SET_ITEM(items, 0, result);
    }
    Py_DECREF(result);
    if (items == NULL)
        return -1;
    if (p->again != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(items);
        if (PyList_SetSlice(items, n, n, p->again) < 0) {
            Py_DECREF(items);
            return -1;
        }
    }
    Py_XSETREF(p->again, items);
    return 0;
}

/* A receive of up to `max` envelopes (one, `list` = 0, or a list), waiting
 * up to `timeout` for the first. */
static PyObject *receive(Port *p, size_t max, PyObject *timeout, int list) {
    long long ms = timeout_ms(timeout);
    if (ms == -2 || restore_pending(p) < 0)
        return NULL;
    PyObject *out = take_kept(p, max, list);
    if (out == NULL && !PyErr_Occurred()) {
        cluster_envelope_t one;
        cluster_envelope_t *buf = max == 1 ? &one : PyMem_Malloc(max * sizeof *buf);
        if (buf == NULL)
            return PyErr_NoMemory();
        Py_ssize_t n = take(p, buf, max, ms);
        if (n > 0) {
            out = convert(buf, (size_t)n, list);
            if (out != NULL)
                p_cluster_envelopes_free(buf, (size_t)n);
            else if (hold_front(p, buf, (size_t)n) < 0) /* MemoryError: they are lost */
                p_cluster_envelopes_free(buf, (size_t)n);
        }
        if (buf != &one)
            PyMem_Free(buf);
    }
    if (out != NULL && on_main_thread()) {
        Py_INCREF(out);
        Py_XSETREF(p->pending, out);
    }
    return out;
}

static const char *const recv_names[] = {"timeout"};

static PyObject *port_recv(PyObject *self, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
    PyObject *f[1];
    if (parse("recv", args, nargsf, kwnames, recv_names, 1, 1, 0, f) < 0)
        return NULL;
    return receive((Port *)self, 1, f[0], 0);
}

static const char *const recv_many_names[] = {"max", "timeout"};

static PyObject *port_recv_many(PyObject *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames) {
    PyObject *f[2];
    if (parse("recv_many", args, nargsf, kwnames, recv_many_names, 2, 2, 0, f) < 0)
        return NULL;
    long long max = 1024;
    if (f[0] != NULL) {
        int overflow = 0;
        max = PyLong_AsLongLongAndOverflow(f[0], &overflow);
        if (max == -1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError, "max must be an integer, not %.100s",
                             Py_TYPE(f[0])->tp_name);
            }
            return NULL;
        }
        if (overflow != 0) /* beyond int64: the cap, or below 1 */
            max = overflow > 0 ? MAX_BATCH : 0;
    }
    if (max < 1) {
        PyErr_Format(PyExc_ValueError, "max must be at least 1, got %R", f[0]);
        return NULL;
    }
    return receive((Port *)self, max > MAX_BATCH ? MAX_BATCH : (size_t)max, f[1], 1);
}

static PyObject *port_get_pending(PyObject *self, void *closure) {
    (void)closure;
    PyObject *pending = ((Port *)self)->pending;
    if (pending == NULL)
        pending = Py_None;
    Py_INCREF(pending);
    return pending;
}

/* `port.pending = None`: the main thread holds what its receive returned. A
 * result still pending when the next receive starts is returned again. */
static int port_set_pending(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    if (value != Py_None) {
        PyErr_SetString(PyExc_ValueError, "pending can only be cleared (set to None)");
        return -1;
    }
    if (on_main_thread())
        Py_CLEAR(((Port *)self)->pending);
    return 0;
}

/* Port(node: int address, keep: object, first_slice_ms: int, virtual_clock: bool) */
static PyObject *port_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *addr, *keep, *first, *virtual_clock;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "Port takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Port", 4, 4, &addr, &keep, &first, &virtual_clock))
        return NULL;
    if (p_cluster_send == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cluster._port.init was not called");
        return NULL;
    }
    long long first_slice = PyLong_AsLongLong(first);
    const cluster_node_t *node = PyLong_AsVoidPtr(addr);
    if (PyErr_Occurred())
        return NULL;
    if (node == NULL) {
        PyErr_SetString(PyExc_ValueError, "Port needs a node");
        return NULL;
    }
    Port *p = (Port *)type->tp_alloc(type, 0);
    if (p == NULL)
        return NULL;
    p->node = node;
    Py_INCREF(keep);
    p->keep = keep;
    p->first_slice = first_slice < 1 ? 1 : first_slice;
    p->virtual_clock = PyObject_IsTrue(virtual_clock) == 1;
    return (PyObject *)p;
}

static void port_dealloc(PyObject *self) {
    Port *p = (Port *)self;
    Py_XDECREF(p->pending);
    Py_XDECREF(p->again);
    if (p->head < p->tail)
        p_cluster_envelopes_free(p->held + p->head, p->tail - p->head);
    PyMem_Free(p->held);
    Py_XDECREF(p->keep); /* last: the node may be freed now */
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef port_methods[] = {
    {"send", (PyCFunction)(void (*)(void))port_send, METH_FASTCALL | METH_KEYWORDS,
     "send(pid, msg, msg_id=0, timeout=None, *, kind=None): Node.send"},
    {"put", (PyCFunction)(void (*)(void))port_put, METH_FASTCALL | METH_KEYWORDS,
     "put(env, timeout=None): Outbox.put"},
    {"send_many", (PyCFunction)(void (*)(void))port_send_many, METH_FASTCALL | METH_KEYWORDS,
     "send_many(envelopes, timeout=None) -> count: Node.send_many"},
    {"try_send", (PyCFunction)(void (*)(void))port_try_send, METH_FASTCALL | METH_KEYWORDS,
     "try_send(pid, msg, msg_id=0, kind=None) -> bool: sent, or kept (a live peer is full)"},
    {"recv", (PyCFunction)(void (*)(void))port_recv, METH_FASTCALL | METH_KEYWORDS,
     "recv(timeout=None): Node.recv"},
    {"recv_many", (PyCFunction)(void (*)(void))port_recv_many,
     METH_FASTCALL | METH_KEYWORDS, "recv_many(max=1024, timeout=None): Node.recv_many"},
    {NULL, NULL, 0, NULL},
};

static PyObject *port_get_slices(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(((Port *)self)->slices);
}

static PyGetSetDef port_getset[] = {
    {"slices", port_get_slices, NULL,
     "Send slices that ran out on the main thread, the send waiting on (not drops).", NULL},
    {"pending", port_get_pending, port_set_pending,
     "The main thread's last result until the wrapper clears it (set to None).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PortType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cluster._port.Port",
    .tp_basicsize = sizeof(Port),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Port(node, keep, first_slice_ms, virtual_clock): one node's sends and receives.",
    .tp_new = port_new,
    .tp_dealloc = port_dealloc,
    .tp_methods = port_methods,
    .tp_getset = port_getset,
};

static PyMethodDef methods[] = {
    {"init", (PyCFunction)(void (*)(void))port_init, METH_FASTCALL,
     "init(library_path, Envelope, decode, encode, error_for, OutOfRange, main_thread_ident)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cluster._port",
    "The send and receive paths of cluster's Python wrapper, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__port(void) {
    if (PyType_Ready(&PortType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&PortType);
    if (PyModule_AddObject(m, "Port", (PyObject *)&PortType) < 0) {
        Py_DECREF(&PortType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
