/* Event loops: one thread serves two nodes with epoll, through the
 * descriptors cluster_recv_fd gives (level-triggered: readable exactly while
 * a receive would not block, or once the node is closed).
 * Node 1 sends "ping N" to node 2, which answers "pong N"; each pong makes
 * the next ping, ROUNDS times. Then both nodes are closed, their
 * descriptors turn readable, and the loop ends on CLUSTER_E_CLOSED.
 * Build: cc -std=c11 epoll.c $(pkg-config --cflags --libs cluster) -o epoll
 * Run:   ./epoll [CONFIG]   (JSON text or a path with ids 1 and 2) */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "cluster.h"

#define ROUNDS 200

static const char *CONFIG =
    "{\"Peers\": [{\"Id\": 1, \"Address\": \"localhost:7191\"},"
    "             {\"Id\": 2, \"Address\": \"localhost:7192\"}]}";

/* Sends "WORD N" from `node` to `to`. A send from an event loop must not
 * block: cluster_try_send with timeout 0 keeps a message that finds no
 * room (CLUSTER_E_TIMEOUT) instead of dropping it; a real server would
 * queue it and try again later. Here the peers always have room. */
static int say(cluster_node_t *node, int64_t to, const char *word, int64_t n) {
    char text[32];
    int len = snprintf(text, sizeof text, "%s %lld", word, (long long)n);
    cluster_envelope_t env = {.pid = to, .msg_id = n, .kind = 1,
                              .data = (const uint8_t *)text, .len = (size_t)len};
    cluster_error_t err;
    int rc = cluster_try_send(node, &env, 0, &err);
    if (rc != CLUSTER_OK) fprintf(stderr, "send: %s: %s\n", cluster_strerror(rc), err.message);
    return rc;
}

int main(int argc, char **argv) {
    const char *config = argc > 1 ? argv[1] : CONFIG;
    cluster_error_t err;
    cluster_node_t *nodes[2] = {NULL, NULL};
    int fds[2] = {-1, -1};
    int ep = -1, status = 1;
    for (int i = 0; i < 2; i++) {
        if (cluster_new(i + 1, config, &nodes[i], &err) != CLUSTER_OK) {
            fprintf(stderr, "cluster_new: %s: %s\n", cluster_strerror(err.code), err.message);
            goto out;
        }
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) { perror("epoll_create1"); goto out; }
    for (int i = 0; i < 2; i++) {
        /* Valid until cluster_free; only ever polled, never read or closed. */
        if (cluster_recv_fd(nodes[i], &fds[i], &err) != CLUSTER_OK) {
            fprintf(stderr, "cluster_recv_fd: %s\n", err.message);
            goto out;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0) { perror("epoll_ctl"); goto out; }
    }
    if (say(nodes[0], 2, "ping", 0) != CLUSTER_OK) goto out;

    int64_t pongs = 0;
    int open = 2;
    while (open > 0) {
        struct epoll_event ready[2];
        int n = epoll_wait(ep, ready, 2, 10000);
        if (n <= 0) { fprintf(stderr, "epoll_wait: nothing for 10 s\n"); goto out; }
        for (int k = 0; k < n; k++) {
            uint32_t i = ready[k].data.u32;
            cluster_envelope_t in;
            int rc;
            /* Readable: take what is there, without blocking. */
            while ((rc = cluster_recv(nodes[i], &in, 0, &err)) == CLUSTER_OK) {
                int64_t round = in.msg_id;
                cluster_envelope_free(&in);
                if (i == 1) {
                    rc = say(nodes[1], 1, "pong", round);
                } else if (++pongs < ROUNDS) {
                    rc = say(nodes[0], 2, "ping", pongs);
                } else {
                    cluster_close(nodes[0], &err); /* done: both nodes close, */
                    cluster_close(nodes[1], &err); /* their fds turn readable */
                }
                if (rc != CLUSTER_OK) goto out;
            }
            if (rc == CLUSTER_E_CLOSED) { /* closed: stays readable, so stop watching */
                epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                open--;
            } else if (rc != CLUSTER_E_TIMEOUT) {
                fprintf(stderr, "recv: %s: %s\n", cluster_strerror(rc), err.message);
                goto out;
            }
        }
    }
    printf("epoll: %lld ping-pong rounds between nodes 1 and 2 in one thread\n", (long long)pongs);
    status = pongs == ROUNDS ? 0 : 1;
out:
    if (ep >= 0) close(ep);
    cluster_free(nodes[0]);
    cluster_free(nodes[1]);
    return status;
}
