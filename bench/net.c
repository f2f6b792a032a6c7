/* One node interface over libcluster (per call and batched), libzmq (per
 * call) and plain TCP. */
#define _GNU_SOURCE
#include "bench.h"

#include <cluster.h>
#include <zmq.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Per-connection buffer of the plain TCP floor (frames up to 64 KiB fit). */
#define TCP_BUF (256 << 10)

/* The batched sender's payload slots: up to SEND_BATCH messages or this
 * many bytes, whichever comes first (one message may be larger). */
#define ARENA_BYTES (1 << 20)

struct node {
    impl_t impl;
    int me, n;
    /* the per-call columns' node_msg buffer */
    uint8_t *scratch;
    size_t scratch_cap;
    /* libcluster, per call: the envelope of the last cluster_recv */
    cluster_node_t *cn;
    cluster_envelope_t env;
    /* libcluster, batched: what cluster_recv_batch filled, the pending
     * envelopes of cluster_send_batch and the slots their payloads lie in */
    cluster_envelope_t envs[RECV_BATCH];
    size_t nenvs;
    cluster_envelope_t pend[SEND_BATCH];
    size_t npend;
    uint8_t *arena;
    size_t arena_cap, arena_used;
    /* libzmq: one message, reused by every zmq_msg_recv */
    void *ctx, *pull, *pair;
    void *push[MAX_NODES];
    zmq_msg_t zmsg;
    /* plain TCP */
    int out[MAX_NODES], in[MAX_NODES];
    uint8_t *wbuf[MAX_NODES], *rbuf[MAX_NODES];
    size_t wlen[MAX_NODES], rpos[MAX_NODES], rend[MAX_NODES];
    int rr;
};

/* The secure table (driver --secure): the cluster columns run with a
 * shared Secret (every frame and ack encrypted), libzmq with CURVE (keys
 * from the driver, in BENCH_CURVE_*), and the tcp column is replaced by
 * cluster per call without a secret, for the cost of encryption. */
int bench_secure(void) {
    const char *s = getenv("BENCH_SECURE");
    return s && !strcmp(s, "1");
}

static const char *curve_key(const char *name) {
    const char *k = getenv(name);
    if (!k || strlen(k) != 40)
        die("secure bench: %s is not set (the driver sets it)", name);
    return k;
}

/* ---------- libcluster ---------- */

static int connected_peers(cluster_node_t *cn) {
    char *json = NULL;
    cluster_error_t err;
    if (cluster_stats(cn, &json, &err) != CLUSTER_OK)
        die("cluster_stats: %s", err.message);
    int k = 0;
    for (const char *p = json; (p = strstr(p, "\"connected\":true")) != NULL; p++)
        k++;
    cluster_string_free(json);
    return k;
}

static void cl_open(node_t *nd, const int *ports, int secret) {
    char cfg[2048];
    int off = snprintf(cfg, sizeof cfg, "{\"Peers\":[");
    for (int i = 0; i < nd->n; i++)
        off += snprintf(cfg + off, sizeof cfg - (size_t)off, "%s{\"Id\":%d,\"Address\":\"127.0.0.1:%d\"}",
                        i ? "," : "", i + 1, ports[i]);
    snprintf(cfg + off, sizeof cfg - (size_t)off,
             "],\"InboxSize\":1000,\"OutboxSize\":1000,\"CloseLingerMs\":10000%s}",
             secret ? ",\"Secret\":\"the bench's shared secret\"" : "");
    cluster_error_t err;
    if (cluster_new(nd->me + 1, cfg, &nd->cn, &err) != CLUSTER_OK)
        die("cluster_new: %s", err.message);
    uint64_t deadline = now_ns() + 20000000000ull;
    while (connected_peers(nd->cn) < nd->n - 1) {
        if (now_ns() > deadline)
            die("cluster node %d: peers not connected after 20 s", nd->me);
        usleep(2000);
    }
}

