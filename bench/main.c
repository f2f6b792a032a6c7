/* Entry point and small helpers. With no role argument the program is the
 * driver; the driver runs copies of itself with a role for each node. */
#define _GNU_SOURCE
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const impl_names[IMPL_COUNT] = {"cluster", "zmq", "tcp"};

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

int main(int argc, char **argv) {
    if (argc > 1 && argv[1][0] != '-')
        return child_main(argc, argv);
    return driver_main(argc, argv);
}
