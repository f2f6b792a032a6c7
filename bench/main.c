/* Entry point and small helpers. With no role argument the program is the
 * driver; the driver runs copies of itself with a role for each node. */
#define _GNU_SOURCE
#include "bench.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const impl_names[IMPL_COUNT] = {"cluster", "zmq", "batch", "tcp"};
const char *const impl_titles[IMPL_COUNT] = {"cluster per call", "libzmq per call", "cluster batched", "tcp floor"};

int impl_parse(const char *s) {
    for (int i = 0; i < IMPL_COUNT; i++)
        if (!strcmp(s, impl_names[i]))
            return i;
    return -1;
}

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

long status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n)) {
            v = atol(line + n);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

int task_count(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, sizeof v); }

uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

summary_t summarize(const double *v, int n) {
    summary_t s = {NAN, NAN, NAN, 0};
    double x[64];
    for (int i = 0; i < n && s.n < 64; i++)
        if (isfinite(v[i]))
            x[s.n++] = v[i];
    if (!s.n)
        return s;
    qsort(x, (size_t)s.n, sizeof *x, cmp_double);
    s.med = s.n % 2 ? x[s.n / 2] : (x[s.n / 2 - 1] + x[s.n / 2]) / 2;
    s.spread = s.med ? (x[s.n - 1] - x[0]) / 2 / fabs(s.med) : 0;
    s.max = x[s.n - 1];
    return s;
}

void fmt_num(char *out, size_t cap, double v) {
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

int utf8_width(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "grow"))
        return grow_child(argc, argv);
    if (argc > 1 && argv[1][0] != '-')
        return child_main(argc, argv);
    return driver_main(argc, argv);
}
