/*
 * cluster._speedups: the hot paths of the Python wrapper in C (optional).
 *
 * The wrapper works without this module (cffi calls libcluster directly).
 * With it, each node gets a `Port`: its `send`, `put`, `recv` and
 * `recv_many` are bound on the node itself (`node.send` is `port.send`), so
 * a plain call costs one C call from Python and no Python frame. It links
 * against nothing: `init` hands it the addresses of libcluster's functions,
 * as cffi loaded them, so both use one library.
 *
 * Read-ahead: `recv` takes what the inbox holds (up to READ_AHEAD envelopes)
 * with one `cluster_recv_batch` and keeps the Envelopes it made in the
 * port, in order, for the next calls on any thread. One thread at a time
 * takes from the node (the port's lock), so order is kept across threads.
 * The core counts a message "delivered" when it is taken; the wrapper's
 * `stats()` subtracts what the port still holds (`buffered`, added to
 * `inbox_depth` instead) and what it threw away at close (`discarded`, added
 * to the core's `discarded`), so users see the counts of plain receives.
 * Once the node is closed, `recv` raises Closed as the core does and the
 * port throws its envelopes away, as the core does with its inbox.
 *
 * Ctrl-C: a blocking receive waits in C in slices of at most SLICE_MS and
 * runs Python's signal handlers between two slices (PyErr_CheckSignals);
 * a slice that took envelopes is never interrupted, and envelopes are in
 * the port before any Python code can run. Python may still raise an
 * interrupt right after `recv` returns (CPython checks for signals after a
 * call into C), before the caller has stored the result. So on the main
 * thread (the only one Python raises signal exceptions in) the port keeps
 * what it returned last in `pending`; the wrapper sets `port.pending =
 * None` once it holds the result (an attribute store, where CPython checks
 * no signal), and the next receive puts a result still pending back in
 * front, so the interrupted one is returned again.
 *
 * Ctrl-C in a send: on the main thread, a send that may wait longer than a
 * slice for room waits in slices instead (see `send_env`), with Python's
 * signal handlers run between two. A slice that runs out makes the core
 * drop and count the message; the port sends it again and notes the drop in
 * `phantom` ({destination: count}, the node's), which `Node.stats` takes
 * off. A broadcast is then sent to each peer in turn (one call would drop
 * the message for a peer that stays full for a slice, with no error).
 *
 * Every call into libcluster that may block releases the GIL; the port's
 * own state is only touched with the GIL held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"

typedef int (*send_fn)(const cluster_node_t *, const cluster_envelope_t *, int64_t,
                       cluster_error_t *);
typedef int (*send_batch_fn)(const cluster_node_t *, const cluster_envelope_t *, size_t,
                             int64_t, size_t *, cluster_error_t *);
typedef int (*recv_batch_fn)(const cluster_node_t *, cluster_envelope_t *, size_t, size_t *,
                             int64_t, cluster_error_t *);
typedef void (*free_fn)(cluster_envelope_t *, size_t);
typedef int (*is_closed_fn)(const cluster_node_t *);
typedef int (*peers_fn)(const cluster_node_t *, int64_t *, size_t, size_t *, cluster_error_t *);

static send_fn p_send;
static send_batch_fn p_send_batch;
static recv_batch_fn p_recv_batch;
static free_fn p_free;
static is_closed_fn p_is_closed;
static peers_fn p_peers;
static PyObject *envelope_type; /* cluster.Envelope, a tuple subclass */
static PyObject *decode_fn;     /* cluster.node.decode(kind, data) -> msg */
static PyObject *encode_fn;     /* cluster.node.encode(msg, kind) -> (kind, data) */
static PyObject *error_for_fn;  /* cluster.errors.error_for(code, message) -> exception */
static PyObject *out_of_range;  /* cluster.errors.OutOfRange */
static unsigned long main_thread; /* ident of the thread Python raises signal exceptions in */

/* Before a receive parks its thread, it tries this many times more, yielding
 * the CPU in between: when a sender is only a little slower than this
 * receiver, the next message usually arrives meanwhile, which saves the
 * futex sleep and wake-up per message (+20-40% messages a second with plain
 * calls between two Python processes). Costs a few microseconds of CPU
 * before an idle wait. */
#define SPINS 20

/* Longest wait in C before Python's signal handlers run (Ctrl-C). */
#define SLICE_MS 50