/* One cluster_send per message. */
static int cl_send(node_t *nd, int peer, const void *buf, size_t len, int64_t timeout_ms) {
    cluster_envelope_t e = {.pid = peer < 0 ? CLUSTER_BROADCAST : peer + 1,
                            .msg_id = 0,
                            .kind = 0,
                            .data = buf,
                            .len = len,
                            ._owner = NULL};
    cluster_error_t err;
    int rc = cluster_send(nd->cn, &e, timeout_ms, &err);
    if (rc == CLUSTER_E_FULL && timeout_ms == 0)
        return 0;
    if (rc != CLUSTER_OK)
        die("cluster_send: %s", err.message);
    return 1;
}

/* One cluster_recv per message; the previous one is freed first. */
static size_t cl_recv(node_t *nd, msg_t *out) {
    cluster_error_t err;
    cluster_envelope_free(&nd->env);
    if (cluster_recv(nd->cn, &nd->env, -1, &err) != CLUSTER_OK)
        die("cluster_recv: %s", err.message);
    out[0] = (msg_t){nd->env.data, nd->env.len};
    return 1;
}

/* The pending envelopes in one cluster_send_batch call. */
static void bt_flush(node_t *nd) {
    cluster_error_t err;
    size_t sent = 0;
    if (nd->npend && cluster_send_batch(nd->cn, nd->pend, nd->npend, -1, &sent, &err) != CLUSTER_OK)
        die("cluster_send_batch: %s (%zu of %zu sent)", err.message, sent, nd->npend);
    nd->npend = 0;
    nd->arena_used = 0;
}

static void *bt_msg(node_t *nd, size_t len) {
    size_t need = (len + 7) & ~(size_t)7;
    if (nd->arena_used + need > nd->arena_cap)
        bt_flush(nd);
    if (need > nd->arena_cap) {
        free(nd->arena);
        nd->arena = calloc(1, need);
        nd->arena_cap = need;
    }
    void *p = nd->arena + nd->arena_used;
    nd->arena_used += need;
    return p;
}

static void bt_send(node_t *nd, int peer, const void *buf, size_t len) {
    nd->pend[nd->npend++] = (cluster_envelope_t){
        .pid = peer < 0 ? CLUSTER_BROADCAST : peer + 1, .data = buf, .len = len, ._owner = NULL};
    if (nd->npend == SEND_BATCH)
        bt_flush(nd);
}

/* One cluster_recv_batch (up to `cap`); the previous batch is freed first. */
static size_t bt_recv(node_t *nd, msg_t *out, size_t cap) {
    cluster_envelopes_free(nd->envs, nd->nenvs);
    nd->nenvs = 0;
    cluster_error_t err;
    if (cap > RECV_BATCH)
        cap = RECV_BATCH;
    if (cluster_recv_batch(nd->cn, nd->envs, cap, &nd->nenvs, -1, &err) != CLUSTER_OK)
        die("cluster_recv_batch: %s", err.message);
    for (size_t i = 0; i < nd->nenvs; i++)
        out[i] = (msg_t){nd->envs[i].data, nd->envs[i].len};
    return nd->nenvs;
}

/* ---------- libzmq ---------- */

/* Makes `s` a CURVE server (the binding side) or client. */
static void zcurve(void *s, int bind) {
    int rc = 0, one = 1;
    if (bind) {
        rc |= zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
        rc |= zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve_key("BENCH_CURVE_SERVER_SECRET"), 40);
    } else {
        rc |= zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, curve_key("BENCH_CURVE_SERVER_PUBLIC"), 40);
        rc |= zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, curve_key("BENCH_CURVE_CLIENT_PUBLIC"), 40);
        rc |= zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve_key("BENCH_CURVE_CLIENT_SECRET"), 40);
    }
    if (rc != 0)
        die("zmq CURVE options: %s", zmq_strerror(zmq_errno()));
}

static void *zsock(node_t *nd, int type, int port, int bind) {
    void *s = zmq_socket(nd->ctx, type);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    if (s && bench_secure())
        zcurve(s, bind);
    if (!s || (bind ? zmq_bind(s, ep) : zmq_connect(s, ep)) != 0)
        die("zmq %s %s: %s", bind ? "bind" : "connect", ep, zmq_strerror(zmq_errno()));
    return s;
}

