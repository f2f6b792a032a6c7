/* The mock's virtual clock from C: delays pass only with
 * cluster_mock_advance, due messages land in (due time, sender) order, a
 * receive with a timeout waits in virtual time (another thread advances),
 * and the same seed and sends give the same trace, byte for byte. The
 * errors, and everything freed (run under valgrind by the suite). */
#include <pthread.h>
#include <sched.h>

#include "test_api.h"

#define N 5

static cluster_envelope_t msg(int64_t to, int64_t msg_id) {
    cluster_envelope_t e;
    memset(&e, 0, sizeof e);
    e.pid = to;
    e.msg_id = msg_id;
    e.data = (const uint8_t *)"x";
    e.len = 1;
    return e;
}

/* Receives what is already in the inbox without waiting; returns how many. */
static int drain(cluster_node_t *n) {
    cluster_envelope_t got;
    int total = 0;
    while (cluster_recv(n, &got, 0, NULL) == CLUSTER_OK) {
        total++;
        cluster_envelope_free(&got);
    }
    return total;
}

/* Five servers with delays up to 1 s, server 3 losing 20%, a partition
 * and a heal; returns the trace (free it with cluster_string_free). */
static char *scenario(uint64_t seed) {
    cluster_error_t err;
    cluster_mock_t *mock = NULL;
    cluster_node_t *s[N];
    char *trace = NULL;
    CHECK_RC(CLUSTER_OK, cluster_mock_new(NULL, seed, &mock, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_clock(mock, CLUSTER_CLOCK_VIRTUAL, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_trace(mock, 1, &err), err);
    for (int i = 0; i < N; i++) {
        CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, i + 1, &s[i], &err), err);
        CHECK_RC(CLUSTER_OK, cluster_fault_delay(s[i], 1000, &err), err);
    }
    CHECK_RC(CLUSTER_OK, cluster_fault_drop(s[2], 0.2, &err), err);
    int64_t groups[] = {1, 2, 3, 4, 5};
    size_t lens[] = {2, 3};
    for (int phase = 0; phase < 3; phase++) {
        if (phase == 1) CHECK_RC(CLUSTER_OK, cluster_mock_partition(mock, groups, lens, 2, &err), err);
        if (phase == 2) CHECK_RC(CLUSTER_OK, cluster_mock_heal(mock, &err), err);
        for (int k = 0; k < 10; k++) {
            for (int i = 0; i < N; i++) {
                cluster_envelope_t e = msg(CLUSTER_BROADCAST, phase * 100 + k);
                CHECK_RC(CLUSTER_OK, cluster_send(s[i], &e, 0, &err), err);
            }
        }
        CHECK_RC(CLUSTER_OK, cluster_mock_advance(mock, 1000, NULL, &err), err);
        for (int i = 0; i < N; i++) drain(s[i]);
    }
    CHECK_RC(CLUSTER_OK, cluster_mock_run_until_idle(mock, NULL, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_trace_take(mock, &trace, &err), err);
    for (int i = 0; i < N; i++) cluster_free(s[i]);
    cluster_mock_free(mock);
    return trace;
}

struct waiter {
    cluster_node_t *node;
    int64_t timeout_ms;
    int rc;
    int64_t msg_id;
};

static void *wait_recv(void *arg) {
    struct waiter *w = arg;
    cluster_envelope_t got;
    int rc = cluster_recv(w->node, &got, w->timeout_ms, NULL);
    if (rc == CLUSTER_OK) {
        w->msg_id = got.msg_id;
        cluster_envelope_free(&got);
    }
    __atomic_store_n(&w->rc, rc, __ATOMIC_SEQ_CST);
    return NULL;
}

int main(void) {
    cluster_error_t err;
    cluster_mock_t *mock = NULL;
    cluster_node_t *a = NULL, *b = NULL;
    int64_t now = -1;
    size_t landed = 0, rest = 0;

    CHECK_RC(CLUSTER_OK, cluster_mock_new(NULL, 1, &mock, &err), err);
    /* On the real clock the virtual calls are refused. */
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_mock_now(mock, &now, &err), err);
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_mock_advance(mock, 1, NULL, &err), err);
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_mock_clock(mock, 7, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_clock(mock, CLUSTER_CLOCK_VIRTUAL, &err), err);
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_mock_clock(mock, CLUSTER_CLOCK_REAL, &err), err);
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_mock_advance(mock, -1, NULL, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_mock_now(mock, NULL, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_mock_advance(NULL, 1, NULL, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 1, &a, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 2, &b, &err), err);

    /* Delays pass only when the test advances time. */
    CHECK_RC(CLUSTER_OK, cluster_fault_delay(a, 100, &err), err);
    for (int i = 0; i < 10; i++) {
        cluster_envelope_t e = msg(2, i);
        CHECK_RC(CLUSTER_OK, cluster_send(a, &e, 0, &err), err);
    }
    CHECK(drain(b) == 0);
    CHECK_RC(CLUSTER_OK, cluster_mock_now(mock, &now, &err), err);
    CHECK(now == 0);
    CHECK_RC(CLUSTER_OK, cluster_mock_advance(mock, 50, &landed, &err), err);
    CHECK(drain(b) == (int)landed);
    CHECK_RC(CLUSTER_OK, cluster_mock_advance(mock, 50, &rest, &err), err);
    CHECK(landed + rest == 10 && drain(b) == (int)rest);
    CHECK_RC(CLUSTER_OK, cluster_mock_now(mock, &now, &err), err);
    CHECK(now == 100);

    /* A receive with a timeout waits in virtual time: another thread (here
     * this one) advances until it times out. */
    struct waiter w = {b, 30, 1, -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, wait_recv, &w) == 0);
    for (int i = 0; i < 1000000 && __atomic_load_n(&w.rc, __ATOMIC_SEQ_CST) == 1; i++) {
        cluster_mock_advance(mock, 1, NULL, NULL);
        sched_yield();
    }
    pthread_join(t, NULL);
    CHECK(w.rc == CLUSTER_E_TIMEOUT);
    CHECK_RC(CLUSTER_OK, cluster_mock_now(mock, &now, &err), err);
    CHECK(now >= 130);
    cluster_envelope_t got;
    CHECK_RC(CLUSTER_E_TIMEOUT, cluster_recv(b, &got, 0, &err), err);

    /* A delayed message still in flight is lost to the close. */
    cluster_envelope_t e = msg(2, 99);
    CHECK_RC(CLUSTER_OK, cluster_send(a, &e, 0, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_close(mock, &err), err);
    CHECK_RC(CLUSTER_E_CLOSED, cluster_mock_advance(mock, 1, NULL, &err), err);
    CHECK_RC(CLUSTER_E_CLOSED, cluster_mock_run_until_idle(mock, NULL, &err), err);
    cluster_free(a);
    cluster_free(b);
    cluster_mock_free(mock);

    /* A mock made from a configuration (its servers started already)
     * switches to the virtual clock as well. */
    char cfg[512];
    make_config(cfg, sizeof cfg, 2, "");
    CHECK_RC(CLUSTER_OK, cluster_mock_new(cfg, 3, &mock, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_clock(mock, CLUSTER_CLOCK_VIRTUAL, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 1, &a, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 2, &b, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_fault_delay(a, 5, &err), err);
    e = msg(2, 1);
    CHECK_RC(CLUSTER_OK, cluster_send(a, &e, 0, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_run_until_idle(mock, &landed, &err), err);
    CHECK(landed == 1 && drain(b) == 1);
    cluster_free(a);
    cluster_free(b);
    cluster_mock_free(mock);

    /* Same seed, same sends: the same trace, byte for byte. */
    char *first = scenario(7);
    char *second = scenario(7);
    char *other = scenario(8);
    CHECK(first != NULL && second != NULL && other != NULL);
    if (first && second && other) {
        CHECK(strlen(first) > 1000);
        CHECK(strcmp(first, second) == 0);
        CHECK(strcmp(first, other) != 0);
        CHECK(strstr(first, "\"t_us\":") != NULL);
        CHECK(strstr(first, "\"reason\":\"partition\"") != NULL);
    }
    cluster_string_free(first);
    cluster_string_free(second);
    cluster_string_free(other);
    return finish("virtual_clock");
}
