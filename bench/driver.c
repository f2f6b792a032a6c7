/* The driver: runs every workload in every column several times, each run
 * in fresh child processes on fresh loopback ports, the columns' runs
 * interleaved, and prints medians, spreads, ratios to libzmq and the goals
 * of issue 14; then the table of cost as the cluster grows (grow.c). */
#define _GNU_SOURCE
#include "bench.h"

#include <zmq.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RUNS 15
#define MAX_METRICS 3
/* Longest wait for a throughput receiver once its sender has sent all. */
#define DRAIN_TIMEOUT_NS 10000000000ull

typedef enum { K_THR, K_PP, K_BCAST, K_IDLE, K_SLOW } kind_t;

typedef enum {
    G_NONE,
    G_RATIO_MIN, /* cluster / libzmq at least `call` (per call) and `batch` (batched; 0: no goal) */
    G_RATIO_MAX, /* cluster per call / libzmq at most `call` */
    G_ABS_MAX,   /* cluster per call at most `call`, in the worst run */
    G_ZERO,      /* cluster per call zero (below `call`) in the worst run */
    G_VS_PLAIN,  /* secure table: cluster per call with a secret / without at least `call` */
} goal_kind_t;

typedef struct {
    const char *metric;
    goal_kind_t goal;
    double call, batch;
} metric_t;

/* The columns a workload runs in. */
#define ALL_COLUMNS 0xf
#define NO_BATCH (ALL_COLUMNS & ~(1 << IMPL_BATCH))

typedef struct {
    const char *name;
    kind_t kind;
    int nodes;
    size_t size;
    long count;
    int columns;
    int nmetrics;
    metric_t m[MAX_METRICS];
} workload_t;

/* Idle CPU (of every thread but the one that measures, from schedstat in
 * ns) below this many ms per second counts as zero: 1 µs/s, i.e. no thread
 * woke up for more than a few instructions. */
#define IDLE_CPU_ZERO 0.001

/* Counts are sized so a run lasts about a second or less on a 2-core box.
 * The goals are issue 14's. */
static const workload_t WORKLOADS[] = {
    {"unicast 16 B", K_THR, 2, 16, 2000000, ALL_COLUMNS, 2,
     {{"msgs/s", G_RATIO_MIN, 3.0, 5.0}, {"MB/s", G_NONE, 0, 0}}},
    {"unicast 64 B", K_THR, 2, 64, 2000000, ALL_COLUMNS, 2,
     {{"msgs/s", G_RATIO_MIN, 3.0, 5.0}, {"MB/s", G_NONE, 0, 0}}},
    {"unicast 1 KiB", K_THR, 2, 1024, 500000, ALL_COLUMNS, 2,
     {{"msgs/s", G_RATIO_MIN, 2.0, 0}, {"MB/s", G_NONE, 0, 0}}},
    {"unicast 64 KiB", K_THR, 2, 65536, 15000, ALL_COLUMNS, 2,
     {{"msgs/s", G_RATIO_MIN, 1.3, 0}, {"MB/s", G_NONE, 0, 0}}},
    {"ping-pong 64 B", K_PP, 2, 64, 5000, ALL_COLUMNS, 3,
     {{"p50 us", G_RATIO_MAX, 0.3, 0}, {"p99 us", G_RATIO_MAX, 0.5, 0}, {"mean us", G_NONE, 0, 0}}},
    {"ping-pong 1 KiB", K_PP, 2, 1024, 5000, ALL_COLUMNS, 3,
     {{"p50 us", G_RATIO_MAX, 0.3, 0}, {"p99 us", G_RATIO_MAX, 0.5, 0}, {"mean us", G_NONE, 0, 0}}},
    {"5 nodes broadcast 64 B", K_BCAST, 5, 64, 100000, ALL_COLUMNS, 1, {{"deliveries/s", G_NONE, 0, 0}}},
    {"idle node, 4 peers", K_IDLE, 5, 64, 1000, NO_BATCH, 3,
     {{"RSS MiB", G_ABS_MAX, 4.0, 0}, {"CPU ms/s", G_ZERO, IDLE_CPU_ZERO, 0}, {"wake-ups/s", G_NONE, 0, 0}}},
    {"slow consumer, 1M offered", K_SLOW, 2, 64, 1000000, NO_BATCH, 3,
     {{"sender peak MiB", G_ABS_MAX, 16.0, 0},
      {"receiver peak MiB", G_ABS_MAX, 16.0, 0},
      {"accepted msgs", G_NONE, 0, 0}}},
};
#define NWORK (sizeof WORKLOADS / sizeof WORKLOADS[0])

