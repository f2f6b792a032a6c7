/* The driver: runs every workload on every transport several times, each
 * run in fresh child processes on fresh loopback ports, and prints medians,
 * spreads and ratios to libzmq. */
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_RUNS 15
#define MAX_METRICS 3
/* Longest wait for one line from a child. */
#define LINE_TIMEOUT_NS 60000000000ull

typedef enum { K_THR, K_PP, K_BCAST, K_IDLE, K_SLOW } kind_t;
typedef enum { G_NONE, G_RATIO_MIN, G_RATIO_MAX, G_ABS_MAX } goal_kind_t;

typedef struct {
    const char *metric;
    goal_kind_t goal;
    double target;
} metric_t;

typedef struct {
    const char *name;
    kind_t kind;
    int nodes;
    size_t size;
    long count;
    int nmetrics;
    metric_t m[MAX_METRICS];
} workload_t;

/* Counts are sized so a run lasts about a second or less on a 2-core box
 * and the whole table takes under two minutes. */
static const workload_t WORKLOADS[] = {
    {"unicast 16 B", K_THR, 2, 16, 2000000, 2, {{"msgs/s", G_RATIO_MIN, 1.5}, {"MB/s", G_NONE, 0}}},
    {"unicast 64 B", K_THR, 2, 64, 2000000, 2, {{"msgs/s", G_RATIO_MIN, 1.5}, {"MB/s", G_NONE, 0}}},
    {"unicast 1 KiB", K_THR, 2, 1024, 500000, 2, {{"msgs/s", G_RATIO_MIN, 1.0}, {"MB/s", G_NONE, 0}}},
    {"unicast 64 KiB", K_THR, 2, 65536, 15000, 2, {{"msgs/s", G_RATIO_MIN, 1.0}, {"MB/s", G_NONE, 0}}},
    {"ping-pong 64 B", K_PP, 2, 64, 5000, 3,
     {{"p50 us", G_RATIO_MAX, 0.8}, {"p99 us", G_NONE, 0}, {"mean us", G_NONE, 0}}},
    {"ping-pong 1 KiB", K_PP, 2, 1024, 5000, 3,
     {{"p50 us", G_RATIO_MAX, 0.8}, {"p99 us", G_NONE, 0}, {"mean us", G_NONE, 0}}},
    {"5 nodes broadcast 64 B", K_BCAST, 5, 64, 100000, 1, {{"deliveries/s", G_NONE, 0}}},
    {"idle node, 4 peers", K_IDLE, 5, 64, 1000, 1, {{"RSS MiB", G_ABS_MAX, 4.0}}},
    {"slow consumer, 1M offered", K_SLOW, 2, 64, 1000000, 3,
     {{"sender peak MiB", G_ABS_MAX, 16.0}, {"receiver peak MiB", G_ABS_MAX, 16.0}, {"accepted msgs", G_NONE, 0}}},
};
#define NWORK (sizeof WORKLOADS / sizeof WORKLOADS[0])

typedef struct {
    pid_t pid;
    int to, from;
    char buf[1024];
    size_t len;
} child_t;

static const char *ROLE[] = {"thr", "pp", "bcast", "idle", "slow"};

/* This program's path, to run the children (resolved once, so the children
 * also run under valgrind --trace-children when the driver does). */
static char self_exe[4096];