/* A send returns this (with an exception set) when a signal handler raised. */
#define INTERRUPTED 1001

/* Most envelopes one plain `recv` takes from the node at once. */
#define READ_AHEAD 256

/* Most envelopes one `recv_many` takes (a larger `max` counts as this). */
#define MAX_BATCH 65536

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

/* init(send, send_batch, recv_batch, envelopes_free, is_closed, peers,
 *      Envelope, decode, encode, error_for, OutOfRange, main_thread_ident) */
static PyObject *sp_init(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    if (check_args(n, 12, "init") < 0)
        return NULL;
    main_thread = PyLong_AsUnsignedLong(a[11]);
    p_send = (send_fn)address(a[0]);
    p_send_batch = (send_batch_fn)address(a[1]);
    p_recv_batch = (recv_batch_fn)address(a[2]);
    p_free = (free_fn)address(a[3]);
    p_is_closed = (is_closed_fn)address(a[4]);
    p_peers = (peers_fn)address(a[5]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyType_Check(a[6]) || !PyType_IsSubtype((PyTypeObject *)a[6], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Envelope must be a tuple subclass");
        return NULL;
    }
    if (!PyExceptionClass_Check(a[10])) {
        PyErr_SetString(PyExc_TypeError, "OutOfRange must be an exception class");
        return NULL;
    }
    PyObject **slots[] = {&envelope_type, &decode_fn, &encode_fn, &error_for_fn, &out_of_range};
    for (int i = 0; i < 5; i++) {
        Py_INCREF(a[6 + i]);
        Py_XSETREF(*slots[i], a[6 + i]);
    }
    Py_RETURN_NONE;
}

/* `o` as an int64_t argument: 0, or -1 with OutOfRange (naming the argument
 * `name`, or `envelopes[index].name` for index >= 0, and the range) or a
 * TypeError set. */
static int arg_int64(PyObject *o, const char *name, Py_ssize_t index, int64_t *out) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return -1;
        PyErr_Clear();
        if (index < 0)
            PyErr_Format(PyExc_TypeError, "%s must be an integer, not %.100s", name,
                         Py_TYPE(o)->tp_name);
        else
            PyErr_Format(PyExc_TypeError, "envelopes[%zd].%s must be an integer, not %.100s",
                         index, name, Py_TYPE(o)->tp_name);
        return -1;
    }
    if (overflow != 0) {
        if (index < 0)
            PyErr_Format(out_of_range, "%s must be in -2**63..2**63-1, got %R", name, o);
        else
            PyErr_Format(out_of_range, "envelopes[%zd].%s must be in -2**63..2**63-1, got %R",
                         index, name, o);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
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

/* Milliseconds until `deadline` (ns; 0 = none), capped at SLICE_MS; 0 once
 * it has passed. */
static long long slice_until(long long deadline) {
    if (deadline == 0)
        return SLICE_MS;
    long long left = deadline - now_ns();
    if (left <= 0)
        return 0;
    long long ms = (left + 999999) / 1000000;
    return ms < SLICE_MS ? ms : SLICE_MS;
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
     * it stays untracked and the collector (run every 700 allocations, so
     * every few hundred envelopes) never walks it. CPython does the same for
     * plain tuples, but not for tuple subclasses such as Envelope. A JSON
     * value (a dict or a list) could be, so its envelope is tracked. */
    if (!PyBytes_CheckExact(msg) && !PyUnicode_CheckExact(msg))
        PyObject_GC_Track(env);
    return env;
}

/* -- Port: one node's hot calls and its read-ahead ------------------------- */

typedef struct {
    PyObject_HEAD
    const cluster_node_t *node;
    PyObject *keep;             /* keeps `node` alive: the wrapper's handle */
    PyThread_type_lock taking;  /* held by the one thread taking from the node */
    /* The batch being taken, arr[arr_pos..arr_count) not yet made into
     * Envelopes (only after a failed conversion); lock holder only. */
    cluster_envelope_t *arr;
    size_t arr_cap, arr_pos, arr_count;
    /* Envelopes read ahead, ready[head..tail), in order. */
    PyObject **ready;
    size_t ready_cap, head, tail;
    unsigned long long discarded; /* read ahead, then thrown away at close */
    PyObject *pending; /* the main thread's last result, until the wrapper has it */
    PyObject *phantom; /* {pid: drops the core counted for send slices that ran out} */
    long long first_slice; /* ms: the first slice of a send that waits in slices */
} Port;

static PyTypeObject PortType;

/* -- sends that Ctrl-C can interrupt (see the top of this file) ------------ */

/* Whether a send of `ms` (-1 = for ever) waits in slices: on the main thread
 * (the only one Python raises KeyboardInterrupt in) when it may wait longer
 * than its first slice. */
static int sliced(const Port *p, long long ms) {
    return (ms < 0 || ms > p->first_slice) && PyThread_get_thread_ident() == main_thread;
}

/* Notes a drop the core counted for a slice that ran out; -1 on an error. */
static int note_phantom(Port *p, int64_t pid) {
    PyObject *key = PyLong_FromLongLong(pid);
    if (key == NULL)
        return -1;
    long long n = 0;
    PyObject *old = PyDict_GetItemWithError(p->phantom, key);
    if (old != NULL)
        n = PyLong_AsLongLong(old);
    PyObject *val = PyErr_Occurred() ? NULL : PyLong_FromLongLong(n + 1);
    int rc = val == NULL ? -1 : PyDict_SetItem(p->phantom, key, val);
    Py_XDECREF(val);
    Py_DECREF(key);
    return rc;
}

/* Milliseconds left until `deadline` (ns), at least 0; -1 for none (0). */
static long long ms_left(long long deadline) {
    if (deadline == 0)
        return -1;
    long long left = deadline - now_ns();
    return left <= 0 ? 0 : (left + 999999) / 1000000;
}

/* A unicast `env` with a timeout of `ms` (-1 = for ever) in slices, the
 * first `first` ms long: the status, or INTERRUPTED with an exception set.
 * A Full that came back before its slice ran out is a real drop (a peer
 * that is down drops at once). */
static int unicast_sliced(Port *p, cluster_envelope_t *env, long long ms, long long first,
                          cluster_error_t *err) {
    long long deadline = ms < 0 ? 0 : now_ns() + ms * 1000000LL;
    long long slice = first;
    for (;;) {
        long long left = ms_left(deadline);
        if (left >= 0 && left < slice)
            slice = left;
        long long start = now_ns();
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = p_send(p->node, env, slice, err);
        Py_END_ALLOW_THREADS
        if (rc != CLUSTER_E_FULL)
            return rc;
        long long end = now_ns();
        if (end - start < slice * 1000000LL || (deadline != 0 && end >= deadline))
            return rc;
        if (note_phantom(p, env->pid) < 0 || PyErr_CheckSignals() < 0)
            return INTERRUPTED;
        slice = SLICE_MS;
    }
}

/* A broadcast `env` as a unicast to each peer in turn, each in slices, `ms`
 * being the whole call's: as a broadcast, a peer whose queue stays full
 * drops it (counted) with no error. The status, or INTERRUPTED. */
static int broadcast_sliced(Port *p, cluster_envelope_t *env, long long ms, long long first,
                            cluster_error_t *err) {
    int64_t stack[64];
    int64_t *ids = stack;
    size_t cap = 64, n = 0;
    int rc;
    while ((rc = p_peers(p->node, ids, cap, &n, err)) == CLUSTER_E_BUFFER_TOO_SMALL) {
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
        rc = p_send(p->node, env, 0, err);
        Py_END_ALLOW_THREADS
    }
    long long deadline = ms < 0 ? 0 : now_ns() + ms * 1000000LL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        env->pid = ids[i];
        int r = unicast_sliced(p, env, ms_left(deadline), i == 0 ? first : SLICE_MS, err);
        if (r != 0 && r != CLUSTER_E_FULL && r != CLUSTER_E_UNKNOWN_PEER) /* a mock server closed */
            rc = r;
    }
    env->pid = CLUSTER_BROADCAST;
    if (ids != stack)
        PyMem_Free(ids);
    return rc;
}

