/* The child processes: one role of one workload each. They talk to the
 * driver in lines: the child says "ready" once connected, waits for "go",
 * works, says "result <numbers>" (or "fail <why>"), and exits on "quit".
 * Payloads carry [u64 sequence][u64 sender] so receivers check loss and
 * order. */
#define _GNU_SOURCE
#include "bench.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Round trips before the measured ones. */
#define PP_WARMUP 300
/* The smallest payload: room for the sequence and the sender. */
#define MIN_SIZE 16
/* How long the idle node is watched. */
#define IDLE_WINDOW_US 1000000

typedef struct {
    node_t *nd;
    int me, n;
    size_t size;
    long count;
    long baseline_kib;
} ctx_t;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* Waits for the driver's next line; returns it without the newline. */
static char *hear(char *buf, size_t cap) {
    if (!fgets(buf, (int)cap, stdin))
        exit(1); /* the driver is gone */
    buf[strcspn(buf, "\n")] = 0;
    return buf;
}

static void expect(const char *word) {
    char line[256];
    if (strcmp(hear(line, sizeof line), word) != 0)
        die("expected \"%s\", got \"%s\"", word, line);
}

static double peak_mib(const ctx_t *c) { return (double)(status_kib("VmHWM:") - c->baseline_kib) / 1024.0; }

/* Unicast throughput: node 0 sends, node 1 counts. */
static void role_thr(ctx_t *c) {
    msg_t m[RECV_BATCH];
    expect("go");
    if (c->me == 0) {
        for (long i = 0; i < c->count; i++) {
            uint8_t *buf = node_msg(c->nd, c->size);
            put_u64(buf, (uint64_t)i);
            node_send(c->nd, 1, buf, c->size);
        }
        node_flush(c->nd);
        say("result 0");
        return;
    }
    long got = 0, first = 0;
    uint64_t t0 = 0, t1 = 0;
    while (got < c->count) {
        size_t k = node_recv(c->nd, m, RECV_BATCH);
        for (size_t i = 0; i < k; i++) {
            if (m[i].len != c->size || get_u64(m[i].data) != (uint64_t)got) {
                say("fail message %ld: len %zu seq %llu", got, m[i].len,
                    (unsigned long long)get_u64(m[i].data));
                return;
            }
            got++;
        }
        /* The clock is read at the first message and after the last only:
         * a read per call would cost the per-call columns ~20 ns a message. */
        if (!t0) {
            t0 = now_ns();
            first = got;
        }
    }
    t1 = now_ns();
    double secs = (double)(t1 - t0) / 1e9, rate = (double)(got - first) / secs;
    say("result %.1f %.3f", rate, rate * (double)c->size / 1e6);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Ping-pong: node 0 times round trips, node 1 echoes. */
static void role_pp(ctx_t *c) {
    msg_t m[1];
    long total = c->count + PP_WARMUP;
    expect("go");
    if (c->me == 1) {
        for (long i = 0; i < total; i++) {
            node_recv(c->nd, m, 1);
            node_send(c->nd, 0, m[0].data, m[0].len);
            node_flush(c->nd);
        }
        say("result 0");
        return;
    }
    double *rtt = malloc(sizeof(double) * (size_t)c->count), sum = 0;
    for (long i = 0; i < total; i++) {
        uint8_t *buf = node_msg(c->nd, c->size);
        put_u64(buf, (uint64_t)i);
        uint64_t t = now_ns();
        node_send(c->nd, 1, buf, c->size);
        node_flush(c->nd);
        node_recv(c->nd, m, 1);
        double us = (double)(now_ns() - t) / 1e3;
        if (m[0].len != c->size || get_u64(m[0].data) != (uint64_t)i) {
            say("fail round trip %ld came back wrong", i);
            return;
        }
        if (i >= PP_WARMUP) {
            rtt[i - PP_WARMUP] = us;
            sum += us;
        }
    }
    qsort(rtt, (size_t)c->count, sizeof *rtt, cmp_double);
    say("result %.2f %.2f %.2f", rtt[c->count / 2], rtt[c->count * 99 / 100], sum / (double)c->count);
    free(rtt);
}

/* Over every thread but the calling one (the library's threads, and
 * libzmq's): CPU time in ns (first field of schedstat) and context
 * switches (voluntary and not), i.e. how often they woke up. */
static void other_threads(uint64_t *cpu_ns, uint64_t *switches) {
    char path[300], line[256];
    *cpu_ns = *switches = 0;
    pid_t self = (pid_t)syscall(SYS_gettid);
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(line, sizeof line, f))
            *cpu_ns += strtoull(line, NULL, 10);
        if (f)
            fclose(f);
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, "ctxt_switches:"))
                *switches += strtoull(strchr(line, ':') + 1, NULL, 10);
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
}

typedef struct {
    ctx_t *c;
    uint64_t last_ns;
    char fail[160];
} bcast_rx_t;

