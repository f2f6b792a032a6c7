/*
 * xnode: a C member of the cross-language test (see ../xlang_test.go).
 *
 *   xnode ID CONFIG
 *
 * Starts node ID of the cluster in CONFIG (JSON text or file), prints
 * "ready", then serves until told "bye" or 60 s pass:
 *  - text "start" from anyone: send bytes, text and JSON to every peer;
 *  - text "bye": close and exit 0;
 *  - anything else: print "got FROM KIND HEX" (payload as hex).
 * Exits 1 on any library error, printing it to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

static int fail(const char *what, const cluster_error_t *err) {
    fprintf(stderr, "xnode: %s: %s (%s)\n", what, err->message, cluster_strerror(err->code));
    return 1;
}

static int send_to(cluster_node_t *node, int64_t to, uint32_t kind, const char *data, size_t len) {
    cluster_envelope_t env = {0};
    cluster_error_t err;
    env.pid = to;
    env.kind = kind;
    env.data = (const uint8_t *)data;
    env.len = len;
    if (cluster_send(node, &env, 5000, &err) != CLUSTER_OK) {
        return fail("send", &err);
    }
    return 0;
}

/* Sends bytes (with a NUL and a 0xff), text and JSON to every peer. */
static int greet(cluster_node_t *node, int64_t id) {
    int64_t peers[16];
    size_t n = 0;
    char json[64];
    cluster_error_t err;
    if (cluster_peers(node, peers, 16, &n, &err) != CLUSTER_OK) {
        return fail("peers", &err);
    }
    snprintf(json, sizeof json, "{\"from\": \"C\", \"id\": %lld}", (long long)id);
    for (size_t i = 0; i < n; i++) {
        if (send_to(node, peers[i], 0, "C\0\xff", 3) || send_to(node, peers[i], 1, "text from C", 11) ||
            send_to(node, peers[i], 2, json, strlen(json))) {
            return 1;
        }
    }
    return 0;
}

static int is_text(const cluster_envelope_t *env, const char *s) {
    return env->kind == 1 && env->len == strlen(s) && memcmp(env->data, s, env->len) == 0;
}

int main(int argc, char **argv) {
    cluster_node_t *node = NULL;
    cluster_error_t err;
    int rc = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: xnode ID CONFIG\n");
        return 2;
    }
    int64_t id = strtoll(argv[1], NULL, 10);
    if (cluster_new(id, argv[2], &node, &err) != CLUSTER_OK) {
        return fail("new", &err);
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        cluster_envelope_t env = {0};
        if (cluster_recv(node, &env, 60000, &err) != CLUSTER_OK) {
            rc = fail("recv", &err);
            break;
        }
        if (is_text(&env, "bye")) {
            cluster_envelope_free(&env);
            break;
        }
        if (is_text(&env, "start")) {
            rc = greet(node, id);
        } else {
            printf("got %lld %u ", (long long)env.pid, env.kind);
            for (size_t i = 0; i < env.len; i++) {
                printf("%02x", env.data[i]);
            }
            printf("\n");
            fflush(stdout);
        }
        cluster_envelope_free(&env);
        if (rc) {
            break;
        }
    }
    cluster_free(node);
    return rc;
}