/* cluster_send of `env` with a timeout of `ms`: in slices on the main
 * thread when it may wait long. The status, or INTERRUPTED. */
static int send_env(Port *p, cluster_envelope_t *env, long long ms, cluster_error_t *err) {
    if (sliced(p, ms)) {
        if (env->pid == CLUSTER_BROADCAST)
            return broadcast_sliced(p, env, ms, p->first_slice, err);
        return unicast_sliced(p, env, ms, p->first_slice, err);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = p_send(p->node, env, ms, err);
    Py_END_ALLOW_THREADS
    return rc;
}

/* cluster_send_batch of envs[0..count) with a timeout of `ms` per envelope,
 * in slices: each run of unicasts in one call per slice, each broadcast as
 * broadcast_sliced. `*sent` is how many went out. The status, or
 * INTERRUPTED. */
static int batch_sliced(Port *p, cluster_envelope_t *envs, size_t count, long long ms,
                        size_t *sent, cluster_error_t *err) {
    size_t done = 0;
    long long waited = 0; /* ms that envs[done] waited in slices that ran out */
    long long slice = p->first_slice;
    int rc = 0;
    *sent = 0;
    while (done < count) {
        if (envs[done].pid == CLUSTER_BROADCAST) {
            rc = broadcast_sliced(p, &envs[done], ms, slice, err);
            slice = SLICE_MS;
            if (rc != 0)
                break;
            *sent = ++done;
            waited = 0;
            continue;
        }
        size_t run = done + 1;
        while (run < count && envs[run].pid != CLUSTER_BROADCAST)
            run++;
        long long wait = slice;
        if (ms >= 0 && ms - waited < wait)
            wait = ms - waited < 0 ? 0 : ms - waited;
        size_t k = 0;
        long long start = now_ns();
        Py_BEGIN_ALLOW_THREADS
        rc = p_send_batch(p->node, envs + done, run - done, wait, &k, err);
        Py_END_ALLOW_THREADS
        done += k;
        *sent = done;
        slice = SLICE_MS;
        if (rc != CLUSTER_E_FULL) {
            if (rc != 0)
                break;
            waited = 0;
            continue;
        }
        /* The call's first envelope dropped at once: a peer down. A later one
         * waited at most `wait`: counted as if it waited it all. */
        int real = k == 0 && now_ns() - start < wait * 1000000LL;
        waited = k ? wait : waited + wait;
        if (real || (ms >= 0 && waited >= ms))
            break;
        if (note_phantom(p, envs[done].pid) < 0 || PyErr_CheckSignals() < 0)
            return INTERRUPTED;
    }
    return rc;
}

/* Sets `sent` on the exception being raised (a KeyboardInterrupt). */
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

/* Throws the envelopes read ahead away (the node is closed). */
static void discard_ready(Port *p) {
    while (p->head < p->tail) {
        PyObject *env = p->ready[p->head];
        p->ready[p->head++] = NULL;
        p->discarded++;
        Py_DECREF(env);
    }
    p->head = p->tail = 0;
}

/* Up to `max` envelopes read ahead: one (`list` = 0) or a list. Raises
 * Closed, as the core would, once the node is closed. */
static PyObject *take_ready(Port *p, size_t max, int list) {
    if (p_is_closed(p->node) == 1) {
        discard_ready(p);
        return raise_status(CLUSTER_E_CLOSED, NULL);
    }
    PyObject *out;
    if (!list) {
        out = p->ready[p->head];
        p->ready[p->head++] = NULL;
    } else {
        /* PyList_New may collect garbage, and so run Python and let
         * another thread take envelopes: count again once it returns. */
        size_t n;
        for (;;) {
            n = p->tail - p->head;
            if (n > max)
                n = max;
            out = PyList_New((Py_ssize_t)n);
            if (out == NULL)
                return NULL;
            if (p->tail - p->head >= n)
                break;
            Py_DECREF(out);
        }
        for (size_t i = 0; i < n; i++) {
            PyList_SET_ITEM(out, (Py_ssize_t)i, p->ready[p->head]);
            p->ready[p->head++] = NULL;
        }
    }
    if (p->head == p->tail)
        p->head = p->tail = 0;
    return out;
}

/* Puts `result` (an Envelope or a list of them, a reference the caller
 * gives away) back in front of `ready`. */
static int unshift(Port *p, PyObject *result) {
    PyObject **items = &result;
    size_t k = 1;
    if (PyList_Check(result)) {
        items = ((PyListObject *)result)->ob_item;
        k = (size_t)PyList_GET_SIZE(result);
    }
    if (p->head < k) { /* make room in front */
        size_t n = p->tail - p->head;
        if (p->ready_cap < n + k) {
            PyObject **ready = PyMem_Realloc(p->ready, (n + k) * sizeof *ready);
            if (ready == NULL) {
                Py_DECREF(result);
                return PyErr_NoMemory(), -1;
            }
            p->ready = ready;
            p->ready_cap = n + k;
        }
        memmove(p->ready + k, p->ready + p->head, n * sizeof *p->ready);
        p->head = k;
        p->tail = k + n;
    }
    p->head -= k;
    for (size_t i = 0; i < k; i++) {
        Py_INCREF(items[i]);
        p->ready[p->head + i] = items[i];
    }
    Py_DECREF(result);
    return 0;
}

/* Before a receive: puts back a result the main thread never got. */
static int restore_pending(Port *p) {
    if (p->pending == NULL || PyThread_get_thread_ident() != main_thread)
        return 0;
    PyObject *result = p->pending;
    p->pending = NULL;
    return unshift(p, result);
}

/* After a receive: keeps the main thread's result until the wrapper has it. */
static PyObject *keep_pending(Port *p, PyObject *result) {
    if (result != NULL && PyThread_get_thread_ident() == main_thread) {
        Py_INCREF(result);
        Py_XSETREF(p->pending, result);
    }
    return result;
}

/* Room for a batch of `cap` (the lock holder, with `ready` empty). */
static int reserve(Port *p, size_t cap) {
    if (p->arr_cap < cap) {
        cluster_envelope_t *arr = PyMem_Realloc(p->arr, cap * sizeof *arr);
        if (arr == NULL)
            return PyErr_NoMemory(), -1;
        p->arr = arr;
        p->arr_cap = cap;
    }
    if (p->ready_cap < cap) {
        PyObject **ready = PyMem_Realloc(p->ready, cap * sizeof *ready);
        if (ready == NULL)
            return PyErr_NoMemory(), -1;
        p->ready = ready;
        p->ready_cap = cap;
    }
    return 0;
}

/* Makes Envelopes of the batch in `arr`, in order, into `ready` (empty),
 * freeing each C envelope once its Envelope exists. On an error the rest
 * stays in `arr` for the next call. */
static int convert(Port *p) {
    size_t i = p->arr_pos;
    for (; i < p->arr_count; i++) {
        PyObject *env = make_envelope(&p->arr[i]);
        if (env == NULL)
            break;
        /* make_envelope may run Python (a JSON decoder, the collector),
         * and meanwhile another thread may put a pending result back in
         * front (unshift) or take some: `ready` is looked at again only
         * now, and grown if that filled it. */
        if (p->tail == p->ready_cap) {
            size_t cap = 2 * p->ready_cap + 1;
            PyObject **ready = PyMem_Realloc(p->ready, cap * sizeof *ready);
            if (ready == NULL) {
                Py_DECREF(env);
                PyErr_NoMemory();
                break;
            }
            p->ready = ready;
            p->ready_cap = cap;
        }
        p->ready[p->tail++] = env;
    }
    if (i > p->arr_pos)
        p_free(p->arr + p->arr_pos, i - p->arr_pos);
    p->arr_pos = i;
    if (i < p->arr_count)
        return -1;
    p->arr_pos = p->arr_count = 0;
    return 0;
}

/* Waits for the lock until `deadline` (ns; 0 = for ever; `ms` 0 = not at
 * all) in slices, running signal handlers in between: 1 taken, 0 timed
 * out, -1 an exception (KeyboardInterrupt). */
static int lock_taking(Port *p, long long ms, long long deadline) {
    if (PyThread_acquire_lock(p->taking, NOWAIT_LOCK))
        return 1;
    while (ms != 0) {
        long long slice = slice_until(deadline);
        if (slice == 0)
            return 0;
        PyLockStatus got;
        Py_BEGIN_ALLOW_THREADS
        got = PyThread_acquire_lock_timed(p->taking, slice * 1000, 0);
        Py_END_ALLOW_THREADS
        if (got == PY_LOCK_ACQUIRED)
            return 1;
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
    return 0;
}

/* Takes up to `cap` envelopes from the node into `ready` (empty), waiting
 * up to `ms` (-1 = for ever) for the first: holding the lock, so one
 * thread at a time; 0 once `ready` holds something, -1 with an exception. */
static int fill(Port *p, size_t cap, long long ms) {
    long long deadline = ms > 0 ? now_ns() + ms * 1000000LL : 0;
    int locked = lock_taking(p, ms, deadline);
    if (locked <= 0)
        return locked == 0 ? (raise_status(CLUSTER_E_TIMEOUT, NULL), -1) : -1;
    int ok = -1;
    if (p->head < p->tail) { /* the previous holder filled it */
        ok = 0;
        goto done;
    }
    if (reserve(p, cap) < 0)
        goto done;
    if (p->arr_pos == p->arr_count) {
        cluster_error_t err;
        err.code = 0;
        err.message[0] = '\0';
        size_t n = 0;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = p_recv_batch(p->node, p->arr, cap, &n, 0, &err);
        for (int i = 0; rc == CLUSTER_E_TIMEOUT && ms != 0 && i < SPINS; i++) {
            sched_yield();
            rc = p_recv_batch(p->node, p->arr, cap, &n, 0, &err);
        }
        Py_END_ALLOW_THREADS
        while (rc == CLUSTER_E_TIMEOUT && ms != 0) {
            long long slice = slice_until(deadline);
            if (slice == 0)
                break;
            Py_BEGIN_ALLOW_THREADS
            rc = p_recv_batch(p->node, p->arr, cap, &n, slice, &err);
            Py_END_ALLOW_THREADS
            if (rc == CLUSTER_E_TIMEOUT && PyErr_CheckSignals() < 0)
                goto done;
        }
        if (rc != 0) {
            raise_status(rc, &err);
            goto done;
        }
        p->arr_pos = 0;
        p->arr_count = n;
    }
    /* On an error (a KeyboardInterrupt inside decode, say) what was
     * converted stays in `ready` and the rest in `arr`, for the next call. */
    ok = convert(p);
done:
    PyThread_release_lock(p->taking);
    return ok;
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

/* send_many(items: list, timeout_ms, sent: size_t*, err) -> status, or
 * NEEDS_PYTHON (nothing sent) if an item is not (pid, msg_id, bytes[, kind]);
 * a KeyboardInterrupt gets `sent` too. */
static PyObject *port_send_many(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    Port *p = (Port *)self;
    if (check_args(n, 4, "send_many") < 0)
        return NULL;
    long long ms = PyLong_AsLongLong(a[1]);
    size_t *sent = address(a[2]);
    cluster_error_t *err = address(a[3]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(a[0])) {
        PyErr_SetString(PyExc_TypeError, "items must be a list");
        return NULL;
    }
    PyObject *items = a[0];
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
        int64_t pid, msg_id;
        if (arg_int64(PyTuple_GET_ITEM(item, 0), "pid", i, &pid) < 0 ||
            arg_int64(PyTuple_GET_ITEM(item, 1), "msg_id", i, &msg_id) < 0)
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
    if (sliced(p, ms)) {
        rc = batch_sliced(p, envs, (size_t)count, ms, sent, err);
        if (rc == INTERRUPTED) {
            tell_sent(*sent);
            goto done;
        }
    } else {
        Py_BEGIN_ALLOW_THREADS
        rc = p_send_batch(p->node, envs, (size_t)count, ms, sent, err);
        Py_END_ALLOW_THREADS
    }
    result = PyLong_FromLong(rc);
done:
    for (Py_ssize_t j = 0; j < count; j++)
        Py_XDECREF(keep[j]);
    PyMem_Free(keep);
    PyMem_Free(envs);
    return result;
}

/* Sends `msg` (any payload; `kind` NULL or None: chosen from its type). */
static PyObject *send_one(Port *p, PyObject *pid, PyObject *msg, PyObject *msg_id,
                          PyObject *timeout, PyObject *kind) {
    cluster_envelope_t env = {0};
    if (arg_int64(pid, "pid", -1, &env.pid) < 0 ||
        (msg_id != NULL && arg_int64(msg_id, "msg_id", -1, &env.msg_id) < 0))
        return NULL;
    long long ms = timeout_ms(timeout);
    if (ms == -2)
        return NULL;
    PyObject *encoded = NULL;
    Py_buffer view = {0};
    if ((kind == NULL || kind == Py_None) && PyBytes_CheckExact(msg)) {
        env.data = (const uint8_t *)PyBytes_AS_STRING(msg);
        env.len = (size_t)PyBytes_GET_SIZE(msg);
    } else {
        encoded = PyObject_CallFunctionObjArgs(encode_fn, msg, kind == NULL ? Py_None : kind, NULL);
        if (encoded == NULL)
            return NULL;
        if (!PyTuple_Check(encoded) || PyTuple_GET_SIZE(encoded) != 2) {
            PyErr_SetString(PyExc_TypeError, "encode must return (kind, data)");
            goto fail;
        }
        unsigned long k = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(encoded, 0));
        if (PyErr_Occurred())
            goto fail;
        if (k > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "kind does not fit in 32 bits");
            goto fail;
        }
        env.kind = (uint32_t)k;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(encoded, 1), &view, PyBUF_SIMPLE) < 0)
            goto fail;
        env.data = view.buf;
        env.len = (size_t)view.len;
    }
    if (env.len == 0)
        env.data = NULL;
    cluster_error_t err;
    err.code = 0;
    err.message[0] = '\0';
    /* The payload is held (msg, or the buffer view) while the GIL is released. */
    int rc = send_env(p, &env, ms, &err);
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    Py_XDECREF(encoded);
    if (rc == INTERRUPTED)
        return NULL;
    if (rc != 0)
        return raise_status(rc, &err);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(encoded);
    return NULL;
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
    if (PyTuple_GET_SIZE(env) < 3) {
        PyErr_SetString(PyExc_TypeError, "put takes an Envelope or a (pid, msg_id, msg) tuple");
    } else {
        PyObject *msg = PyTuple_GET_ITEM(env, 2);
        PyObject *kind = NULL; /* the envelope's own kind counts for a bytes-like msg */
        if (PyTuple_GET_SIZE(env) > 3 &&
            (PyBytes_Check(msg) || PyByteArray_Check(msg) || PyMemoryView_Check(msg)))
            kind = PyTuple_GET_ITEM(env, 3);
        result = send_one((Port *)self, PyTuple_GET_ITEM(env, 0), msg, PyTuple_GET_ITEM(env, 1),
                          f[1], kind);
    }
    Py_DECREF(env);
    return result;
}