static void zq_open(node_t *nd, const int *ports, int flags) {
    nd->ctx = zmq_ctx_new();
    zmq_msg_init(&nd->zmsg);
    if (flags & NODE_PAIR) {
        nd->pair = zsock(nd, ZMQ_PAIR, ports[0], nd->me == 0);
        return;
    }
    nd->pull = zsock(nd, ZMQ_PULL, ports[nd->me], 1);
    for (int p = 0; p < nd->n; p++)
        if (p != nd->me)
            nd->push[p] = zsock(nd, ZMQ_PUSH, ports[p], 0);
}

static int zq_send1(node_t *nd, int peer, const void *buf, size_t len, int flags) {
    void *s = nd->pair ? nd->pair : nd->push[peer];
    for (;;) {
        if (zmq_send(s, buf, len, flags) >= 0)
            return 1;
        if (zmq_errno() == EAGAIN && (flags & ZMQ_DONTWAIT))
            return 0;
        if (zmq_errno() != EINTR)
            die("zmq_send: %s", zmq_strerror(zmq_errno()));
    }
}

static int zq_send(node_t *nd, int peer, const void *buf, size_t len, int flags) {
    if (peer >= 0)
        return zq_send1(nd, peer, buf, len, flags);
    int ok = 1;
    for (int p = 0; p < nd->n; p++)
        if (p != nd->me)
            ok &= zq_send1(nd, p, buf, len, flags);
    return ok;
}

/* One blocking zmq_msg_recv per message (it releases the previous one). */
static size_t zq_recv(node_t *nd, msg_t *out) {
    void *s = nd->pair ? nd->pair : nd->pull;
    while (zmq_msg_recv(&nd->zmsg, s, 0) < 0)
        if (zmq_errno() != EINTR)
            die("zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
    out[0] = (msg_t){zmq_msg_data(&nd->zmsg), zmq_msg_size(&nd->zmsg)};
    return 1;
}

static void zq_close(node_t *nd) {
    zmq_msg_close(&nd->zmsg);
    if (nd->pair)
        zmq_close(nd->pair);
    if (nd->pull)
        zmq_close(nd->pull);
    for (int p = 0; p < nd->n; p++)
        if (nd->push[p])
            zmq_close(nd->push[p]);
    zmq_ctx_term(nd->ctx);
}

/* ---------- plain TCP, frames of [u32 length][payload] ---------- */

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void write_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("tcp write: %s", strerror(errno));
        p += k;
        len -= (size_t)k;
    }
}

static void read_all(int fd, void *buf, size_t len) {
    uint8_t *p = buf;
    while (len) {
        ssize_t k = read(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("tcp read: %s", k ? strerror(errno) : "connection closed");
        p += k;
        len -= (size_t)k;
    }
}

static void tcp_open(node_t *nd, const int *ports) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = loopback(ports[nd->me]);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 64) != 0)
        die("tcp listen on %d: %s", ports[nd->me], strerror(errno));
    for (int p = 0; p < nd->n; p++) {
        nd->out[p] = nd->in[p] = -1;
        if (p == nd->me)
            continue;
        uint64_t deadline = now_ns() + 20000000000ull;
        for (;;) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in to = loopback(ports[p]);
            if (connect(fd, (struct sockaddr *)&to, sizeof to) == 0) {
                nd->out[p] = fd;
                break;
            }
            close(fd);
            if (now_ns() > deadline)
                die("tcp connect to %d: %s", ports[p], strerror(errno));
            usleep(2000);
        }
        nodelay(nd->out[p]);
        int32_t hello = nd->me;
        write_all(nd->out[p], &hello, sizeof hello);
        nd->wbuf[p] = malloc(TCP_BUF);
    }
    for (int k = 0; k < nd->n - 1; k++) {
        int fd = accept(lfd, NULL, NULL);
        int32_t from;
        if (fd < 0)
            die("tcp accept: %s", strerror(errno));
        read_all(fd, &from, sizeof from);
        if (from < 0 || from >= nd->n || from == nd->me || nd->in[from] >= 0)
            die("tcp: bad hello %d", from);
        nodelay(fd);
        nd->in[from] = fd;
        nd->rbuf[from] = malloc(TCP_BUF);
    }
    close(lfd);
}

