/* Cost as the cluster grows: N libcluster nodes, all broadcasting, for
 * several N. Each child process hosts K of the nodes (K = 1 while processes
 * fit the machine; more nodes per process beyond that, each node with its
 * own receive and send thread). Measured per N: deliveries/s, library
 * threads per node, RSS per node, and the time from the first cluster_new
 * until every node's stats show every peer connected.
 *
 * Child protocol: "ready" (baseline sampled) <- "start" -> creates its nodes,
 * "result t_first t_connected" <- "measure" -> "result threads/node
 * KiB/node" <- "go" -> "result t_go t_last KiB/node" <- "quit". Any wait
 * that runs out is a "fail ..." line, never a hang. */
#define _GNU_SOURCE
#include "bench.h"

#include <cluster.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Most nodes in the table. */
#define GROW_MAX_NODES 128
/* How long a child waits for its nodes to connect. */
#define CONNECT_TIMEOUT_NS 40000000000ull
/* How long a receiver waits for all its messages after "go". */
#define DELIVER_TIMEOUT_NS 40000000000ull
/* How long one cluster_send may wait for room in a peer's queue. */
#define SEND_TIMEOUT_MS 10000
/* Deliveries one run aims at, spread over the N·(N-1) pairs (each node
 * sends at least GROW_MIN_COUNT messages). */
#define GROW_DELIVERIES 1000000.0
#define GROW_MIN_COUNT 200
#define GROW_SIZE 64
/* Runs per size: at most this many (the table stays near 30 s). */
#define MAX_RUNS_GROW 3

/* ---------- the child ---------- */

typedef struct {
    cluster_node_t *cn;
    int me, n;
    long count;
    uint64_t deadline, last_ns;
    char fail[320];
} gnode_t;