static const char *const recv_names[] = {"timeout"};

static PyObject *port_recv(PyObject *self, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
    Port *p = (Port *)self;
    PyObject *f[1];
    if (parse("recv", args, nargsf, kwnames, recv_names, 1, 1, 0, f) < 0)
        return NULL;
    long long ms = timeout_ms(f[0]);
    if (ms == -2 || restore_pending(p) < 0)
        return NULL;
    if (p->head == p->tail && fill(p, READ_AHEAD, ms) < 0)
        return NULL;
    return keep_pending(p, take_ready(p, 1, 0));
}

static const char *const recv_many_names[] = {"max", "timeout"};

static PyObject *port_recv_many(PyObject *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames) {
    Port *p = (Port *)self;
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
    if (max > MAX_BATCH)
        max = MAX_BATCH;
    long long ms = timeout_ms(f[1]);
    if (ms == -2 || restore_pending(p) < 0)
        return NULL;
    if (p->head == p->tail && fill(p, (size_t)max, ms) < 0)
        return NULL;
    return keep_pending(p, take_ready(p, (size_t)max, 1));
}

static PyObject *port_discard_if_closed(PyObject *self, PyObject *unused) {
    (void)unused;
    Port *p = (Port *)self;
    if (p_is_closed(p->node) == 1)
        discard_ready(p);
    Py_RETURN_NONE;
}

