"""The C ABI of ``include/cluster.h`` as cffi sees it, and the loaded library.

cffi's ABI mode: nothing is compiled at install time; ``libcluster.so`` is
opened from this package's directory (where the install puts it). Every
foreign call releases the GIL while it runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import cffi  # type: ignore[import-untyped]

# Mirrors include/cluster.h (tests/test_abi.py checks every declaration
# against the header). `data` is declared `const char *` rather than
# `const uint8_t *` (same layout) so that cffi hands it back as bytes.
CDEF = """
typedef struct cluster_node_t cluster_node_t;
typedef struct cluster_mock_t cluster_mock_t;
typedef struct cluster_error_t { int code; char message[256]; } cluster_error_t;
typedef struct cluster_envelope_t {
    int64_t pid; int64_t msg_id; uint32_t kind;
    const char *data; size_t len; const void *_owner;
} cluster_envelope_t;

const char *cluster_strerror(int code);
const char *cluster_version(void);

int cluster_new(int64_t id, const char *config, cluster_node_t **out, cluster_error_t *err);
int cluster_send(const cluster_node_t *node, const cluster_envelope_t *env,
                 int64_t timeout_ms, cluster_error_t *err);
int cluster_try_send(const cluster_node_t *node, const cluster_envelope_t *env,
                     int64_t timeout_ms, cluster_error_t *err);
int cluster_send_batch(const cluster_node_t *node, const cluster_envelope_t *envs, size_t n,
                       int64_t timeout_ms, size_t *sent, cluster_error_t *err);
int cluster_recv(const cluster_node_t *node, cluster_envelope_t *out, int64_t timeout_ms,
                 cluster_error_t *err);
int cluster_recv_batch(const cluster_node_t *node, cluster_envelope_t *out, size_t cap,
                       size_t *n, int64_t timeout_ms, cluster_error_t *err);
int cluster_recv_fd(const cluster_node_t *node, int *fd, cluster_error_t *err);
void cluster_envelope_free(cluster_envelope_t *env);
void cluster_envelopes_free(cluster_envelope_t *envs, size_t n);
int cluster_close(const cluster_node_t *node, cluster_error_t *err);
void cluster_free(cluster_node_t *node);
int cluster_pid(const cluster_node_t *node, int64_t *out, cluster_error_t *err);
int cluster_peers(const cluster_node_t *node, int64_t *out, size_t cap, size_t *len,
                  cluster_error_t *err);
int cluster_is_closed(const cluster_node_t *node);
int cluster_stats(const cluster_node_t *node, char **out, cluster_error_t *err);
void cluster_string_free(char *s);

int cluster_fault_drop(const cluster_node_t *node, double p, cluster_error_t *err);
int cluster_fault_delay(const cluster_node_t *node, int64_t max_ms, cluster_error_t *err);
int cluster_fault_duplicate(const cluster_node_t *node, double p, cluster_error_t *err);
int cluster_fault_cut(const cluster_node_t *node, const int64_t *peers, size_t n,
                      int direction, cluster_error_t *err);
int cluster_fault_heal(const cluster_node_t *node, cluster_error_t *err);
int cluster_fault_seed(const cluster_node_t *node, uint64_t seed, cluster_error_t *err);

int cluster_mock_new(const char *config, uint64_t seed, cluster_mock_t **out,
                     cluster_error_t *err);
int cluster_mock_add_server(const cluster_mock_t *mock, int64_t id, cluster_node_t **out,
                            cluster_error_t *err);
int cluster_mock_servers(const cluster_mock_t *mock, int64_t *out, size_t cap, size_t *len,
                         cluster_error_t *err);
int cluster_mock_partition(const cluster_mock_t *mock, const int64_t *ids,
                           const size_t *group_lens, size_t n_groups, cluster_error_t *err);
int cluster_mock_heal(const cluster_mock_t *mock, cluster_error_t *err);
int cluster_mock_hold(const cluster_mock_t *mock, int64_t from, int64_t to,
                      cluster_error_t *err);
int cluster_mock_release(const cluster_mock_t *mock, int64_t from, int64_t to, int shuffle,
                         cluster_error_t *err);
int cluster_mock_clock(const cluster_mock_t *mock, int clock, cluster_error_t *err);
int cluster_mock_advance(const cluster_mock_t *mock, int64_t ms, size_t *delivered,
                         cluster_error_t *err);
int cluster_mock_run_until_idle(const cluster_mock_t *mock, size_t *delivered,
                                cluster_error_t *err);
int cluster_mock_now(const cluster_mock_t *mock, int64_t *ms, cluster_error_t *err);
int cluster_mock_trace(const cluster_mock_t *mock, int enable, cluster_error_t *err);
int cluster_mock_trace_take(const cluster_mock_t *mock, char **out, cluster_error_t *err);
int cluster_mock_close(const cluster_mock_t *mock, cluster_error_t *err);
void cluster_mock_free(cluster_mock_t *mock);
"""

LIBRARY_NAME = "libcluster.so"


def _find_library() -> str:
    """Where libcluster.so is: $CLUSTER_LIBRARY if set, else inside this
    package (the install puts it there), else the ``target/release`` of the
    checkout this package sits in (running from the source tree)."""
    override = os.environ.get("CLUSTER_LIBRARY")
    if override:
        return override
    here = Path(__file__).resolve().parent
    candidates = [here / LIBRARY_NAME, here.parents[2] / "target" / "release" / LIBRARY_NAME]
    for path in candidates:
        if path.is_file():
            return str(path)
    raise ImportError(
        f"cluster: {LIBRARY_NAME} not found in {here}; install the package with "
        "`pip install ./bindings/python` from the repository root, which builds it"
    )


ffi = cffi.FFI()
ffi.cdef(CDEF)
library_path = _find_library()
"""The libcluster.so this package uses (cffi and `cluster._port` alike)."""
lib = ffi.dlopen(library_path)
