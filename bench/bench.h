/* The benchmark's shared declarations: one node interface over four ways of
 * moving messages (libcluster's C ABI one message per call, libcluster's
 * batch calls, libzmq one message per call, plain TCP with length-prefixed
 * frames), the child roles, the child-process plumbing, and small helpers. */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The columns of the table, in their order. */
typedef enum {
    IMPL_CLUSTER = 0, /* cluster_send / cluster_recv + cluster_envelope_free, one message per call */
    IMPL_ZMQ = 1,     /* zmq_send / zmq_msg_recv, one message per call, blocking */
    IMPL_BATCH = 2,   /* cluster_send_batch / cluster_recv_batch + cluster_envelopes_free, up to 256 */
    IMPL_TCP = 3,     /* plain sockets, user-space buffered frames */
    IMPL_COUNT = 4
} impl_t;

/* Most nodes in one workload of the main table. */
#define MAX_NODES 8
/* Most messages one node_recv call returns (batched and TCP; the per-call
 * columns return one). */
#define RECV_BATCH 256
/* Most envelopes one cluster_send_batch call takes. */
#define SEND_BATCH 256

/* node_open flags. */
#define NODE_PAIR 1 /* two nodes, one bidirectional socket (libzmq PAIR) */

/* A received message; valid until the next node_recv on the same node. */
typedef struct {
    const uint8_t *data;
    size_t len;
} msg_t;

typedef struct node node_t;

/* Opens node `me` of `n` (ports[i] is node i's loopback port) and returns
 * once its connections to every other node are up (libzmq: once set up;
 * it connects in the background). Exits the process on error. */
node_t *node_open(impl_t impl, int me, int n, const int *ports, int flags);
/* A buffer of `len` bytes for the caller to fill and pass to node_send.
 * Per-call columns: one scratch buffer, reused (they copy on send). Batched:
 * the next free slot of the pending batch (the batch is sent first if the
 * slots are used up), so buffered messages do not overwrite each other. */
void *node_msg(node_t *nd, size_t len);
/* Sends to node `peer` (or every other node if peer < 0); blocks while the
 * transport pushes back, never drops. Batched and TCP buffer the message:
 * `buf` (batched: a node_msg buffer, or any buffer that stays valid until
 * node_flush) is sent when the buffer fills or at node_flush. Exits on error. */
void node_send(node_t *nd, int peer, const void *buf, size_t len);
/* Offers a message to node `peer` without waiting: 1 accepted, 0 dropped.
 * Not for the batched column. */
int node_try_send(node_t *nd, int peer, const void *buf, size_t len);
/* Sends what node_send buffered (batched and TCP; others: no-op). Callers
 * flush before any blocking wait on the same thread and at the end. */
void node_flush(node_t *nd);
/* Waits for at least one message; stores up to `cap` in out[] (per-call
 * columns: exactly one). Thread-safe against node_send from another
 * thread, not against itself. */
size_t node_recv(node_t *nd, msg_t *out, size_t cap);
/* Closes the node (flushing what is queued) and frees it. */
void node_close(node_t *nd);

/* Whether this is the secure table (BENCH_SECURE=1, set by the driver's
 * --secure): cluster with a Secret, libzmq with CURVE, and the tcp column
 * replaced by cluster per call without a secret. */
int bench_secure(void);

/* Names of the columns: for argv (impl_names) and the table (impl_titles). */
extern const char *const impl_names[IMPL_COUNT];
extern const char *const impl_titles[IMPL_COUNT];
int impl_parse(const char *s);

/* Runs one child role of the main table: argv = role impl me n ports size count. */
int child_main(int argc, char **argv);
/* Runs the driver: spawns the children, prints the tables. */
int driver_main(int argc, char **argv);

/* ---------- child processes (proc.c) ---------- */

/* A child process and the pipes of its line protocol with the driver. */
typedef struct {
    pid_t pid;
    int to, from;
    char buf[1024];
    size_t len;
} child_t;

/* Longest wait for one line from a child. */
#define LINE_TIMEOUT_NS 60000000000ull

/* Resolves this program's path (once, before spawning). */
void proc_init(void);
/* `n` ports free right now on 127.0.0.1 (the kernel picks them). */
void free_ports(int n, int *ports);
/* Runs this program with argv (argv[0] ignored) as a child; the child dies
 * with the driver. */
void spawn(child_t *ch, char *const argv[]);
/* The child's next line (without newline) within timeout_ns; -1 on
 * timeout or exit. */
int child_line(child_t *ch, char *line, size_t cap, uint64_t timeout_ns);
/* Waits until one of chs[0..n] (n <= 256) has a whole line buffered and
 * returns its index; -1 on timeout or when one exits without a line. */
int child_wait_any(child_t *const *chs, int n, uint64_t timeout_ns);
void child_say(child_t *ch, const char *s);
/* Reads a "result ..." line into v[]; returns how many numbers, -1 if the
 * child sent something else (printed) or nothing in time. */
int child_result(child_t *ch, double *v, int max, uint64_t timeout_ns);
/* Reads one line and checks it is `word`; 0 or -1 (printed). */
int child_expect(child_t *ch, const char *word, uint64_t timeout_ns);
/* One line from each of ch[0..n], in the order they come, each within
 * `timeout_ns` of the previous: `word` (if not NULL), or a result of
 * `nvals` numbers into v[i * stride ...]. Stops at the first failure (a
 * failing node stops reading, which may block the others' senders for
 * good, so no child is waited on while another has failed). 0 or -1. */
int child_collect(child_t *ch, int n, const char *word, double *v, int stride, int nvals, uint64_t timeout_ns);
/* Ends the children: after a failure at once (SIGKILL), else a bounded
 * wait for them to exit, then SIGKILL for the ones that hang. */
void reap(child_t *chs, int n, int failed);

/* ---------- cost as the cluster grows (grow.c) ---------- */

/* The child role: argv = "grow" first k n ports size count. */
int grow_child(int argc, char **argv);
/* The table: `spec` lists the sizes, e.g. "2,5,16,32,64,64/8" (N/P: N nodes
 * in P processes; P defaults to N); rows whose name ("grow: N nodes") does
 * not contain `only` (if not NULL) are skipped. */
void grow_table(const char *spec, double scale, int runs, const char *only);

/* ---------- helpers (main.c) ---------- */

uint64_t now_ns(void);
/* A field of /proc/self/status in KiB (e.g. "VmRSS:", "VmHWM:"). */
long status_kib(const char *field);
/* Threads of this process (entries of /proc/self/task). */
int task_count(void);
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void put_u64(uint8_t *p, uint64_t v);
uint64_t get_u64(const uint8_t *p);
/* Median, and half the min-max range relative to it, of the finite v[0..n]
 * (NAN if none). */
typedef struct {
    double med, spread, max;
    int n;
} summary_t;
summary_t summarize(const double *v, int n);
/* Formats a number as 1.23M / 45.6k / 789 / 1.23. */
void fmt_num(char *out, size_t cap, double v);
/* Characters (not bytes) in a UTF-8 string, for column alignment. */
int utf8_width(const char *s);

#endif
