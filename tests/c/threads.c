/* One node used from many threads at once, as a C server would: three
 * threads send to one peer (one a call and in batches), two threads of the
 * peer receive (one a call and in batches), and a third thread frees what
 * they received (one by one and in batches). Every message arrives once,
 * each receiver sees each sender's messages in order, every payload is
 * intact until the other thread frees it, and the counters agree. Over TCP,
 * then between two mock servers. Run under valgrind by the suite: no
 * memory error, nothing leaked. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "test_api.h"

enum {
    SENDERS = 3,
    PER_SENDER = 2000,
    TOTAL = SENDERS * PER_SENDER,
    SEND_BATCH = 10,
    RECV_BATCH = 32,
    FREE_BATCH = 16,
    HANDOFF = 256,
    DEADLINE_S = 60,
    /* A send waits this long for room at most: a run whose receivers
     * stopped fails its checks and ends, never hangs. */
    SEND_TIMEOUT_MS = 10000,
};

static cluster_node_t *a, *b;
static atomic_int seen[SENDERS][PER_SENDER]; /* times each message arrived */
static atomic_int received, freed, bad_payloads, out_of_order;
static struct timespec started;

/* Clears the counts of the previous run. */
static void reset(void) {
    for (int s = 0; s < SENDERS; s++)
        for (int i = 0; i < PER_SENDER; i++) atomic_store(&seen[s][i], 0);
    atomic_store(&received, 0);
    atomic_store(&freed, 0);
    atomic_store(&bad_payloads, 0);
    atomic_store(&out_of_order, 0);
    clock_gettime(CLOCK_MONOTONIC, &started);
}

/* The payload of message `seq` of sender `s`. */
static size_t payload(char *buf, size_t cap, int s, int seq) {
    return (size_t)snprintf(buf, cap, "t%d-%06d", s, seq);
}

static int past_deadline(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec - started.tv_sec > DEADLINE_S;
}

/* ---------- the hand-off from the receiving threads to the freeing one */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    cluster_envelope_t ring[HANDOFF];
    size_t head, len;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}, 0, 0};

/* Waits on the hand-off's condition for up to 100 ms (q.mu held). */
static void wait_a_moment(void) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&q.changed, &q.mu, &until);
}

/* Queues `env` for the freeing thread; past the deadline (that thread has
 * stopped) frees it here instead. */
static void hand_over(cluster_envelope_t *env) {
    pthread_mutex_lock(&q.mu);
    while (q.len == HANDOFF && !past_deadline()) wait_a_moment();
    if (q.len == HANDOFF) {
        pthread_mutex_unlock(&q.mu);
        cluster_envelope_free(env);
        return;
    }
    q.ring[(q.head + q.len) % HANDOFF] = *env;
    q.len++;
    pthread_cond_broadcast(&q.changed);
    pthread_mutex_unlock(&q.mu);
}

/* Takes up to `cap` envelopes, waiting up to 100 ms for the first. */
static size_t take_over(cluster_envelope_t *out, size_t cap) {
    pthread_mutex_lock(&q.mu);
    if (q.len == 0) wait_a_moment();
    size_t n = 0;
    for (; n < cap && q.len > 0; n++, q.len--, q.head = (q.head + 1) % HANDOFF)
        out[n] = q.ring[q.head];
    pthread_cond_broadcast(&q.changed);
    pthread_mutex_unlock(&q.mu);
    return n;
}

/* ---------- the threads */

static void *send_thread(void *arg) {
    int s = (int)(intptr_t)arg;
    static char text[SENDERS][SEND_BATCH][16];
    cluster_envelope_t envs[SEND_BATCH];
    cluster_error_t err;
    for (int seq = 0; seq < PER_SENDER;) {
        int k = s % 2 == 0 ? 1 : SEND_BATCH; /* even: one a call, odd: batches */
        for (int i = 0; i < k; i++) {
            size_t len = payload(text[s][i], sizeof text[s][i], s, seq + i);
            cluster_envelope_t e = {2, (int64_t)s * PER_SENDER + seq + i, 0,
                                    (const uint8_t *)text[s][i], len, NULL};
            envs[i] = e;
        }
        size_t sent = 0;
        int rc = k == 1 ? cluster_send(a, &envs[0], SEND_TIMEOUT_MS, &err)
                        : cluster_send_batch(a, envs, (size_t)k, SEND_TIMEOUT_MS, &sent, &err);
        CHECK_RC(CLUSTER_OK, rc, err);
        if (rc != CLUSTER_OK) return NULL;
        seq += k;
    }
    return NULL;
}

/* Records one received envelope (`last`: this receiver's last seq per
 * sender) and hands it to the freeing thread. */
