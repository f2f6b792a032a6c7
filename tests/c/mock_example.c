/* The mock network from C: five servers, broadcast, partition and heal,
 * loss, a one-way cut, hold and release, the trace, close and re-add, and
 * the errors. Frees everything it gets (run under valgrind by the suite). */
#include "test_api.h"

#define N 5

static cluster_envelope_t text(int64_t to, int64_t msg_id, const char *s) {
    cluster_envelope_t e;
    memset(&e, 0, sizeof e);
    e.pid = to;
    e.msg_id = msg_id;
    e.kind = 1;
    e.data = (const uint8_t *)s;
    e.len = strlen(s);
    return e;
}

/* Receives what is already in the inbox without waiting; returns how many. */
static int drain(cluster_node_t *n) {
    cluster_envelope_t got[64];
    size_t k = 0;
    int total = 0;
    while (cluster_recv_batch(n, got, 64, &k, 0, NULL) == CLUSTER_OK) {
        total += (int)k;
        cluster_envelopes_free(got, k);
    }
    return total;
}

static int everyone_broadcasts(cluster_node_t **s, int times) {
    cluster_error_t err;
    int total = 0;
    for (int t = 0; t < times; t++) {
        for (int i = 0; i < N; i++) {
            cluster_envelope_t e = text(CLUSTER_BROADCAST, t, "hello");
            CHECK_RC(CLUSTER_OK, cluster_send(s[i], &e, -1, &err), err);
        }
    }
    for (int i = 0; i < N; i++) total += drain(s[i]);
    return total;
}

