/* A C host keeps the default SIGPIPE disposition, and the library must
 * neither raise SIGPIPE in it nor change it: node 1 queues 400 x 64 KiB to a
 * live node 2 that never reads, then closes; when the linger ends, close cuts
 * the socket under the writer's blocked write. */
#include <signal.h>

#include "test_api.h"

static int sigpipe_is_default(void) {
    struct sigaction sa;
    return sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL;
}

int main(void) {
    signal(SIGPIPE, SIG_DFL);
    char cfg[512];
    make_config(cfg, sizeof cfg, 2,
                "\"InboxSize\": 8, \"OutboxSize\": 400, \"CloseLingerMs\": 300");
    cluster_error_t err;
    cluster_node_t *a = NULL, *b = NULL;
    CHECK_RC(CLUSTER_OK, cluster_new(1, cfg, &a, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_new(2, cfg, &b, &err), err);
    if (a == NULL || b == NULL)
        return finish("sigpipe");
    static uint8_t big[64 << 10];
    cluster_envelope_t env = {.pid = 2, .data = big, .len = sizeof big};
    int sent = 0;
    for (int i = 0; i < 400; i++) {
        env.msg_id = i;
        sent += cluster_send(a, &env, 5000, &err) == CLUSTER_OK;
    }
    CHECK(sent == 400);
    CHECK_RC(CLUSTER_OK, cluster_close(a, &err), err);
    CHECK(sigpipe_is_default());
    /* Our own close counts what node 2 did not take as closed, not lost. */
    char *stats = NULL;
    CHECK_RC(CLUSTER_OK, cluster_stats(a, &stats, &err), err);
    CHECK(stats != NULL && strstr(stats, "\"conn_lost\":0") != NULL);
    cluster_string_free(stats);
    cluster_free(a);
    CHECK_RC(CLUSTER_OK, cluster_close(b, &err), err);
    cluster_free(b);
    CHECK(sigpipe_is_default());
    return finish("sigpipe");
}