/* The secure table (--secure): cluster with a Secret against libzmq with
 * CURVE, and cluster per call without a secret in the last column. The
 * goals are issue 16's; 64 KiB with a secret within 1.5x of without means
 * at least 1/1.5 of its MB/s. */
static const workload_t SECURE_WORKLOADS[] = {
    {"unicast 16 B", K_THR, 2, 16, 1000000, ALL_COLUMNS, 2,
     {{"msgs/s", G_RATIO_MIN, 1.0, 2.0}, {"MB/s", G_NONE, 0, 0}}},
    {"unicast 64 B", K_THR, 2, 64, 1000000, ALL_COLUMNS, 2,
     {{"msgs/s", G_RATIO_MIN, 1.0, 2.0}, {"MB/s", G_NONE, 0, 0}}},
    {"unicast 1 KiB", K_THR, 2, 1024, 300000, ALL_COLUMNS, 2,
     {{"msgs/s", G_RATIO_MIN, 1.0, 2.0}, {"MB/s", G_NONE, 0, 0}}},
    {"unicast 64 KiB", K_THR, 2, 65536, 10000, ALL_COLUMNS, 2,
     {{"msgs/s", G_RATIO_MIN, 1.0, 0}, {"MB/s", G_VS_PLAIN, 1 / 1.5, 0}}},
    {"ping-pong 64 B", K_PP, 2, 64, 5000, ALL_COLUMNS, 3,
     {{"p50 us", G_RATIO_MAX, 0.5, 0}, {"p99 us", G_NONE, 0, 0}, {"mean us", G_NONE, 0, 0}}},
    {"ping-pong 1 KiB", K_PP, 2, 1024, 5000, ALL_COLUMNS, 3,
     {{"p50 us", G_RATIO_MAX, 0.5, 0}, {"p99 us", G_NONE, 0, 0}, {"mean us", G_NONE, 0, 0}}},
};
#define NSECURE (sizeof SECURE_WORKLOADS / sizeof SECURE_WORKLOADS[0])

static const char *const SECURE_TITLES[IMPL_COUNT] = {"secret per call", "zmq CURVE call", "secret batched",
                                                      "plain per call"};

static const char *ROLE[] = {"thr", "pp", "bcast", "idle", "slow"};

/* One run of workload w in column impl; fills out[] with its metrics. */
static int run_once(const workload_t *w, impl_t impl, long count, double *out) {
    child_t ch[MAX_NODES];
    int ports[MAX_NODES], n = w->nodes, ok = 0;
    char portlist[128] = "", me[16], nn[16], size[24], cnt[24];
    free_ports(n, ports);
    for (int i = 0; i < n; i++)
        snprintf(portlist + strlen(portlist), sizeof portlist - strlen(portlist), "%s%d", i ? "," : "", ports[i]);
    snprintf(nn, sizeof nn, "%d", n);
    snprintf(size, sizeof size, "%zu", w->size);
    snprintf(cnt, sizeof cnt, "%ld", count);
    for (int i = 0; i < n; i++) {
        snprintf(me, sizeof me, "%d", i);
        char *argv[] = {"bench", (char *)ROLE[w->kind], (char *)impl_names[impl], me, nn, portlist, size, cnt, NULL};
        spawn(&ch[i], argv);
    }
    for (int i = 0; ok == 0 && i < n; i++)
        ok |= child_expect(&ch[i], "ready", LINE_TIMEOUT_NS);
    for (int i = 0; ok == 0 && i < n; i++)
        child_say(&ch[i], "go");
    double v[MAX_NODES][MAX_METRICS] = {{0}};
    if (ok == 0) {
        switch (w->kind) {
        case K_THR:
        case K_PP: {
            /* Both children are heard at once: a receiver that fails stops
             * reading, and its sender then blocks for good. Once the sender
             * is done, everything it sent is queued, so a receiver still
             * waiting DRAIN_TIMEOUT_NS later lost some. */
            int meter = w->kind == K_THR ? 1 : 0, sender_done = 0, meter_done = 0;
            while (ok == 0 && !meter_done) {
                child_t *pair[2] = {&ch[1 - meter], &ch[meter]};
                uint64_t wait = sender_done && w->kind == K_THR ? DRAIN_TIMEOUT_NS : LINE_TIMEOUT_NS;
                int i = child_wait_any(pair, 2, wait);
                if (i < 0) {
                    fprintf(stderr, "bench: %s sent no result within %.0f s\n",
                            sender_done ? "the receiver" : "neither child", (double)wait / 1e9);
                    ok = 1;
                } else if (i == 0 && !sender_done) {
                    ok |= child_result(&ch[1 - meter], v[1 - meter], MAX_METRICS, 0) < 0;
                    sender_done = 1;
                } else {
                    ok |= child_result(&ch[meter], out, MAX_METRICS, 0) != w->nmetrics;
                    meter_done = 1;
                }
            }
            break;
        }
        case K_BCAST: {
            double first = INFINITY, last = 0;
            ok |= child_collect(ch, n, NULL, &v[0][0], MAX_METRICS, 2, LINE_TIMEOUT_NS);
            for (int i = 0; ok == 0 && i < n; i++) {
                first = fmin(first, v[i][0]);
                last = fmax(last, v[i][1]);
            }
            out[0] = (double)n * (n - 1) * (double)count / ((last - first) / 1e9);
            break;
        }
        case K_IDLE:
            ok |= child_collect(ch, n, "done", NULL, 0, 0, LINE_TIMEOUT_NS);
            for (int i = 0; ok == 0 && i < n; i++)
                child_say(&ch[i], "measure");
            out[0] = out[1] = out[2] = 0;
            ok = ok || child_collect(ch, n, NULL, &v[0][0], MAX_METRICS, 3, LINE_TIMEOUT_NS);
            for (int i = 0; ok == 0 && i < n; i++) {
                for (int m = 0; m < 3; m++)
                    out[m] = fmax(out[m], v[i][m]); /* the worst node */
            }
            break;
        case K_SLOW: {
            char drain[64];
            ok |= child_result(&ch[0], v[0], 2, LINE_TIMEOUT_NS) != 2;
            snprintf(drain, sizeof drain, "drain %.0f", v[0][0]);
            if (ok == 0)
                child_say(&ch[1], drain);
            ok = ok || child_result(&ch[1], v[1], 2, LINE_TIMEOUT_NS) != 2;
            if (ok == 0 && v[1][0] != v[0][0]) {
                fprintf(stderr, "bench: slow consumer lost messages: %.0f accepted, %.0f received\n", v[0][0],
                        v[1][0]);
                ok = 1;
            }
            out[0] = v[0][1];
            out[1] = v[1][1];
            out[2] = v[0][0];
            break;
        }
        }
    }
    for (int i = 0; ok == 0 && i < n; i++)
        child_say(&ch[i], "quit");
    reap(ch, n, ok != 0);
    return ok ? -1 : 0;
}

