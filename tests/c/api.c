/* The C API end to end: unicast, broadcast, timeouts, every error code it
 * can provoke, NULL arguments, ownership. Run under valgrind by the suite. */
#include "test_api.h"

static cluster_node_t *start(int64_t id, const char *cfg) {
    cluster_error_t err;
    cluster_node_t *n = NULL;
    CHECK_RC(CLUSTER_OK, cluster_new(id, cfg, &n, &err), err);
    return n;
}

static void test_errors_without_a_node(void) {
    cluster_error_t err;
    cluster_node_t *n = NULL;
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_new(1, NULL, &n, &err), err);
    CHECK(strstr(err.message, "config") != NULL);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_new(1, "{}", NULL, &err), err);
    CHECK_RC(CLUSTER_E_CONFIG, cluster_new(1, "{\"Peers\": [", &n, &err), err);
    CHECK(strstr(err.message, "line 1 column") != NULL);
    CHECK(err.code == CLUSTER_E_CONFIG);
    CHECK(strcmp(cluster_last_error(), err.message) == 0);
    CHECK_RC(CLUSTER_E_CONFIG,
             cluster_new(5, "{\"Peers\":[{\"Id\":1,\"Address\":\"127.0.0.1:1\"}]}", &n, &err),
             err);
    CHECK(strstr(err.message, "own id 5") != NULL);
    CHECK_RC(CLUSTER_E_CONFIG, cluster_new(1, "/no/such/config.json", &n, &err), err);
    CHECK(n == NULL);
    /* err may be NULL */
    CHECK(cluster_new(1, NULL, &n, NULL) == CLUSTER_E_NULL_ARG);
    /* NULL handles everywhere: an error code, never a crash. */
    cluster_envelope_t env;
    memset(&env, 0, sizeof env);
    int64_t id;
    size_t len;
    char *s;
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_send(NULL, &env, 0, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_recv(NULL, &env, 0, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_pid(NULL, &id, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_peers(NULL, NULL, 0, &len, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_stats(NULL, &s, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_close(NULL, &err), err);
    CHECK(cluster_is_closed(NULL) == CLUSTER_E_NULL_ARG);
    cluster_free(NULL);
    cluster_envelope_free(NULL);
    cluster_string_free(NULL);
    /* Names of every code, and of a number that is none. */
    CHECK(strcmp(cluster_strerror(CLUSTER_E_TIMEOUT), "CLUSTER_E_TIMEOUT") == 0);
    CHECK(strcmp(cluster_strerror(CLUSTER_OK), "CLUSTER_OK") == 0);
    CHECK(strcmp(cluster_strerror(12345), "CLUSTER_E_UNKNOWN") == 0);
    for (int c = 0; c >= CLUSTER_E_BUFFER_TOO_SMALL; c--) {
        CHECK(strncmp(cluster_strerror(c), "CLUSTER_", 8) == 0);
    }
    CHECK(strlen(cluster_version()) > 0);
}

static void test_two_nodes(void) {
    char cfg[1024];
    cluster_error_t err;
    make_config(cfg, sizeof cfg, 3, "\"MaxMessageSize\": 1000, \"InboxSize\": 16");
    cluster_node_t *a = start(1, cfg), *b = start(2, cfg), *c = start(3, cfg);
    if (!a || !b || !c) return;

    int64_t pid = 0;
    CHECK_RC(CLUSTER_OK, cluster_pid(b, &pid, &err), err);
    CHECK(pid == 2);
    int64_t peers[4];
    size_t n = 0;
    CHECK_RC(CLUSTER_E_BUFFER_TOO_SMALL, cluster_peers(a, peers, 1, &n, &err), err);
    CHECK(n == 2 && peers[0] == 2);
    CHECK_RC(CLUSTER_OK, cluster_peers(a, peers, 4, &n, &err), err);
    CHECK(n == 2 && peers[0] == 2 && peers[1] == 3);

    /* Unicast: the payload is copied, pid is rewritten to the sender. */
    char text[] = "hello, c";
    cluster_envelope_t env = {2, 77, 1, (const uint8_t *)text, strlen(text), NULL};
    CHECK_RC(CLUSTER_OK, cluster_send(a, &env, -1, &err), err);
    text[0] = 'X';
    cluster_envelope_t got;
    CHECK_RC(CLUSTER_OK, cluster_recv(b, &got, 10000, &err), err);
    CHECK(got.pid == 1 && got.msg_id == 77 && got.kind == 1);
    CHECK(got.len == 8 && memcmp(got.data, "hello, c", 8) == 0);
    /* Reply with the same envelope. */
    CHECK_RC(CLUSTER_OK, cluster_send(b, &got, -1, &err), err);
    cluster_envelope_free(&got);
    CHECK(got.data == NULL && got.len == 0);
    cluster_envelope_free(&got); /* twice is harmless */
    CHECK_RC(CLUSTER_OK, cluster_recv(a, &got, 10000, &err), err);
    CHECK(got.pid == 2 && got.len == 8);
    cluster_envelope_free(&got);

    /* Empty payload with a NULL pointer is fine; NULL with a length is not. */
    cluster_envelope_t empty = {3, 1, 0, NULL, 0, NULL};
    CHECK_RC(CLUSTER_OK, cluster_send(a, &empty, -1, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_recv(c, &got, 10000, &err), err);
    CHECK(got.len == 0 && got.pid == 1);
    cluster_envelope_free(&got);
    empty.len = 4;
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_send(a, &empty, -1, &err), err);

    /* Broadcast reaches everyone but the sender. */
    cluster_envelope_t bc = {CLUSTER_BROADCAST, 5, 0, (const uint8_t *)"all", 3, NULL};
    CHECK_RC(CLUSTER_OK, cluster_send(c, &bc, -1, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_recv(a, &got, 10000, &err), err);
    CHECK(got.pid == 3 && got.msg_id == 5);
    cluster_envelope_free(&got);
    CHECK_RC(CLUSTER_OK, cluster_recv(b, &got, 10000, &err), err);
    CHECK(got.pid == 3 && got.msg_id == 5);
    cluster_envelope_free(&got);
    CHECK_RC(CLUSTER_E_TIMEOUT, cluster_recv(c, &got, 0, &err), err);
    CHECK_RC(CLUSTER_E_TIMEOUT, cluster_recv(c, &got, 30, &err), err);
    CHECK(got.data == NULL);

    /* Errors a send can provoke. */
    cluster_envelope_t bad = {99, 0, 0, (const uint8_t *)"x", 1, NULL};
    CHECK_RC(CLUSTER_E_UNKNOWN_PEER, cluster_send(a, &bad, 0, &err), err);
    CHECK(strstr(err.message, "99") != NULL);
    static uint8_t big[1001];
    cluster_envelope_t large = {2, 0, 0, big, sizeof big, NULL};
    CHECK_RC(CLUSTER_E_TOO_LARGE, cluster_send(a, &large, 0, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_send(a, NULL, 0, &err), err);
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_recv(a, NULL, 0, &err), err);

    /* Own inbox full: a send to oneself is dropped and says so. */
    cluster_envelope_t self = {1, 0, 0, (const uint8_t *)"me", 2, NULL};
    for (int i = 0; i < 16; i++)
        CHECK_RC(CLUSTER_OK, cluster_send(a, &self, 0, &err), err);
    CHECK_RC(CLUSTER_E_FULL, cluster_send(a, &self, 0, &err), err);

    /* Batches both ways. */
    cluster_envelope_t many[16];
    size_t got_n = 0;
    CHECK_RC(CLUSTER_OK, cluster_recv_batch(a, many, 16, &got_n, 1000, &err), err);
    CHECK(got_n == 16 && many[15].pid == 1);
    cluster_envelopes_free(many, got_n);
    CHECK_RC(CLUSTER_E_INVALID_ARG, cluster_recv_batch(a, many, 0, &got_n, 0, &err), err);
    cluster_envelope_t out[3] = {
        {2, 1, 0, (const uint8_t *)"a", 1, NULL},
        {2, 2, 0, (const uint8_t *)"b", 1, NULL},
        {99, 3, 0, (const uint8_t *)"c", 1, NULL},
    };
    size_t sent = 0;
    CHECK_RC(CLUSTER_E_UNKNOWN_PEER, cluster_send_batch(a, out, 3, -1, &sent, &err), err);
    CHECK(sent == 2);
    got_n = 0;
    while (got_n < 2) {
        size_t k = 0;
        CHECK_RC(CLUSTER_OK, cluster_recv_batch(b, many + got_n, 2 - got_n, &k, 10000, &err), err);
        if (k == 0) break;
        got_n += k;
    }
    CHECK(got_n == 2 && many[0].msg_id == 1 && many[1].msg_id == 2);
    cluster_envelopes_free(many, got_n);

    /* A long batch (several chunks inside the library) stops at a bad
     * envelope deep inside it, with all that came before it sent in order. */
    enum { LONG = 150, BAD = 130 };
    static cluster_envelope_t longb[LONG];
    for (int i = 0; i < LONG; i++) {
        cluster_envelope_t e = {2, 100 + i, 0, (const uint8_t *)"z", 1, NULL};
        longb[i] = e;
    }
    longb[BAD].data = NULL;
    CHECK_RC(CLUSTER_E_NULL_ARG, cluster_send_batch(a, longb, LONG, -1, &sent, &err), err);
    CHECK(sent == BAD);
    longb[BAD].data = big;
    longb[BAD].len = sizeof big; /* now too large: refused by the node */
    CHECK_RC(CLUSTER_E_TOO_LARGE, cluster_send_batch(a, longb + BAD, 2, -1, &sent, &err), err);
    CHECK(sent == 0);
    for (size_t next = 0; next < BAD;) {
        size_t k = 0;
        CHECK_RC(CLUSTER_OK, cluster_recv_batch(b, many, 16, &k, 10000, &err), err);
        for (size_t i = 0; i < k; i++)
            CHECK(many[i].msg_id == (int64_t)(100 + next + i) && many[i].len == 1);
        cluster_envelopes_free(many, k);
        next += k;
    }
    CHECK_RC(CLUSTER_E_TIMEOUT, cluster_recv(b, &got, 50, &err), err);

    /* A too-large envelope after small ones to the same peer (which the
     * library queues as one run) stops the batch there too. */
    cluster_envelope_t mixed[5];
    for (int i = 0; i < 5; i++) {
        cluster_envelope_t e = {2, 300 + i, 0, (const uint8_t *)"m", 1, NULL};
        mixed[i] = e;
    }
    mixed[3].data = big;
    mixed[3].len = sizeof big;
    CHECK_RC(CLUSTER_E_TOO_LARGE, cluster_send_batch(a, mixed, 5, -1, &sent, &err), err);
    CHECK(sent == 3);
    for (size_t next = 0; next < 3;) {
        size_t k = 0;
        CHECK_RC(CLUSTER_OK, cluster_recv_batch(b, many, 16, &k, 10000, &err), err);
        for (size_t i = 0; i < k; i++)
            CHECK(many[i].msg_id == (int64_t)(300 + next + i));
        cluster_envelopes_free(many, k);
        next += k;
    }
    CHECK_RC(CLUSTER_E_TIMEOUT, cluster_recv(b, &got, 50, &err), err);

    /* Stats are JSON the caller owns. */
    char *stats = NULL;
    CHECK_RC(CLUSTER_OK, cluster_stats(a, &stats, &err), err);
    CHECK(stats && strstr(stats, "\"queue_full\":1") != NULL);
    cluster_string_free(stats);
    /* Each message received counts once as delivered, taken one a call or
     * in a batch; a receive that timed out counts nothing. */
    CHECK(node_stat(a, "delivered") == 18);  /* 1 + 1 one a call, 16 batched */
    CHECK(node_stat(b, "delivered") == 137); /* 2 one a call, 2 + 130 + 3 batched */
    CHECK(node_stat(c, "delivered") == 1);

    /* Payloads received together share their buffers: each one stays
     * readable until its own envelope is freed, in any order, one by one
     * or in batches, and the last free releases the buffer (valgrind
     * checks both). */
    enum { SHARED = 40 };
    static cluster_envelope_t sh[SHARED], sh_out[SHARED];
    static char words[SHARED][8];
    for (int i = 0; i < SHARED; i++) {
        snprintf(words[i], sizeof words[i], "p%02d", i);
        cluster_envelope_t e = {2, 500 + i, 0, (const uint8_t *)words[i], 3, NULL};
        sh[i] = sh_out[i] = e;
    }
    CHECK_RC(CLUSTER_OK, cluster_send_batch(a, sh, SHARED / 2, -1, &sent, &err), err);
    for (int i = SHARED / 2; i < SHARED; i++) /* and one a call */
        CHECK_RC(CLUSTER_OK, cluster_send(a, &sh[i], -1, &err), err);
    for (size_t n = 0; n < SHARED;) {
        size_t k = 0;
        if (n % 3 == 0) { /* one a call, then batches */
            CHECK_RC(CLUSTER_OK, cluster_recv(b, &sh[n], 10000, &err), err);
            k = 1;
        } else {
            CHECK_RC(CLUSTER_OK, cluster_recv_batch(b, sh + n, SHARED - n, &k, 10000, &err), err);
        }
        n += k;
    }
    for (int i = 0; i < SHARED; i += 2) /* every other one, alone */
        cluster_envelope_free(&sh[i]);
    for (int i = 1; i < SHARED; i += 2) /* the others still hold theirs */
        CHECK(sh[i].msg_id == 500 + i && sh[i].len == 3 && memcmp(sh[i].data, words[i], 3) == 0);
    cluster_envelopes_free(sh + SHARED / 2, SHARED / 2); /* half of them freed already */
    for (int i = 1; i < SHARED / 2; i += 2)
        CHECK(memcmp(sh[i].data, words[i], 3) == 0);
    cluster_envelopes_free(sh, SHARED);
    for (int i = 0; i < SHARED; i++)
        CHECK(sh[i].data == NULL && sh[i].len == 0 && sh[i]._owner == NULL);
    /* One taken of the next ones, the others left in b when it is freed
     * (below): the one held outlives its node, and nothing leaks. */
    CHECK_RC(CLUSTER_OK, cluster_send_batch(a, sh_out, SHARED, -1, &sent, &err), err);
    cluster_envelope_t held;
    CHECK_RC(CLUSTER_OK, cluster_recv(b, &held, 10000, &err), err);
    CHECK(held.msg_id == 500 && held.len == 3);

    /* Close: idempotent, then every call says closed. */
    CHECK(cluster_is_closed(a) == 0);
    CHECK_RC(CLUSTER_OK, cluster_close(a, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_close(a, &err), err);
    CHECK(cluster_is_closed(a) == 1);
    CHECK_RC(CLUSTER_E_CLOSED, cluster_send(a, &env, 0, &err), err);
    CHECK_RC(CLUSTER_E_CLOSED, cluster_recv(a, &got, -1, &err), err);

    /* The address is free again at once; a second bind of a live one is not. */
    cluster_node_t *a2 = start(1, cfg);
    cluster_node_t *dup = NULL;
    CHECK_RC(CLUSTER_E_ADDR_IN_USE, cluster_new(1, cfg, &dup, &err), err);
    cluster_free(a2);
    cluster_free(a);
    cluster_free(b);
    cluster_free(c);
    CHECK(memcmp(held.data, "p00", 3) == 0);
    cluster_envelope_free(&held);
}

int main(void) {
    test_errors_without_a_node();
    test_two_nodes();
    return finish("c api");
}