static void tcp_flush1(node_t *nd, int p) {
    write_all(nd->out[p], nd->wbuf[p], nd->wlen[p]);
    nd->wlen[p] = 0;
}

static void tcp_send1(node_t *nd, int p, const void *buf, size_t len) {
    uint32_t h = (uint32_t)len;
    if (nd->wlen[p] + 4 + len > TCP_BUF)
        tcp_flush1(nd, p);
    if (4 + len > TCP_BUF) {
        write_all(nd->out[p], &h, 4);
        write_all(nd->out[p], buf, len);
        return;
    }
    memcpy(nd->wbuf[p] + nd->wlen[p], &h, 4);
    memcpy(nd->wbuf[p] + nd->wlen[p] + 4, buf, len);
    nd->wlen[p] += 4 + len;
}

/* Accepts the frame if it fits in the buffer after a non-blocking write. */
static int tcp_try_send1(node_t *nd, int p, const void *buf, size_t len) {
    if (nd->wlen[p] + 4 + len > TCP_BUF) {
        ssize_t k = send(nd->out[p], nd->wbuf[p], nd->wlen[p], MSG_DONTWAIT);
        if (k < 0 && errno != EAGAIN && errno != EINTR)
            die("tcp send: %s", strerror(errno));
        if (k > 0) {
            memmove(nd->wbuf[p], nd->wbuf[p] + k, nd->wlen[p] - (size_t)k);
            nd->wlen[p] -= (size_t)k;
        }
        if (nd->wlen[p] + 4 + len > TCP_BUF)
            return 0;
    }
    tcp_send1(nd, p, buf, len);
    return 1;
}

/* Frames complete in connection p's buffer, up to cap. */
static size_t tcp_parse(node_t *nd, int p, msg_t *out, size_t cap) {
    size_t k = 0;
    while (k < cap && nd->rend[p] - nd->rpos[p] >= 4) {
        uint32_t len;
        memcpy(&len, nd->rbuf[p] + nd->rpos[p], 4);
        if (nd->rend[p] - nd->rpos[p] < 4 + (size_t)len)
            break;
        out[k++] = (msg_t){nd->rbuf[p] + nd->rpos[p] + 4, len};
        nd->rpos[p] += 4 + len;
    }
    return k;
}