/* A column's summary, or "not run" (n = -1). */
typedef struct {
    summary_t s;
    int run;
} cell_t;

static void fmt_cell(char *out, size_t cap, cell_t c) {
    char num[32];
    if (!c.run) {
        snprintf(out, cap, "-");
        return;
    }
    fmt_num(num, sizeof num, c.s.med);
    if (isnan(c.s.med))
        snprintf(out, cap, "%s", num);
    else
        snprintf(out, cap, "%s ±%.0f%%", num, c.s.spread * 100);
}

static double ratio(cell_t a, cell_t zmq) {
    if (!a.run || !zmq.run || zmq.s.med == 0)
        return NAN;
    return a.s.med / zmq.s.med;
}

/* How many goals were judged and how many missed, over the table. */
static int goals_judged, goals_missed;

/* `x` is the judged value (NAN: a run failed, so the goal is too). */
static const char *verdict(double x, int met) {
    goals_judged++;
    goals_missed += !met || isnan(x);
    return isnan(x) ? "FAIL" : met ? "met" : "MISSED";
}

static void print_row(const workload_t *w, int mi, cell_t c[IMPL_COUNT]) {
    const metric_t *m = &w->m[mi];
    char cells[IMPL_COUNT][48], rc[16] = "", rb[16] = "", goal[64] = "";
    for (int i = 0; i < IMPL_COUNT; i++)
        fmt_cell(cells[i], sizeof cells[i], c[i]);
    double r_call = ratio(c[IMPL_CLUSTER], c[IMPL_ZMQ]), r_batch = ratio(c[IMPL_BATCH], c[IMPL_ZMQ]);
    if (!isnan(r_call))
        snprintf(rc, sizeof rc, "%.2fx", r_call);
    if (!isnan(r_batch))
        snprintf(rb, sizeof rb, "%.2fx", r_batch);
    int call_run = c[IMPL_CLUSTER].run, zmq_run = c[IMPL_ZMQ].run;
    switch (m->goal) {
    case G_RATIO_MIN: {
        int off = 0;
        if (m->call && call_run && zmq_run)
            off += snprintf(goal + off, sizeof goal - (size_t)off, "call >= %.1fx %s", m->call,
                            verdict(r_call, r_call >= m->call));
        if (m->batch && c[IMPL_BATCH].run && zmq_run)
            snprintf(goal + off, sizeof goal - (size_t)off, "%sbatch >= %.1fx %s", off ? ", " : "", m->batch,
                     verdict(r_batch, r_batch >= m->batch));
        break;
    }
    case G_RATIO_MAX:
        if (call_run && zmq_run)
            snprintf(goal, sizeof goal, "call <= %.1fx %s", m->call, verdict(r_call, r_call <= m->call));
        break;
    case G_ABS_MAX: /* a bound: judged on the worst run */
        if (call_run)
            snprintf(goal, sizeof goal, "<= %.0f MiB %s, max %.1f", m->call, verdict(c[IMPL_CLUSTER].s.med, c[IMPL_CLUSTER].s.max <= m->call),
                     c[IMPL_CLUSTER].s.max);
        break;
    case G_ZERO:
        if (call_run)
            snprintf(goal, sizeof goal, "0 %s, max %.3f", verdict(c[IMPL_CLUSTER].s.med, c[IMPL_CLUSTER].s.max < m->call),
                     c[IMPL_CLUSTER].s.max);
        break;
    case G_VS_PLAIN: {
        double r = ratio(c[IMPL_CLUSTER], c[IMPL_TCP]);
        if (call_run && c[IMPL_TCP].run)
            snprintf(goal, sizeof goal, "secret/plain %.2fx >= %.2fx %s", r, m->call, verdict(r, r >= m->call));
        break;
    }
    case G_NONE: break;
    }
    printf("| %-26s | %-17s | ", mi ? "" : w->name, m->metric);
    for (int i = 0; i < IMPL_COUNT; i++)
        printf("%s%*s | ", cells[i], 16 - utf8_width(cells[i]), "");
    printf("%-9s | %-9s | %-40s |\n", rc, rb, goal);
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr, "usage: bench [--secure] [--runs N] [--scale F] [--only TEXT] [--impl NAME] [--grow LIST]\n"
                    "  --secure    the secure table: cluster with a Secret vs libzmq with CURVE\n"
                    "  --runs N    runs per workload and column (default 5)\n"
                    "  --scale F   multiply message counts by F (default 1)\n"
                    "  --only TEXT run only the workloads whose name contains TEXT\n"
                    "              (the rows of the growth table are named \"grow: N nodes\")\n"
                    "  --impl NAME run only one column: cluster (per call), zmq, batch or tcp\n"
                    "  --grow LIST cluster sizes of the growth table, N or N/P (N nodes in P\n"
                    "              processes), default 2,5,16,32,64,64/8; \"none\" skips it\n");
    exit(2);
}

