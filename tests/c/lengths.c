/* A length is checked before anything is made of it: a send whose `len` is
 * far beyond MaxMessageSize (up to SIZE_MAX, with a small buffer behind it)
 * is CLUSTER_E_TOO_LARGE on a TCP node and on a mock server alike, and the
 * process neither aborts nor reads past the buffer (valgrind checks). */
#include <stdint.h>

#include "test_api.h"

static void refuses_huge_lengths(cluster_node_t *node, int64_t to) {
    cluster_error_t err;
    static const uint8_t small[16];
    const size_t lens[] = {(size_t)1 << 40, SIZE_MAX, SIZE_MAX / 2 + 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        cluster_envelope_t env = {.pid = to, .data = small, .len = lens[i]};
        CHECK_RC(CLUSTER_E_TOO_LARGE, cluster_send(node, &env, 0, &err), err);
        CHECK(strstr(err.message, "MaxMessageSize") != NULL);
        cluster_envelope_t two[2] = {{.pid = to, .data = small, .len = 1}, env};
        size_t sent = 99;
        CHECK_RC(CLUSTER_E_TOO_LARGE, cluster_send_batch(node, two, 2, 0, &sent, &err), err);
        CHECK(sent == 1);
    }
}

int main(void) {
    char cfg[512];
    make_config(cfg, sizeof cfg, 2, "");
    cluster_error_t err;
    cluster_node_t *tcp = NULL;
    CHECK_RC(CLUSTER_OK, cluster_new(1, cfg, &tcp, &err), err);
    if (tcp != NULL)
        refuses_huge_lengths(tcp, 2);
    cluster_free(tcp);

    cluster_mock_t *mock = NULL;
    cluster_node_t *a = NULL, *b = NULL;
    CHECK_RC(CLUSTER_OK, cluster_mock_new(NULL, 1, &mock, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 1, &a, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 2, &b, &err), err);
    if (a != NULL && b != NULL)
        refuses_huge_lengths(a, 2);
    cluster_free(a);
    cluster_free(b);
    cluster_mock_free(mock);
    return finish("lengths");
}