static PyObject *port_get_buffered(PyObject *self, void *closure) {
    (void)closure;
    Port *p = (Port *)self;
    return PyLong_FromSize_t(p->tail - p->head + (p->arr_count - p->arr_pos));
}

static PyObject *port_get_pending(PyObject *self, void *closure) {
    (void)closure;
    PyObject *pending = ((Port *)self)->pending;
    if (pending == NULL)
        pending = Py_None;
    Py_INCREF(pending);
    return pending;
}

/* `port.pending = None`: the main thread holds what its receive returned. */
static int port_set_pending(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    if (value != Py_None) {
        PyErr_SetString(PyExc_ValueError, "pending can only be cleared (set to None)");
        return -1;
    }
    Port *p = (Port *)self;
    if (PyThread_get_thread_ident() == main_thread)
        Py_CLEAR(p->pending);
    return 0;
}

static PyObject *port_get_discarded(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(((Port *)self)->discarded);
}

/* Port(node: int address, keep: object, phantom: dict, first_slice_ms: int) */
static PyObject *port_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *addr, *keep, *phantom, *first;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "Port takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Port", 4, 4, &addr, &keep, &phantom, &first))
        return NULL;
    if (!PyDict_Check(phantom)) {
        PyErr_SetString(PyExc_TypeError, "Port's phantom must be a dict");
        return NULL;
    }
    long long first_slice = PyLong_AsLongLong(first);
    if (first_slice == -1 && PyErr_Occurred())
        return NULL;
    const cluster_node_t *node = address(addr);
    if (node == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "Port needs a node");
        return NULL;
    }
    Port *p = (Port *)type->tp_alloc(type, 0);
    if (p == NULL)
        return NULL;
    p->taking = PyThread_allocate_lock();
    if (p->taking == NULL) {
        Py_DECREF(p);
        return PyErr_NoMemory();
    }
    p->node = node;
    Py_INCREF(keep);
    p->keep = keep;
    Py_INCREF(phantom);
    p->phantom = phantom;
    p->first_slice = first_slice < 1 ? 1 : first_slice;
    return (PyObject *)p;
}