static void print_secure_legend(int runs) {
    printf("Secure table, each column a separate sender and receiver process over 127.0.0.1 (runs\n"
           "interleaved):\n"
           "  secret per call : cluster per call (as in the main table) with \"Secret\" set: every frame\n"
           "                    and ack sealed with AES-256-GCM\n"
           "  zmq CURVE call  : libzmq per call (as in the main table) with CURVE (ZMQ_CURVE_SERVER on the\n"
           "                    binding side, keys made by zmq_curve_keypair in the driver)\n"
           "  secret batched  : cluster batched (as in the main table) with \"Secret\" set\n"
           "  plain per call  : cluster per call without a secret: the cost of encryption\n"
           "call/zmq = secret per call / zmq CURVE call; batch/zmq = secret batched / zmq CURVE call.\n"
           "Each cell: median of %d runs ±half the min-max range. Goals (issue 16) judged on medians.\n\n",
           runs);
}

/* Makes the CURVE keys the children use (they inherit the environment). */
static void curve_keys(void) {
    char pub[41], sec[41];
    const char *names[2][2] = {{"BENCH_CURVE_SERVER_PUBLIC", "BENCH_CURVE_SERVER_SECRET"},
                               {"BENCH_CURVE_CLIENT_PUBLIC", "BENCH_CURVE_CLIENT_SECRET"}};
    if (!zmq_has("curve"))
        die("this libzmq has no CURVE");
    for (int i = 0; i < 2; i++) {
        if (zmq_curve_keypair(pub, sec) != 0)
            die("zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
        setenv(names[i][0], pub, 1);
        setenv(names[i][1], sec, 1);
    }
    setenv("BENCH_SECURE", "1", 1);
}

static void print_legend(int runs) {
    printf("Columns, each a separate sender and receiver process over 127.0.0.1 (runs interleaved):\n"
           "  cluster per call : cluster_send(timeout -1) once per message; cluster_recv(timeout -1) +\n"
           "                     cluster_envelope_free once per message; InboxSize/OutboxSize 1000\n"
           "  libzmq per call  : zmq_send once per message (PUSH/PULL, PAIR for ping-pong); blocking\n"
           "                     zmq_msg_recv once per message; default HWM 1000\n"
           "  cluster batched  : cluster_send_batch with up to %d envelopes (flushed before a blocking\n"
           "                     wait and at the end); cluster_recv_batch up to %d + cluster_envelopes_free\n"
           "  tcp floor        : plain blocking sockets, [u32 len][payload] frames through 256 KiB\n"
           "                     user-space buffers: write() per buffer, read() + parse, no threads\n"
           "call/zmq = cluster per call / libzmq per call; batch/zmq = cluster batched / libzmq per call.\n"
           "Each cell: median of %d runs ±half the min-max range. Goals (issue 14) judged on medians;\n"
           "memory and idle CPU on the worst run. Receivers check every message's sequence number,\n"
           "sender and size: a lost, duplicated or reordered message fails the run (FAIL).\n\n",
           SEND_BATCH, RECV_BATCH, runs);
}

int driver_main(int argc, char **argv) {
    int runs = 5;
    double scale = 1;
    const char *only = NULL, *grow = "2,5,16,32,64,64/8";
    int impl_only = -1, secure = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--secure"))
            secure = 1;
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
            scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--impl") && i + 1 < argc && impl_parse(argv[i + 1]) >= 0)
            impl_only = impl_parse(argv[++i]);
        else if (!strcmp(argv[i], "--grow") && i + 1 < argc)
            grow = argv[++i];
        else
            usage();
    }
    if (runs < 1 || runs > MAX_RUNS || !(scale > 0))
        usage();
    proc_init();
    const workload_t *table = WORKLOADS;
    size_t nwork = NWORK;
    const char *const *titles = impl_titles;
    if (secure) {
        curve_keys();
        print_secure_legend(runs);
        table = SECURE_WORKLOADS;
        nwork = NSECURE;
        titles = SECURE_TITLES;
    } else {
        print_legend(runs);
    }
    uint64_t t0 = now_ns();
    int header = 0;
    for (size_t wi = 0; wi < nwork; wi++) {
        const workload_t *w = &table[wi];
        if (only && !strstr(w->name, only))
            continue;
        if (!header) {
            printf("| %-26s | %-17s | ", "workload", "metric");
            for (int i = 0; i < IMPL_COUNT; i++)
                printf("%-16s | ", titles[i]);
            printf("%-9s | %-9s | %-40s |\n", "call/zmq", "batch/zmq", secure ? "goal (issue 16)" : "goal (issue 14)");
            printf("|----------------------------|-------------------|");
            for (int i = 0; i < IMPL_COUNT; i++)
                printf("------------------|");
            printf("-----------|-----------|------------------------------------------|\n");
            header = 1;
        }
        long count = (long)((double)w->count * scale);
        if (count < 1)
            count = 1;
        double v[MAX_METRICS][IMPL_COUNT][MAX_RUNS];
        int run[IMPL_COUNT];
        for (int impl = 0; impl < IMPL_COUNT; impl++)
            run[impl] = (w->columns >> impl & 1) && (impl_only < 0 || impl == impl_only);
        for (int r = 0; r < runs; r++)
            for (int impl = 0; impl < IMPL_COUNT; impl++) {
                if (!run[impl])
                    continue;
                double out[MAX_METRICS];
                int rc = run_once(w, (impl_t)impl, count, out);
                for (int m = 0; m < w->nmetrics; m++)
                    v[m][impl][r] = rc == 0 ? out[m] : NAN;
                if (rc != 0)
                    fprintf(stderr, "bench: %s, %s, run %d failed\n", w->name, titles[impl], r + 1);
            }
        for (int m = 0; m < w->nmetrics; m++) {
            cell_t c[IMPL_COUNT];
            for (int impl = 0; impl < IMPL_COUNT; impl++) {
                c[impl].run = run[impl];
                c[impl].s = run[impl] ? summarize(v[m][impl], runs) : (summary_t){NAN, NAN, NAN, 0};
                /* A column with a failed run fails: no loss in any run. */
                for (int r = 0; run[impl] && r < runs; r++)
                    if (isnan(v[m][impl][r]))
                        c[impl].s.med = NAN;
            }
            print_row(w, m, c);
        }
    }
    if (header)
        printf("\ngoals: %d judged, %d missed (%.0f s)\n", goals_judged, goals_missed,
               (double)(now_ns() - t0) / 1e9);
    if (!secure && strcmp(grow, "none") != 0 && (impl_only < 0 || impl_only == IMPL_CLUSTER))
        grow_table(grow, scale, runs, only);
    return 0;
}