int main(void) {
    cluster_error_t err;
    cluster_mock_t *mock = NULL;
    cluster_node_t *s[N];

    CHECK_RC(CLUSTER_OK, cluster_mock_new(NULL, 42, &mock, &err), err);
    for (int i = 0; i < N; i++) {
        CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, i + 1, &s[i], &err), err);
    }
    int64_t ids[8];
    size_t len = 0;
    CHECK_RC(CLUSTER_OK, cluster_mock_servers(mock, ids, 8, &len, &err), err);
    CHECK(len == N && ids[0] == 1 && ids[4] == 5);
    CHECK_RC(CLUSTER_E_BUFFER_TOO_SMALL, cluster_mock_servers(mock, ids, 2, &len, &err), err);
    CHECK(len == N);

    /* No loss: 10 broadcasts from each of 5 servers reach the 4 others. */
    CHECK(everyone_broadcasts(s, 10) == 10 * N * (N - 1));

    /* The envelope arrives with the sender's id. */
    cluster_envelope_t e = text(2, 7, "to two");
    CHECK_RC(CLUSTER_OK, cluster_send(s[0], &e, 0, &err), err);
    cluster_envelope_t got;
    CHECK_RC(CLUSTER_OK, cluster_recv(s[1], &got, 1000, &err), err);
    CHECK(got.pid == 1 && got.msg_id == 7 && got.len == 6 && memcmp(got.data, "to two", 6) == 0);
    cluster_envelope_free(&got);

    /* Partition [1,2,3] / [4,5]: 3*2 + 2*1 links. Then heal. */
    int64_t groups[] = {1, 2, 3, 4, 5};
    size_t lens[] = {3, 2};
    CHECK_RC(CLUSTER_OK, cluster_mock_partition(mock, groups, lens, 2, &err), err);
    CHECK(everyone_broadcasts(s, 10) == 10 * (3 * 2 + 2 * 1));
    CHECK_RC(CLUSTER_OK, cluster_mock_heal(mock, &err), err);
    CHECK(everyone_broadcasts(s, 10) == 10 * N * (N - 1));

    /* An id in two groups is an error. */
    int64_t twice[] = {1, 2, 2, 3};
    size_t twice_lens[] = {2, 2};
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_mock_partition(mock, twice, twice_lens, 2, &err), err);
    CHECK(strstr(err.message, "id 2") != NULL);

    /* Loss: server 1 drops everything it sends; fault drops are counted. */
    long before = node_stat(s[0], "fault");
    CHECK(before == 2 * 10); /* the partition's losses, from 1 to 4 and 5 */
    CHECK_RC(CLUSTER_OK, cluster_fault_drop(s[0], 1.0, &err), err);
    e = text(CLUSTER_BROADCAST, 8, "lost");
    CHECK_RC(CLUSTER_OK, cluster_send(s[0], &e, 0, &err), err);
    int lost_total = 0;
    for (int i = 1; i < N; i++) lost_total += drain(s[i]);
    CHECK(lost_total == 0);
    CHECK(node_stat(s[0], "fault") == before + N - 1);
    CHECK_RC(CLUSTER_OK, cluster_fault_drop(s[0], 0.0, &err), err);
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_fault_drop(s[0], 1.5, &err), err);

    /* One-way cut: 2 no longer hears 3, 3 still hears 2. */
    int64_t three = 3;
    CHECK_RC(CLUSTER_OK, cluster_fault_cut(s[1], &three, 1, CLUSTER_CUT_IN, &err), err);
    e = text(2, 9, "3 to 2");
    CHECK_RC(CLUSTER_OK, cluster_send(s[2], &e, 0, &err), err);
    e = text(3, 10, "2 to 3");
    CHECK_RC(CLUSTER_OK, cluster_send(s[1], &e, 0, &err), err);
    CHECK(drain(s[1]) == 0 && drain(s[2]) == 1);
    CHECK_RC(CLUSTER_OK, cluster_fault_heal(s[1], &err), err);
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_fault_cut(s[1], &three, 1, 9, &err), err);

    /* Hold 1 -> 2, send three, release in order; with the trace on. */
    CHECK_RC(CLUSTER_OK, cluster_mock_trace(mock, 1, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_hold(mock, 1, 2, &err), err);
    for (int i = 0; i < 3; i++) {
        e = text(2, 100 + i, "held");
        CHECK_RC(CLUSTER_OK, cluster_send(s[0], &e, 0, &err), err);
    }
    CHECK(drain(s[1]) == 0);
    CHECK_RC(CLUSTER_OK, cluster_mock_release(mock, 1, 2, 0, &err), err);
    for (int i = 0; i < 3; i++) {
        CHECK_RC(CLUSTER_OK, cluster_recv(s[1], &got, 1000, &err), err);
        CHECK(got.msg_id == 100 + i);
        cluster_envelope_free(&got);
    }
    char *trace = NULL;
    CHECK_RC(CLUSTER_OK, cluster_mock_trace_take(mock, &trace, &err), err);
    CHECK(trace != NULL && strstr(trace, "\"event\":\"held\"") != NULL &&
          strstr(trace, "\"event\":\"delivered\"") != NULL);
    cluster_string_free(trace);

    /* Close server 3: it leaves every peer list; add it again. */
    CHECK_RC(CLUSTER_OK, cluster_close(s[2], &err), err);
    CHECK(cluster_is_closed(s[2]) == 1);
    int64_t peers[8];
    CHECK_RC(CLUSTER_OK, cluster_peers(s[0], peers, 8, &len, &err), err);
    CHECK(len == 3);
    e = text(3, 11, "gone");
    CHECK_RC(CLUSTER_E_UNKNOWN_PEER, cluster_send(s[0], &e, 0, &err), err);
    cluster_free(s[2]);
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 3, &s[2], &err), err);
    CHECK_RC(CLUSTER_OK, cluster_send(s[0], &e, 0, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_recv(s[2], &got, 1000, &err), err);
    CHECK(got.pid == 1 && got.msg_id == 11);
    cluster_envelope_free(&got);

    /* A mock from a cluster config starts every configured server. */
    char cfg[1024];
    make_config(cfg, sizeof cfg, 3, "\"InboxSize\": 10");
    cluster_mock_t *from_cfg = NULL;
    CHECK_RC(CLUSTER_OK, cluster_mock_new(cfg, 1, &from_cfg, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_servers(from_cfg, ids, 8, &len, &err), err);
    CHECK(len == 3 && ids[0] == 1 && ids[2] == 3);
    cluster_node_t *one = NULL;
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(from_cfg, 1, &one, &err), err);
    for (int i = 0; i < 10; i++) {
        e = text(1, i, "self");
        CHECK_RC(CLUSTER_OK, cluster_send(one, &e, 0, &err), err);
    }
    CHECK_RC(CLUSTER_E_FULL, cluster_send(one, &e, 0, &err), err);
    cluster_free(one);
    cluster_mock_free(from_cfg);

    /* NULL arguments are errors, never crashes. */
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_mock_new(NULL, 0, NULL, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_mock_heal(NULL, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_mock_add_server(mock, 9, NULL, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_mock_partition(mock, NULL, lens, 2, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_fault_delay(NULL, 10, &err), err);
    CHECK_RC(CLUSTER_E_CONFIG, cluster_mock_new("{\"InboxSize\": 0}", 0, &mock, &err), err);

    /* Closing the mock closes every server. */
    CHECK_RC(CLUSTER_OK, cluster_mock_close(mock, &err), err);
    for (int i = 0; i < N; i++) CHECK(cluster_is_closed(s[i]) == 1);
    cluster_node_t *late = NULL;
    CHECK_RC(CLUSTER_E_CLOSED, cluster_mock_add_server(mock, 6, &late, &err), err);
    for (int i = 0; i < N; i++) cluster_free(s[i]);
    cluster_mock_free(mock);
    cluster_mock_free(NULL);
    return finish("mock_example");
}
