/* The child processes: free loopback ports, spawning, the line protocol
 * with the driver (every wait bounded), and ending them. */
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* This program's path, to run the children (resolved once, so the children
 * also run under valgrind --trace-children when the driver does). */
static char self_exe[4096];

void proc_init(void) {
    ssize_t k = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (k <= 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    self_exe[k] = 0;
    signal(SIGPIPE, SIG_IGN);
}

void free_ports(int n, int *ports) {
    int *fds = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t len = sizeof a;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &len) != 0)
            die("free port: %s", strerror(errno));
        ports[i] = ntohs(a.sin_port);
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
}

void spawn(child_t *ch, char *const argv[]) {
    int in[2], out[2];
    pid_t parent = getpid();
    if (pipe(in) || pipe(out))
        die("pipe: %s", strerror(errno));
    ch->pid = fork();
    if (ch->pid < 0)
        die("fork: %s", strerror(errno));
    if (ch->pid == 0) {
        /* A child never outlives the driver (killed, or stopped with ^C). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
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

int child_line(child_t *ch, char *line, size_t cap, uint64_t timeout_ns) {
    uint64_t deadline = now_ns() + timeout_ns;
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

int child_wait_any(child_t *const *chs, int n, uint64_t timeout_ns) {
    uint64_t deadline = now_ns() + timeout_ns;
    struct pollfd pf[256];
    if (n > 256)
        die("child_wait_any: %d children", n);
    for (;;) {
        for (int i = 0; i < n; i++)
            if (memchr(chs[i]->buf, '\n', chs[i]->len))
                return i;
        uint64_t now = now_ns();
        if (now >= deadline)
            return -1;
        for (int i = 0; i < n; i++)
            pf[i] = (struct pollfd){.fd = chs[i]->from, .events = POLLIN};
        int r = poll(pf, (nfds_t)n, (int)((deadline - now) / 1000000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            if (!pf[i].revents)
                continue;
            child_t *ch = chs[i];
            ssize_t k = ch->len < sizeof ch->buf ? read(ch->from, ch->buf + ch->len, sizeof ch->buf - ch->len) : -1;
            if (k <= 0) {
                fprintf(stderr, "bench: child %d exited without a line\n", (int)ch->pid);
                return -1;
            }
            ch->len += (size_t)k;
        }
    }
}

void child_say(child_t *ch, const char *s) {
    size_t len = strlen(s);
    if (write(ch->to, s, len) != (ssize_t)len || write(ch->to, "\n", 1) != 1)
        fprintf(stderr, "bench: child %d is gone\n", (int)ch->pid);
}

int child_result(child_t *ch, double *v, int max, uint64_t timeout_ns) {
    char line[1024];
    if (child_line(ch, line, sizeof line, timeout_ns) != 0) {
        fprintf(stderr, "bench: child %d sent no result within %.0f s\n", (int)ch->pid, (double)timeout_ns / 1e9);
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

int child_expect(child_t *ch, const char *word, uint64_t timeout_ns) {
    char line[1024];
    if (child_line(ch, line, sizeof line, timeout_ns) != 0) {
        fprintf(stderr, "bench: child %d did not say %s within %.0f s\n", (int)ch->pid, word,
                (double)timeout_ns / 1e9);
        return -1;
    }
    if (strcmp(line, word) != 0) {
        fprintf(stderr, "bench: child %d: %s\n", (int)ch->pid, line);
        return -1;
    }
    return 0;
}

void reap(child_t *chs, int n, int failed) {
    uint64_t deadline = now_ns() + 30000000000ull;
    for (int i = 0; i < n; i++) {
        if (failed)
            kill(chs[i].pid, SIGKILL);
        close(chs[i].to);
        close(chs[i].from);
    }
    for (int i = 0; i < n; i++) {
        int st;
        while (waitpid(chs[i].pid, &st, WNOHANG) == 0) {
            if (now_ns() > deadline) {
                fprintf(stderr, "bench: killing stuck child %d\n", (int)chs[i].pid);
                kill(chs[i].pid, SIGKILL);
                waitpid(chs[i].pid, &st, 0);
                break;
            }
            usleep(2000);
        }
    }
}

int child_collect(child_t *ch, int n, const char *word, double *v, int stride, int nvals, uint64_t timeout_ns) {
    char *done = calloc((size_t)n, 1);
    child_t **wait = malloc(sizeof *wait * (size_t)n);
    int *map = malloc(sizeof *map * (size_t)n), rc = 0;
    for (int k = 0; rc == 0 && k < n; k++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (!done[i])
                map[m] = i, wait[m++] = &ch[i];
        int j = child_wait_any(wait, m, timeout_ns);
        if (j < 0) {
            fprintf(stderr, "bench: %d of %d children sent no line within %.0f s\n", m, n, (double)timeout_ns / 1e9);
            rc = -1;
            break;
        }
        int i = map[j];
        done[i] = 1;
        if (word ? child_expect(&ch[i], word, 0) != 0 : child_result(&ch[i], v + (size_t)i * (size_t)stride, stride, 0) != nvals)
            rc = -1;
    }
    free(done);
    free(wait);
    free(map);
    return rc;
}