static size_t tcp_recv(node_t *nd, msg_t *out, size_t cap) {
    for (;;) {
        for (int i = 0; i < nd->n; i++) {
            int p = (nd->rr + i) % nd->n;
            if (nd->in[p] < 0)
                continue;
            size_t k = tcp_parse(nd, p, out, cap);
            if (k) {
                nd->rr = p + 1;
                return k;
            }
        }
        struct pollfd pf[MAX_NODES];
        int map[MAX_NODES], np = 0;
        for (int p = 0; p < nd->n; p++)
            if (nd->in[p] >= 0) {
                pf[np] = (struct pollfd){.fd = nd->in[p], .events = POLLIN};
                map[np++] = p;
            }
        if (poll(pf, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        for (int i = 0; i < np; i++) {
            if (!pf[i].revents)
                continue;
            int p = map[i];
            /* Earlier frames were handed out by the previous call: drop them. */
            memmove(nd->rbuf[p], nd->rbuf[p] + nd->rpos[p], nd->rend[p] - nd->rpos[p]);
            nd->rend[p] -= nd->rpos[p];
            nd->rpos[p] = 0;
            ssize_t k = read(nd->in[p], nd->rbuf[p] + nd->rend[p], TCP_BUF - nd->rend[p]);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                die("tcp read: %s", k ? strerror(errno) : "connection closed");
            nd->rend[p] += (size_t)k;
        }
    }
}

static void tcp_close(node_t *nd) {
    for (int p = 0; p < nd->n; p++) {
        if (nd->out[p] >= 0) {
            if (nd->wlen[p])
                tcp_flush1(nd, p);
            close(nd->out[p]);
        }
        if (nd->in[p] >= 0)
            close(nd->in[p]);
        free(nd->wbuf[p]);
        free(nd->rbuf[p]);
    }
}

/* ---------- the interface ---------- */

node_t *node_open(impl_t impl, int me, int n, const int *ports, int flags) {
    if (n < 2 || n > MAX_NODES || me < 0 || me >= n)
        die("node_open: bad topology %d of %d", me, n);
    node_t *nd = calloc(1, sizeof *nd);
    nd->impl = impl;
    nd->me = me;
    nd->n = n;
    if (impl == IMPL_TCP && bench_secure()) {
        /* The secure table's reference column: cluster per call, no secret. */
        nd->impl = IMPL_CLUSTER;
        cl_open(nd, ports, 0);
        return nd;
    }
    switch (impl) {
    case IMPL_CLUSTER: cl_open(nd, ports, bench_secure()); break;
    case IMPL_BATCH:
        cl_open(nd, ports, bench_secure());
        nd->arena_cap = ARENA_BYTES;
        nd->arena = calloc(1, nd->arena_cap);
        break;
    case IMPL_ZMQ: zq_open(nd, ports, flags); break;
    default: tcp_open(nd, ports); break;
    }
    return nd;
}

void *node_msg(node_t *nd, size_t len) {
    if (nd->impl == IMPL_BATCH)
        return bt_msg(nd, len);
    if (len > nd->scratch_cap) {
        free(nd->scratch);
        nd->scratch = calloc(1, len);
        nd->scratch_cap = len;
    }
    return nd->scratch;
}

static int send_any(node_t *nd, int peer, const void *buf, size_t len, int wait) {
    switch (nd->impl) {
    case IMPL_CLUSTER: return cl_send(nd, peer, buf, len, wait ? -1 : 0);
    case IMPL_BATCH:
        if (!wait)
            die("the batched column offers no message without waiting");
        bt_send(nd, peer, buf, len);
        return 1;
    case IMPL_ZMQ: return zq_send(nd, peer, buf, len, wait ? 0 : ZMQ_DONTWAIT);
    default: break;
    }
    int ok = 1;
    for (int p = 0; p < nd->n; p++) {
        if (p == nd->me || (peer >= 0 && p != peer))
            continue;
        if (wait)
            tcp_send1(nd, p, buf, len);
        else
            ok &= tcp_try_send1(nd, p, buf, len);
    }
    return ok;
}

void node_send(node_t *nd, int peer, const void *buf, size_t len) {
    send_any(nd, peer, buf, len, 1);
}

int node_try_send(node_t *nd, int peer, const void *buf, size_t len) {
    return send_any(nd, peer, buf, len, 0);
}

void node_flush(node_t *nd) {
    if (nd->impl == IMPL_BATCH)
        bt_flush(nd);
    if (nd->impl != IMPL_TCP)
        return;
    for (int p = 0; p < nd->n; p++)
        if (nd->out[p] >= 0 && nd->wlen[p])
            tcp_flush1(nd, p);
}

size_t node_recv(node_t *nd, msg_t *out, size_t cap) {
    switch (nd->impl) {
    case IMPL_CLUSTER: return cl_recv(nd, out);
    case IMPL_BATCH: return bt_recv(nd, out, cap);
    case IMPL_ZMQ: return zq_recv(nd, out);
    default: return tcp_recv(nd, out, cap);
    }
}

void node_close(node_t *nd) {
    switch (nd->impl) {
    case IMPL_CLUSTER:
    case IMPL_BATCH:
        bt_flush(nd);
        cluster_envelope_free(&nd->env);
        cluster_envelopes_free(nd->envs, nd->nenvs);
        cluster_free(nd->cn);
        break;
    case IMPL_ZMQ: zq_close(nd); break;
    default: tcp_close(nd); break;
    }
    free(nd->scratch);
    free(nd->arena);
    free(nd);
}
