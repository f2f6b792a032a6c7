/* Small helpers shared by the C tests: checks, free ports, configs. */
#ifndef CLUSTER_TEST_API_H
#define CLUSTER_TEST_API_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster.h"

static int checks_run = 0;
static int checks_failed = 0;

/* Records one check; prints the failing expression and where it is. */
#define CHECK(cond)                                                        \
    do {                                                                   \
        checks_run++;                                                      \
        if (!(cond)) {                                                     \
            checks_failed++;                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                      \
        }                                                                  \
    } while (0)

/* Checks that a call returned `want`, printing the error message if not. */
#define CHECK_RC(want, call, err)                                          \
    do {                                                                   \
        int rc_ = (call);                                                  \
        checks_run++;                                                      \
        if (rc_ != (want)) {                                               \
            checks_failed++;                                               \
            fprintf(stderr, "%s:%d: %s returned %s (%s), want %s\n",       \
                    __FILE__, __LINE__, #call, cluster_strerror(rc_),      \
                    (err).message, cluster_strerror(want));                \
        }                                                                  \
    } while (0)

/* A loopback port that was free a moment ago. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("free_port");
        exit(2);
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* A counter of the node's stats JSON by its key (e.g. "delivered"), or
 * -1 if there is none. Inline: not every test uses it. */
static inline long node_stat(const cluster_node_t *n, const char *key) {
    char *stats = NULL;
    char want[64];
    long v = -1;
    snprintf(want, sizeof want, "\"%s\":", key);
    if (cluster_stats(n, &stats, NULL) == CLUSTER_OK) {
        const char *at = strstr(stats, want);
        if (at != NULL) v = strtol(at + strlen(want), NULL, 10);
    }
    cluster_string_free(stats);
    return v;
}

/* Writes a config for ids 1..n on free loopback ports into buf. */
static void make_config(char *buf, size_t cap, int n, const char *extra) {
    size_t off = (size_t)snprintf(buf, cap, "{\"Peers\":[");
    for (int i = 1; i <= n; i++) {
        off += (size_t)snprintf(buf + off, cap - off,
                                "%s{\"Id\":%d,\"Address\":\"127.0.0.1:%d\"}",
                                i > 1 ? "," : "", i, free_port());
    }
    snprintf(buf + off, cap - off, "]%s%s}", extra[0] ? "," : "", extra);
}

/* Prints the plain closing line and returns the process exit code. */
static int finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, checks_run - checks_failed,
           checks_failed);
    return checks_failed == 0 ? 0 : 1;
}

#endif