static void port_dealloc(PyObject *self) {
    Port *p = (Port *)self;
    Py_XDECREF(p->pending);
    Py_XDECREF(p->phantom);
    for (size_t i = p->head; i < p->tail; i++)
        Py_DECREF(p->ready[i]);
    if (p->arr_pos < p->arr_count)
        p_free(p->arr + p->arr_pos, p->arr_count - p->arr_pos);
    PyMem_Free(p->ready);
    PyMem_Free(p->arr);
    if (p->taking != NULL)
        PyThread_free_lock(p->taking);
    Py_XDECREF(p->keep); /* last: the node may be freed now */
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef port_methods[] = {
    {"send", (PyCFunction)(void (*)(void))port_send, METH_FASTCALL | METH_KEYWORDS,
     "send(pid, msg, msg_id=0, timeout=None, *, kind=None): Node.send"},
    {"put", (PyCFunction)(void (*)(void))port_put, METH_FASTCALL | METH_KEYWORDS,
     "put(env, timeout=None): Outbox.put"},
    {"recv", (PyCFunction)(void (*)(void))port_recv, METH_FASTCALL | METH_KEYWORDS,
     "recv(timeout=None): Node.recv"},
    {"send_many", (PyCFunction)(void (*)(void))port_send_many, METH_FASTCALL,
     "send_many(items, timeout_ms, sent, err) -> status: Node.send_many's C path"},
    {"recv_many", (PyCFunction)(void (*)(void))port_recv_many, METH_FASTCALL | METH_KEYWORDS,
     "recv_many(max=1024, timeout=None): Node.recv_many"},
    {"discard_if_closed", port_discard_if_closed, METH_NOARGS,
     "Throws the envelopes read ahead away if the node is closed (counted in discarded)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef port_getset[] = {
    {"buffered", port_get_buffered, NULL, "Envelopes read ahead, not yet returned.", NULL},
    {"discarded", port_get_discarded, NULL, "Envelopes read ahead, then thrown away at close.",
     NULL},
    {"pending", port_get_pending, port_set_pending,
     "The main thread's last result until the wrapper clears it (set to None).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PortType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cluster._speedups.Port",
    .tp_basicsize = sizeof(Port),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Port(node, keep, phantom, first_slice_ms): one node's hot calls in C, with "
              "read-ahead.",
    .tp_new = port_new,
    .tp_dealloc = port_dealloc,
    .tp_methods = port_methods,
    .tp_getset = port_getset,
};

static PyMethodDef methods[] = {
    {"init", (PyCFunction)(void (*)(void))sp_init, METH_FASTCALL,
     "init(send, send_batch, recv_batch, envelopes_free, is_closed, peers, Envelope, decode, "
     "encode, error_for, OutOfRange, main_thread_ident)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cluster._speedups",
    "The hot paths of cluster's Python wrapper in C (optional).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    if (PyType_Ready(&PortType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&PortType);
    if (PyModule_AddObject(m, "Port", (PyObject *)&PortType) < 0 ||
        PyModule_AddIntConstant(m, "NEEDS_PYTHON", NEEDS_PYTHON) < 0 ||
        PyModule_AddIntConstant(m, "READ_AHEAD", READ_AHEAD) < 0) {
        Py_DECREF(&PortType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
