/* The benchmark's shared declarations: one node interface over three
 * transports (libcluster's C ABI, libzmq, plain TCP with length-prefixed
 * frames), the child roles, and small helpers. */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

/* The transports compared. */
typedef enum { IMPL_CLUSTER = 0, IMPL_ZMQ = 1, IMPL_TCP = 2, IMPL_COUNT = 3 } impl_t;

/* Most nodes in one workload. */
#define MAX_NODES 8
/* Most messages one node_recv call returns. */
#define RECV_BATCH 256

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
/* Sends to node `peer` (or every other node if peer < 0); blocks while the
 * transport pushes back, never drops. Exits on error. */
void node_send(node_t *nd, int peer, const void *buf, size_t len);
/* Offers a message to node `peer` without waiting: 1 accepted, 0 dropped. */
int node_try_send(node_t *nd, int peer, const void *buf, size_t len);
/* Pushes out what node_send buffered (plain TCP only; others: no-op). */
void node_flush(node_t *nd);
/* Waits for at least one message; stores up to `cap` in out[]. Thread-safe
 * against node_send from another thread, not against itself. */
size_t node_recv(node_t *nd, msg_t *out, size_t cap);
/* Closes the node (flushing what is queued) and frees it. */
void node_close(node_t *nd);

/* Names of the transports, for argv and the table. */
extern const char *const impl_names[IMPL_COUNT];
int impl_parse(const char *s);

/* Runs one child role: argv = role impl me n ports size count. */
int child_main(int argc, char **argv);
/* Runs the driver: spawns the children, prints the table. */
int driver_main(int argc, char **argv);

/* Helpers. */
uint64_t now_ns(void);
/* A field of /proc/self/status in KiB (e.g. "VmRSS:", "VmHWM:"). */
long status_kib(const char *field);
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void put_u64(uint8_t *p, uint64_t v);
uint64_t get_u64(const uint8_t *p);

#endif
