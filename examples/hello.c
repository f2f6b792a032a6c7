/* The C quick start: two nodes of one process exchange a message.
 * Build: cc hello.c $(pkg-config --cflags --libs cluster) -o hello
 *        (libcluster installed by scripts/install.sh; in a checkout, after
 *        cargo build --release, PKG_CONFIG_PATH=$PWD/target/release)
 * Run:   ./hello [CONFIG]   (JSON text or a path with ids 1 and 2; default below) */
#include <stdio.h>
#include <string.h>

#include "cluster.h"

static const char *CONFIG =
    "{\"Peers\": [{\"Id\": 1, \"Address\": \"localhost:7181\"},"
    "             {\"Id\": 2, \"Address\": \"localhost:7182\"}]}";

int main(int argc, char **argv) {
    const char *config = argc > 1 ? argv[1] : CONFIG;
    cluster_error_t err;
    cluster_node_t *a = NULL, *b = NULL;
    if (cluster_new(1, config, &a, &err) != CLUSTER_OK ||
        cluster_new(2, config, &b, &err) != CLUSTER_OK) {
        fprintf(stderr, "cluster_new: %s: %s\n", cluster_strerror(err.code), err.message);
        cluster_free(a);
        return 1;
    }
    const char *text = "hello, node 2";
    cluster_envelope_t out = {.pid = 2, .msg_id = 1, .kind = 1,
                              .data = (const uint8_t *)text, .len = strlen(text)};
    cluster_envelope_t in;
    int rc = cluster_send(a, &out, -1, &err);
    if (rc == CLUSTER_OK) rc = cluster_recv(b, &in, 5000, &err);
    if (rc != CLUSTER_OK) {
        fprintf(stderr, "%s: %s\n", cluster_strerror(rc), err.message);
    } else {
        printf("node 2 got \"%.*s\" from node %lld (libcluster %s, header %d.%d.%d)\n",
               (int)in.len, (const char *)in.data, (long long)in.pid, cluster_version(),
               CLUSTER_VERSION_MAJOR, CLUSTER_VERSION_MINOR, CLUSTER_VERSION_PATCH);
        cluster_envelope_free(&in);
    }
    cluster_free(a);
    cluster_free(b);
    return rc == CLUSTER_OK ? 0 : 1;
}