static void gsay(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void gsay(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void gexpect(const char *word) {
    char line[256];
    if (!fgets(line, sizeof line, stdin))
        exit(1); /* the driver is gone */
    line[strcspn(line, "\n")] = 0;
    if (strcmp(line, word) != 0)
        die("expected \"%s\", got \"%s\"", word, line);
}

static int peers_connected(cluster_node_t *cn) {
    char *json = NULL;
    cluster_error_t err;
    if (cluster_stats(cn, &json, &err) != CLUSTER_OK)
        return -1;
    int k = 0;
    for (const char *p = json; (p = strstr(p, "\"connected\":true")) != NULL; p++)
        k++;
    cluster_string_free(json);
    return k;
}

static void *grow_sender(void *arg) {
    gnode_t *g = arg;
    uint8_t buf[GROW_SIZE] = {0};
    put_u64(buf + 8, (uint64_t)g->me);
    for (long i = 0; i < g->count; i++) {
        put_u64(buf, (uint64_t)i);
        cluster_envelope_t e = {.pid = CLUSTER_BROADCAST, .data = buf, .len = sizeof buf};
        cluster_error_t err;
        if (cluster_send(g->cn, &e, SEND_TIMEOUT_MS, &err) != CLUSTER_OK) {
            snprintf(g->fail, sizeof g->fail, "node %d: cluster_send of message %ld: %s", g->me, i, err.message);
            return NULL;
        }
    }
    return NULL;
}

/* Receives (n-1)·count messages, one cluster_recv per message, checking
 * size, sender and per-sender order; then checks nothing more is there. */
static void *grow_receiver(void *arg) {
    gnode_t *g = arg;
    uint64_t next[GROW_MAX_NODES] = {0};
    long want = (long)(g->n - 1) * g->count, got = 0;
    cluster_envelope_t env = {0};
    cluster_error_t err;
    char fail[320] = "";
    while (got < want && !fail[0]) {
        if (now_ns() > g->deadline) {
            snprintf(fail, sizeof fail, "node %d: %ld of %ld messages after %.0f s", g->me, got, want,
                     (double)DELIVER_TIMEOUT_NS / 1e9);
            break;
        }
        int rc = cluster_recv(g->cn, &env, 500, &err);
        if (rc == CLUSTER_E_TIMEOUT)
            continue;
        if (rc != CLUSTER_OK) {
            snprintf(fail, sizeof fail, "node %d: cluster_recv: %s", g->me, err.message);
            break;
        }
        uint64_t seq = env.len >= 16 ? get_u64(env.data) : ~0ull, from = env.len >= 16 ? get_u64(env.data + 8) : ~0ull;
        if (env.len != GROW_SIZE || from >= (uint64_t)g->n || (int)from == g->me || env.pid != (int64_t)from + 1 ||
            seq != next[from])
            snprintf(fail, sizeof fail, "node %d: message %ld: len %zu from %lld (payload %llu) seq %llu", g->me, got,
                     env.len, (long long)env.pid, (unsigned long long)from, (unsigned long long)seq);
        else
            next[from]++;
        got++;
        cluster_envelope_free(&env);
    }
    g->last_ns = now_ns();
    if (!fail[0] && cluster_recv(g->cn, &env, 0, &err) != CLUSTER_E_TIMEOUT) {
        snprintf(fail, sizeof fail, "node %d: a message beyond the %ld expected", g->me, want);
        cluster_envelope_free(&env);
    }
    if (fail[0] && !g->fail[0])
        memcpy(g->fail, fail, sizeof fail);
    return NULL;
}

int grow_child(int argc, char **argv) {
    if (argc != 8)
        die("usage: bench grow FIRST K N PORTS SIZE COUNT");
    long base_kib = status_kib("VmRSS:");
    int base_tasks = task_count();
    int first = atoi(argv[2]), k = atoi(argv[3]), n = atoi(argv[4]);
    long count = atol(argv[7]);
    if (n < 2 || n > GROW_MAX_NODES || k < 1 || first < 0 || first + k > n || count < 1 ||
        atol(argv[6]) != GROW_SIZE)
        die("bad arguments");
    int ports[GROW_MAX_NODES];
    char *p = argv[5];
    for (int i = 0; i < n; i++)
        ports[i] = (int)strtol(p, &p, 10), p += *p == ',';
    size_t cap = 128 + (size_t)n * 64;
    char *cfg = malloc(cap);
    int off = snprintf(cfg, cap, "{\"Peers\":[");
    for (int i = 0; i < n; i++)
        off += snprintf(cfg + off, cap - (size_t)off, "%s{\"Id\":%d,\"Address\":\"127.0.0.1:%d\"}", i ? "," : "",
                        i + 1, ports[i]);
    snprintf(cfg + off, cap - (size_t)off, "],\"InboxSize\":1000,\"OutboxSize\":1000,\"CloseLingerMs\":2000}");
    gnode_t *g = calloc((size_t)k, sizeof *g);
    gsay("ready");

    gexpect("start");
    uint64_t t_first = now_ns();
    for (int i = 0; i < k; i++) {
        cluster_error_t err;
        g[i] = (gnode_t){.me = first + i, .n = n, .count = count};
        if (cluster_new(first + i + 1, cfg, &g[i].cn, &err) != CLUSTER_OK) {
            gsay("fail node %d: cluster_new: %s", first + i, err.message);
            return 1;
        }
    }
    /* Polls each node's stats until every peer shows "connected":true,
     * more often at first (so a fast connect is timed closely). */
    int done = 0, worst = 0;
    while (done < k) {
        uint64_t now = now_ns();
        if (now - t_first > CONNECT_TIMEOUT_NS) {
            gsay("fail nodes %d..%d: %d of %d nodes fully connected after %.0f s (least: %d of %d peers)", first,
                 first + k - 1, done, k, (double)CONNECT_TIMEOUT_NS / 1e9, worst, n - 1);
            return 1;
        }
        uint64_t nap = (now - t_first) / 50;
        usleep((useconds_t)(nap < 1000000 ? 1000 : nap > 20000000 ? 20000 : nap / 1000));
        done = 0;
        worst = n;
        for (int i = 0; i < k; i++) {
            int c = peers_connected(g[i].cn);
            done += c >= n - 1;
            worst = c < worst ? c : worst;
        }
    }
    gsay("result %llu %llu", (unsigned long long)t_first, (unsigned long long)now_ns());

    gexpect("measure");
    gsay("result %.3f %.1f", (double)(task_count() - base_tasks) / k, (double)(status_kib("VmRSS:") - base_kib) / k);

    gexpect("go");
    uint64_t t_go = now_ns();
    pthread_t rx[GROW_MAX_NODES], tx[GROW_MAX_NODES];
    for (int i = 0; i < k; i++) {
        g[i].deadline = t_go + DELIVER_TIMEOUT_NS;
        if (pthread_create(&rx[i], NULL, grow_receiver, &g[i]) != 0 ||
            pthread_create(&tx[i], NULL, grow_sender, &g[i]) != 0) {
            gsay("fail node %d: pthread_create", first + i);
            return 1;
        }
    }
    uint64_t last = 0;
    const char *fail = NULL;
    for (int i = 0; i < k; i++) {
        pthread_join(tx[i], NULL);
        pthread_join(rx[i], NULL);
        last = g[i].last_ns > last ? g[i].last_ns : last;
        if (g[i].fail[0] && !fail)
            fail = g[i].fail;
    }
    if (fail) {
        gsay("fail %s", fail);
        return 1;
    }
    gsay("result %llu %llu %.1f", (unsigned long long)t_go, (unsigned long long)last,
         (double)(status_kib("VmRSS:") - base_kib) / k);

    gexpect("quit");
    for (int i = 0; i < k; i++)
        cluster_close(g[i].cn, NULL);
    for (int i = 0; i < k; i++)
        cluster_free(g[i].cn);
    free(g);
    free(cfg);
    return 0;
}

/* ---------- the driver's side ---------- */

/* The metrics of one run. */
enum { G_RATE, G_THREADS, G_RSS, G_RSS_AFTER, G_CONNECT, G_NMETRICS };

/* One run of n nodes in p processes; fills out[] or returns -1. */
static int grow_once(int n, int p, long count, double *out) {
    child_t *ch = calloc((size_t)p, sizeof *ch);
    int ports[GROW_MAX_NODES], ok = 0;
    char *portlist = malloc((size_t)n * 8 + 8), first[16], k[16], nn[16], size[16], cnt[24];
    free_ports(n, ports);
    portlist[0] = 0;
    for (int i = 0; i < n; i++)
        sprintf(portlist + strlen(portlist), "%s%d", i ? "," : "", ports[i]);
    snprintf(nn, sizeof nn, "%d", n);
    snprintf(size, sizeof size, "%d", GROW_SIZE);
    snprintf(cnt, sizeof cnt, "%ld", count);
    for (int j = 0; j < p; j++) {
        int lo = j * n / p, hi = (j + 1) * n / p;
        snprintf(first, sizeof first, "%d", lo);
        snprintf(k, sizeof k, "%d", hi - lo);
        char *argv[] = {"bench", "grow", first, k, nn, portlist, size, cnt, NULL};
        spawn(&ch[j], argv);
    }
    for (int j = 0; ok == 0 && j < p; j++)
        ok |= child_expect(&ch[j], "ready", LINE_TIMEOUT_NS);
    for (int j = 0; ok == 0 && j < p; j++)
        child_say(&ch[j], "start");
    /* Connected: from the first cluster_new anywhere to the last node. */
    double t_first = INFINITY, t_conn = 0, t_go = INFINITY, t_last = 0;
    double *v = calloc((size_t)p * 3, sizeof *v);
    ok = ok || child_collect(ch, p, NULL, v, 3, 2, CONNECT_TIMEOUT_NS + 20000000000ull);
    for (int j = 0; ok == 0 && j < p; j++) {
        t_first = fmin(t_first, v[3 * j]);
        t_conn = fmax(t_conn, v[3 * j + 1]);
    }
    out[G_CONNECT] = (t_conn - t_first) / 1e9;
    for (int j = 0; ok == 0 && j < p; j++)
        child_say(&ch[j], "measure");
    out[G_THREADS] = out[G_RSS] = out[G_RSS_AFTER] = 0;
    ok = ok || child_collect(ch, p, NULL, v, 3, 2, LINE_TIMEOUT_NS);
    for (int j = 0; ok == 0 && j < p; j++) {
        out[G_THREADS] = fmax(out[G_THREADS], v[3 * j]); /* the worst process */
        out[G_RSS] = fmax(out[G_RSS], v[3 * j + 1] / 1024);
    }
    for (int j = 0; ok == 0 && j < p; j++)
        child_say(&ch[j], "go");
    ok = ok || child_collect(ch, p, NULL, v, 3, 3, DELIVER_TIMEOUT_NS + 20000000000ull);
    for (int j = 0; ok == 0 && j < p; j++) {
        t_go = fmin(t_go, v[3 * j]);
        t_last = fmax(t_last, v[3 * j + 1]);
        out[G_RSS_AFTER] = fmax(out[G_RSS_AFTER], v[3 * j + 2] / 1024);
    }
    free(v);
    out[G_RATE] = (double)n * (n - 1) * (double)count / ((t_last - t_go) / 1e9);
    for (int j = 0; ok == 0 && j < p; j++)
        child_say(&ch[j], "quit");
    reap(ch, p, ok != 0);
    free(ch);
    free(portlist);
    return ok ? -1 : 0;
}

static void grow_cell(char *out, size_t cap, const double *v, int runs, int decimals) {
    summary_t s = summarize(v, runs);
    for (int r = 0; r < runs; r++)
        if (isnan(v[r]))
            s.med = NAN; /* a failed run fails the cell */
    char num[32];
    if (decimals < 0)
        fmt_num(num, sizeof num, s.med);
    else if (isnan(s.med))
        snprintf(num, sizeof num, "FAIL");
    else
        snprintf(num, sizeof num, "%.*f", decimals, s.med);
    if (isnan(s.med) || runs == 1)
        snprintf(out, cap, "%s", num);
    else
        snprintf(out, cap, "%s ±%.0f%%", num, s.spread * 100);
}

void grow_table(const char *spec, double scale, int runs, const char *only) {
    if (runs > MAX_RUNS_GROW)
        runs = MAX_RUNS_GROW;
    char *list = strdup(spec), *save = NULL;
    int header = 0;
    uint64_t t0 = now_ns();
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *slash = strchr(tok, '/'), name[48];
        int n = atoi(tok), p = slash ? atoi(slash + 1) : n;
        if (n < 2 || n > GROW_MAX_NODES || p < 1 || p > n) {
            fprintf(stderr, "bench: --grow: bad size \"%s\" (N or N/P, 2 <= N <= %d, 1 <= P <= N)\n", tok,
                    GROW_MAX_NODES);
            continue;
        }
        snprintf(name, sizeof name, "grow: %d nodes", n);
        if (only && !strstr(name, only))
            continue;
        if (!header) {
            printf("\nCost as the cluster grows: N nodes, each broadcasting 64 B messages with cluster_send\n"
                   "(timeout %d ms) from its own thread and receiving every other node's with cluster_recv\n"
                   "in another (exactly (N-1)·count messages, in order per sender, checked). threads and\n"
                   "RSS per node: library threads (entries of /proc/self/task) and VmRSS above the process's\n"
                   "baseline before its first cluster_new, divided by its nodes, worst process, once all\n"
                   "are connected and again after the traffic. connect: from the first cluster_new until\n"
                   "every node's cluster_stats shows every peer \"connected\":true. Median of %d run%s.\n\n",
                   SEND_TIMEOUT_MS, runs, runs > 1 ? "s" : "");
            printf("| %-16s | %-26s | %-9s | %-16s | %-12s | %-14s | %-16s | %-12s |\n", "nodes", "layout",
                   "msgs/node", "deliveries/s", "threads/node", "RSS/node MiB", "RSS/node after", "connect s");
            printf("|------------------|----------------------------|-----------|------------------|--------------|"
                   "----------------|------------------|--------------|\n");
            fflush(stdout);
            header = 1;
        }
        double pairs = (double)n * (n - 1);
        long count = (long)(fmax(GROW_DELIVERIES / pairs, GROW_MIN_COUNT) * scale);
        if (count < 1)
            count = 1;
        double v[G_NMETRICS][MAX_RUNS_GROW];
        int r_runs = runs;
        for (int r = 0; r < r_runs; r++) {
            double out[G_NMETRICS];
            int rc = grow_once(n, p, count, out);
            if (rc != 0)
                fprintf(stderr, "bench: %s (%d processes), run %d failed\n", name, p, r + 1);
            for (int m = 0; m < G_NMETRICS; m++)
                v[m][r] = rc == 0 ? out[m] : NAN;
        }
        char layout[48], cells[G_NMETRICS][40];
        if (p == n)
            snprintf(layout, sizeof layout, "%d processes", p);
        else
            snprintf(layout, sizeof layout, "%d proc x %d%s nodes (threads)", p, n / p, n % p ? "+" : "");
        grow_cell(cells[G_RATE], sizeof cells[0], v[G_RATE], r_runs, -1);
        grow_cell(cells[G_THREADS], sizeof cells[0], v[G_THREADS], r_runs, 1);
        grow_cell(cells[G_RSS], sizeof cells[0], v[G_RSS], r_runs, 2);
        grow_cell(cells[G_RSS_AFTER], sizeof cells[0], v[G_RSS_AFTER], r_runs, 2);
        grow_cell(cells[G_CONNECT], sizeof cells[0], v[G_CONNECT], r_runs, 3);
        char label[24];
        snprintf(label, sizeof label, "%d", n);
        printf("| %-16s | %-26s | %-9ld | %s%*s | %s%*s | %s%*s | %s%*s | %s%*s |\n", label, layout, count,
               cells[G_RATE], 16 - utf8_width(cells[G_RATE]), "", cells[G_THREADS],
               12 - utf8_width(cells[G_THREADS]), "", cells[G_RSS], 14 - utf8_width(cells[G_RSS]), "",
               cells[G_RSS_AFTER], 16 - utf8_width(cells[G_RSS_AFTER]), "", cells[G_CONNECT],
               12 - utf8_width(cells[G_CONNECT]), "");
        fflush(stdout);
    }
    if (header)
        printf("\n(%.0f s)\n", (double)(now_ns() - t0) / 1e9);
    free(list);
}