static void *bcast_receiver(void *arg) {
    bcast_rx_t *rx = arg;
    ctx_t *c = rx->c;
    uint64_t next[MAX_NODES] = {0};
    long want = (long)(c->n - 1) * c->count, got = 0;
    msg_t m[RECV_BATCH];
    while (got < want) {
        size_t k = node_recv(c->nd, m, RECV_BATCH);
        for (size_t i = 0; i < k; i++) {
            uint64_t seq = get_u64(m[i].data), from = get_u64(m[i].data + 8);
            if (m[i].len != c->size || from >= (uint64_t)c->n || (int)from == c->me || seq != next[from]) {
                snprintf(rx->fail, sizeof rx->fail, "fail node %d: bad message from %llu seq %llu", c->me,
                         (unsigned long long)from, (unsigned long long)seq);
                return NULL;
            }
            next[from]++;
        }
        got += (long)k;
    }
    rx->last_ns = now_ns();
    return NULL;
}

/* Every node broadcasts `count` messages and receives everyone else's.
 * With `idle`, reports the RSS above baseline once everyone is done. */
static void role_bcast(ctx_t *c, int idle) {
    bcast_rx_t rx = {.c = c};
    pthread_t th;
    expect("go");
    uint64_t t_go = now_ns();
    pthread_create(&th, NULL, bcast_receiver, &rx);
    for (long i = 0; i < c->count; i++) {
        uint8_t *buf = node_msg(c->nd, c->size);
        put_u64(buf, (uint64_t)i);
        put_u64(buf + 8, (uint64_t)c->me);
        node_send(c->nd, -1, buf, c->size);
    }
    node_flush(c->nd);
    pthread_join(th, NULL);
    if (rx.fail[0]) {
        say("%s", rx.fail);
        return;
    }
    if (!idle) {
        say("result %llu %llu", (unsigned long long)t_go, (unsigned long long)rx.last_ns);
        return;
    }
    say("done");
    expect("measure");
    usleep(200000); /* let the writers go idle before sampling */
    uint64_t cpu0, sw0, cpu1, sw1, t0 = now_ns();
    other_threads(&cpu0, &sw0);
    usleep(IDLE_WINDOW_US);
    other_threads(&cpu1, &sw1);
    double secs = (double)(now_ns() - t0) / 1e9;
    say("result %.3f %.4f %.1f", (double)(status_kib("VmRSS:") - c->baseline_kib) / 1024.0,
        (double)(cpu1 - cpu0) / 1e6 / secs, (double)(sw1 - sw0) / secs);
}

/* Slow consumer: node 0 offers `count` messages without waiting while node 1
 * reads nothing; then node 1 drains what was accepted. */
static void role_slow(ctx_t *c) {
    char line[256];
    msg_t m[RECV_BATCH];
    expect("go");
    if (c->me == 0) {
        long accepted = 0;
        for (long i = 0; i < c->count; i++) {
            uint8_t *buf = node_msg(c->nd, c->size);
            put_u64(buf, (uint64_t)i);
            accepted += node_try_send(c->nd, 1, buf, c->size);
        }
        say("result %ld %.3f", accepted, peak_mib(c));
        node_flush(c->nd);
        return;
    }
    long want = atol(hear(line, sizeof line) + strlen("drain ")), got = 0;
    uint64_t next = 0;
    while (got < want) {
        size_t k = node_recv(c->nd, m, RECV_BATCH);
        for (size_t i = 0; i < k; i++) {
            uint64_t seq = get_u64(m[i].data);
            if (m[i].len != c->size || seq < next) {
                say("fail message %ld: seq %llu after %llu", got, (unsigned long long)seq,
                    (unsigned long long)next);
                return;
            }
            next = seq + 1;
        }
        got += (long)k;
    }
    say("result %ld %.3f", got, peak_mib(c));
}

int child_main(int argc, char **argv) {
    if (argc != 8)
        die("usage: bench ROLE IMPL ME N PORTS SIZE COUNT");
    ctx_t c = {.baseline_kib = status_kib("VmRSS:")};
    const char *role = argv[1];
    int impl = impl_parse(argv[2]), ports[MAX_NODES];
    c.me = atoi(argv[3]);
    c.n = atoi(argv[4]);
    char *p = argv[5];
    for (int i = 0; i < c.n && i < MAX_NODES; i++)
        ports[i] = (int)strtol(p, &p, 10), p += *p == ',';
    c.size = (size_t)atol(argv[6]);
    c.count = atol(argv[7]);
    if (impl < 0 || c.size < MIN_SIZE || c.count < 1)
        die("bad arguments");
    int pair = !strcmp(role, "pp") ? NODE_PAIR : 0;
    c.nd = node_open((impl_t)impl, c.me, c.n, ports, pair);
    say("ready");
    if (!strcmp(role, "thr"))
        role_thr(&c);
    else if (!strcmp(role, "pp"))
        role_pp(&c);
    else if (!strcmp(role, "bcast"))
        role_bcast(&c, 0);
    else if (!strcmp(role, "idle"))
        role_bcast(&c, 1);
    else if (!strcmp(role, "slow"))
        role_slow(&c);
    else
        die("unknown role %s", role);
    expect("quit");
    node_close(c.nd);
    return 0;
}