/* Ports free right now on 127.0.0.1 (the kernel picks them). */
static void free_ports(int n, int *ports) {
    int fds[MAX_NODES];
    for (int i = 0; i < n; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t len = sizeof a;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &len) != 0)
            die("free port: %s", strerror(errno));
        ports[i] = ntohs(a.sin_port);
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static void spawn(child_t *ch, char *const argv[]) {
    int in[2], out[2];
    if (pipe(in) || pipe(out))
        die("pipe: %s", strerror(errno));
    ch->pid = fork();
    if (ch->pid < 0)
        die("fork: %s", strerror(errno));
    if (ch->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execv(self_exe, argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    ch->to = in[1];
    ch->from = out[0];
    ch->len = 0;
}

/* The child's next line (without newline); -1 on timeout or exit. */
static int child_line(child_t *ch, char *line, size_t cap) {
    uint64_t deadline = now_ns() + LINE_TIMEOUT_NS;
    for (;;) {
        char *nl = memchr(ch->buf, '\n', ch->len);
        if (nl) {
            size_t k = (size_t)(nl - ch->buf);
            snprintf(line, cap, "%.*s", (int)k, ch->buf);
            memmove(ch->buf, nl + 1, ch->len - k - 1);
            ch->len -= k + 1;
            return 0;
        }
        uint64_t now = now_ns();
        if (now >= deadline || ch->len == sizeof ch->buf)
            return -1;
        struct pollfd pf = {.fd = ch->from, .events = POLLIN};
        int r = poll(&pf, 1, (int)((deadline - now) / 1000000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t k = read(ch->from, ch->buf + ch->len, sizeof ch->buf - ch->len);
        if (k <= 0)
            return -1;
        ch->len += (size_t)k;
    }
}

static void child_say(child_t *ch, const char *s) {
    size_t len = strlen(s);
    if (write(ch->to, s, len) != (ssize_t)len || write(ch->to, "\n", 1) != 1)
        fprintf(stderr, "bench: child %d is gone\n", (int)ch->pid);
}

/* Waits (bounded) for every child to exit; kills the ones that hang. */
static void reap(child_t *chs, int n) {
    uint64_t deadline = now_ns() + 30000000000ull;
    for (int i = 0; i < n; i++) {
        close(chs[i].to);
        close(chs[i].from);
        int st;
        while (waitpid(chs[i].pid, &st, WNOHANG) == 0) {
            if (now_ns() > deadline) {
                fprintf(stderr, "bench: killing stuck child %d\n", (int)chs[i].pid);
                kill(chs[i].pid, SIGKILL);
                waitpid(chs[i].pid, &st, 0);
                break;
            }
            usleep(5000);
        }
    }
}

/* Reads a "result ..." line into v[]; returns how many numbers, -1 if not. */
static int result(child_t *ch, double *v, int max) {
    char line[1024];
    if (child_line(ch, line, sizeof line) != 0) {
        fprintf(stderr, "bench: child %d sent no result\n", (int)ch->pid);
        return -1;
    }
    if (strncmp(line, "result", 6) != 0) {
        fprintf(stderr, "bench: child %d: %s\n", (int)ch->pid, line);
        return -1;
    }
    int k = 0;
    char *p = line + 6, *end;
    while (k < max) {
        double x = strtod(p, &end);
        if (end == p)
            break;
        v[k++] = x;
        p = end;
    }
    return k;
}

static int expect_line(child_t *ch, const char *word) {
    char line[1024];
    if (child_line(ch, line, sizeof line) != 0 || strcmp(line, word) != 0) {
        fprintf(stderr, "bench: child %d did not say %s\n", (int)ch->pid, word);
        return -1;
    }
    return 0;
}

/* One run of workload w on transport impl; fills out[] with its metrics. */
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
    for (int i = 0; i < n; i++)
        ok |= expect_line(&ch[i], "ready");
    for (int i = 0; ok == 0 && i < n; i++)
        child_say(&ch[i], "go");
    double v[MAX_NODES][MAX_METRICS] = {{0}};
    if (ok == 0) {
        switch (w->kind) {
        case K_THR:
        case K_PP: {
            int meter = w->kind == K_THR ? 1 : 0;
            ok |= result(&ch[1 - meter], v[1 - meter], MAX_METRICS) < 0;
            ok |= result(&ch[meter], out, MAX_METRICS) != w->nmetrics;
            break;
        }
        case K_BCAST: {
            double first = INFINITY, last = 0;
            for (int i = 0; i < n; i++) {
                ok |= result(&ch[i], v[i], MAX_METRICS) != 2;
                first = fmin(first, v[i][0]);
                last = fmax(last, v[i][1]);
            }
            out[0] = (double)n * (n - 1) * (double)count / ((last - first) / 1e9);
            break;
        }
        case K_IDLE:
            for (int i = 0; i < n; i++)
                ok |= expect_line(&ch[i], "done");
            for (int i = 0; ok == 0 && i < n; i++)
                child_say(&ch[i], "measure");
            out[0] = 0;
            for (int i = 0; ok == 0 && i < n; i++) {
                ok |= result(&ch[i], v[i], 1) != 1;
                out[0] = fmax(out[0], v[i][0]);
            }
            break;
        case K_SLOW: {
            char drain[64];
            ok |= result(&ch[0], v[0], 2) != 2;
            snprintf(drain, sizeof drain, "drain %.0f", v[0][0]);
            if (ok == 0)
                child_say(&ch[1], drain);
            ok |= result(&ch[1], v[1], 2) != 2;
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
    for (int i = 0; i < n; i++)
        child_say(&ch[i], "quit");
    reap(ch, n);
    return ok ? -1 : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double med, spread; /* spread: half the min-max range, relative to the median */
    double max;
    int n;
} summary_t;

static summary_t summarize(double *v, int n) {
    summary_t s = {NAN, NAN, NAN, 0};
    double x[MAX_RUNS];
    for (int i = 0; i < n; i++)
        if (isfinite(v[i]))
            x[s.n++] = v[i];
    if (!s.n) {
        s.spread = isinf(v[0]) ? -1 : NAN; /* -1: not run */
        return s;
    }
    qsort(x, (size_t)s.n, sizeof *x, cmp_double);
    s.med = s.n % 2 ? x[s.n / 2] : (x[s.n / 2 - 1] + x[s.n / 2]) / 2;
    s.spread = s.med ? (x[s.n - 1] - x[0]) / 2 / fabs(s.med) : 0;
    s.max = x[s.n - 1];
    return s;
}

static void fmt_num(char *out, size_t cap, double v) {
    if (isnan(v))
        snprintf(out, cap, "FAIL");
    else if (fabs(v) >= 1e6)
        snprintf(out, cap, "%.2fM", v / 1e6);
    else if (fabs(v) >= 1e4)
        snprintf(out, cap, "%.1fk", v / 1e3);
    else if (fabs(v) >= 100)
        snprintf(out, cap, "%.0f", v);
    else
        snprintf(out, cap, "%.2f", v);
}

static void fmt_cell(char *out, size_t cap, summary_t s) {
    char num[32];
    fmt_num(num, sizeof num, s.med);
    if (isnan(s.med))
        snprintf(out, cap, "%s", s.spread < 0 ? "-" : num);
    else
        snprintf(out, cap, "%s ±%.0f%%", num, s.spread * 100);
}

/* Characters (not bytes) in a UTF-8 string, for column alignment. */
static int utf8_width(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void print_row(const workload_t *w, int mi, summary_t s[IMPL_COUNT]) {
    const metric_t *m = &w->m[mi];
    char cells[IMPL_COUNT][48], ratio[16] = "", goal[48] = "";
    for (int i = 0; i < IMPL_COUNT; i++)
        fmt_cell(cells[i], sizeof cells[i], s[i]);
    double r = s[IMPL_CLUSTER].med / s[IMPL_ZMQ].med;
    if (!isnan(r) && s[IMPL_ZMQ].med != 0)
        snprintf(ratio, sizeof ratio, "%.2fx", r);
    const char *verdict = "";
    switch (m->goal) {
    case G_RATIO_MIN:
        verdict = r >= m->target ? "met" : "MISSED";
        snprintf(goal, sizeof goal, ">= %.1fx %s", m->target, verdict);
        break;
    case G_RATIO_MAX:
        verdict = r <= m->target ? "met" : "MISSED";
        snprintf(goal, sizeof goal, "<= %.1fx %s", m->target, verdict);
        break;
    case G_ABS_MAX: /* a bound: judged on the worst run */
        verdict = s[IMPL_CLUSTER].max <= m->target ? "met" : "MISSED";
        snprintf(goal, sizeof goal, "<= %.0f MiB %s, max %.1f", m->target, verdict, s[IMPL_CLUSTER].max);
        break;
    case G_NONE: break;
    }
    printf("| %-26s | %-17s | ", mi ? "" : w->name, m->metric);
    for (int i = 0; i < IMPL_COUNT; i++)
        printf("%s%*s | ", cells[i], 15 - utf8_width(cells[i]), "");
    printf("%-6s | %-26s |\n", ratio, goal);
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr, "usage: bench [--runs N] [--scale F] [--only TEXT] [--impl NAME]\n"
                    "  --runs N    runs per workload and transport (default 5)\n"
                    "  --scale F   multiply message counts by F (default 1)\n"
                    "  --only TEXT run only the workloads whose name contains TEXT\n"
                    "  --impl NAME run only one transport: cluster, zmq or tcp (for profiling)\n");
    exit(2);
}

int driver_main(int argc, char **argv) {
    int runs = 5;
    double scale = 1;
    const char *only = NULL;
    int impl_only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
            scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--impl") && i + 1 < argc && impl_parse(argv[i + 1]) >= 0)
            impl_only = impl_parse(argv[++i]);
        else
            usage();
    }
    if (runs < 1 || runs > MAX_RUNS || !(scale > 0))
        usage();
    signal(SIGPIPE, SIG_IGN);
    ssize_t k = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (k <= 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    self_exe[k] = 0;
    printf("cluster vs libzmq vs plain TCP: %d runs each, median ±half the min-max range; "
           "ratio = cluster / libzmq\n\n",
           runs);
    printf("| %-26s | %-17s | %-15s | %-15s | %-15s | %-6s | %-26s |\n", "workload", "metric", "cluster",
           "libzmq", "tcp floor", "ratio", "goal");
    printf("|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------------", "-------------------",
           "-----------------", "-----------------", "-----------------", "--------", "----------------------------");
    fflush(stdout);
    uint64_t t0 = now_ns();
    for (size_t wi = 0; wi < NWORK; wi++) {
        const workload_t *w = &WORKLOADS[wi];
        if (only && !strstr(w->name, only))
            continue;
        long count = (long)((double)w->count * scale);
        if (count < 1)
            count = 1;
        double v[MAX_METRICS][IMPL_COUNT][MAX_RUNS];
        for (int r = 0; r < runs; r++)
            for (int impl = 0; impl < IMPL_COUNT; impl++) {
                double out[MAX_METRICS];
                int rc = impl_only < 0 || impl == impl_only ? run_once(w, (impl_t)impl, count, out) : -2;
                for (int m = 0; m < w->nmetrics; m++)
                    v[m][impl][r] = rc == 0 ? out[m] : rc == -2 ? -INFINITY : NAN;
                if (rc == -1)
                    fprintf(stderr, "bench: %s on %s, run %d failed\n", w->name, impl_names[impl], r + 1);
            }
        for (int m = 0; m < w->nmetrics; m++) {
            summary_t s[IMPL_COUNT];
            for (int impl = 0; impl < IMPL_COUNT; impl++)
                s[impl] = summarize(v[m][impl], runs);
            print_row(w, m, s);
        }
    }
    printf("\n(%.0f s)\n", (double)(now_ns() - t0) / 1e9);
    return 0;
}