static void got_one(cluster_envelope_t *env, int *last) {
    int s = (int)(env->msg_id / PER_SENDER), seq = (int)(env->msg_id % PER_SENDER);
    if (env->pid != 1 || s < 0 || s >= SENDERS) {
        atomic_fetch_add(&bad_payloads, 1);
    } else {
        if (seq <= last[s]) atomic_fetch_add(&out_of_order, 1);
        last[s] = seq;
        atomic_fetch_add(&seen[s][seq], 1);
    }
    atomic_fetch_add(&received, 1);
    hand_over(env);
}

static void *recv_thread(void *arg) {
    int batched = (int)(intptr_t)arg;
    int last[SENDERS] = {-1, -1, -1};
    cluster_envelope_t envs[RECV_BATCH];
    cluster_error_t err;
    while (atomic_load(&received) < TOTAL && !past_deadline()) {
        size_t n = 0;
        int rc = batched ? cluster_recv_batch(b, envs, RECV_BATCH, &n, 100, &err)
                         : cluster_recv(b, &envs[0], 100, &err);
        if (rc == CLUSTER_E_TIMEOUT) continue;
        CHECK_RC(CLUSTER_OK, rc, err);
        if (rc != CLUSTER_OK) break;
        if (!batched) n = 1;
        for (size_t i = 0; i < n; i++) got_one(&envs[i], last);
    }
    return NULL;
}

static void *free_thread(void *arg) {
    (void)arg;
    cluster_envelope_t envs[FREE_BATCH];
    int round = 0;
    while (atomic_load(&freed) < TOTAL && !past_deadline()) {
        size_t n = take_over(envs, FREE_BATCH);
        for (size_t i = 0; i < n; i++) {
            char want[16];
            int s = (int)(envs[i].msg_id / PER_SENDER), seq = (int)(envs[i].msg_id % PER_SENDER);
            size_t len = payload(want, sizeof want, s, seq);
            if (envs[i].len != len || memcmp(envs[i].data, want, len) != 0)
                atomic_fetch_add(&bad_payloads, 1);
        }
        if (round++ % 2 == 0) {
            cluster_envelopes_free(envs, n);
        } else {
            for (size_t i = n; i-- > 0;) cluster_envelope_free(&envs[i]); /* last first */
        }
        atomic_fetch_add(&freed, (int)n);
    }
    return NULL;
}

/* Runs the workload from a (id 1) to b (id 2), and checks it. */
static void run(void) {
    cluster_error_t err;
    reset();
    pthread_t senders[SENDERS], receivers[2], freer;
    pthread_create(&freer, NULL, free_thread, NULL);
    for (int r = 0; r < 2; r++)
        pthread_create(&receivers[r], NULL, recv_thread, (void *)(intptr_t)r);
    for (int s = 0; s < SENDERS; s++)
        pthread_create(&senders[s], NULL, send_thread, (void *)(intptr_t)s);
    for (int s = 0; s < SENDERS; s++) pthread_join(senders[s], NULL);
    for (int r = 0; r < 2; r++) pthread_join(receivers[r], NULL);
    pthread_join(freer, NULL);

    CHECK(atomic_load(&received) == TOTAL);
    CHECK(atomic_load(&freed) == TOTAL);
    CHECK(atomic_load(&bad_payloads) == 0);
    CHECK(atomic_load(&out_of_order) == 0);
    int once = 0;
    for (int s = 0; s < SENDERS; s++)
        for (int i = 0; i < PER_SENDER; i++) once += atomic_load(&seen[s][i]) == 1;
    CHECK(once == TOTAL);
    CHECK(node_stat(a, "sent") == TOTAL);
    CHECK(node_stat(b, "delivered") == TOTAL);
    cluster_envelope_t none;
    CHECK_RC(CLUSTER_E_TIMEOUT, cluster_recv(b, &none, 0, &err), err);
}

int main(void) {
    char cfg[512];
    cluster_error_t err;
    make_config(cfg, sizeof cfg, 2, "");
    CHECK_RC(CLUSTER_OK, cluster_new(1, cfg, &a, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_new(2, cfg, &b, &err), err);
    if (a && b) run();
    cluster_free(a);
    cluster_free(b);

    cluster_mock_t *mock = NULL;
    CHECK_RC(CLUSTER_OK, cluster_mock_new(NULL, 1, &mock, &err), err);
    a = b = NULL;
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 1, &a, &err), err);
    CHECK_RC(CLUSTER_OK, cluster_mock_add_server(mock, 2, &b, &err), err);
    if (a && b) run();
    cluster_free(a);
    cluster_free(b);
    cluster_mock_free(mock);
    return finish("threads");
}
