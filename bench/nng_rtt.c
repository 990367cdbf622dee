/* nng_rtt: the floor for remote calls between two nodes, a raw nng request/reply round
 * trip over TCP loopback between two processes, measured beside the cluster benchmark
 * (bench/cluster_bench.sh) in the same run.
 *
 * The process forks before it touches nng: the child is an echo server (a rep0 socket
 * with one asynchronous context per possible client, as nng's demo/async server), the
 * parent the client. The child listens on tcp://127.0.0.1:0 and tells the parent the
 * port through a pipe; it exits when that pipe reaches end of file (the parent ended).
 *
 *   sequential  one req0 socket, one round trip at a time (nng_send, nng_recv) after a
 *               warm-up; every round trip is timed: median, mean, p99 in microseconds
 *   --clients   C threads, each with its own context on one shared req0 socket (one TCP
 *               connection, like the single link between two nodes), each doing its
 *               share of round trips back to back: round trips per second
 *
 *   --tcp       also the kernel's floor: the same sequential echo on plain blocking TCP
 *               sockets (TCP_NODELAY, a forked echo process), no nng
 *
 * Every reply is compared with its request; a wrong one fails the program (exit 1).
 * Output: one `key=value` line per measurement, on stdout.
 *
 * Options: --size BYTES (payload, default 700: about a shipped execution's state),
 * --n N (timed round trips, default 20000), --warmup N (default 2000),
 * --clients C[,C...] (concurrent clients, e.g. 16,64; default none), --tcp, --quick. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#define MAX_CLIENTS 256

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, int rv)
{
    fprintf(stderr, "nng_rtt: %s: %s\n", what, nng_strerror(rv));
    exit(2);
}

/* ---- the echo server (child process) ---- */

typedef enum { WORK_RECV, WORK_SEND } work_state;

typedef struct work {
    work_state state;
    nng_aio *aio;
    nng_ctx ctx;
} work;

/* Runs on nng's threads: never blocks, only queues the next operation. */
static void work_cb(void *arg)
{
    work *w = arg;
    int rv = nng_aio_result(w->aio);
    switch (w->state) {
    case WORK_RECV:
        if (rv != 0) {
            if (rv == NNG_ECLOSED)
                return;
            nng_ctx_recv(w->ctx, w->aio);
            return;
        }
        /* The request message goes back unchanged: an echo. */
        w->state = WORK_SEND;
        nng_ctx_send(w->ctx, w->aio);
        return;
    case WORK_SEND:
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(w->aio));
        w->state = WORK_RECV;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
}

static void serve(int port_fd, int life_fd)
{
    nng_socket s;
    nng_listener l;
    int rv, port;
    static work works[MAX_CLIENTS + 4];

    if ((rv = nng_rep0_open(&s)) != 0)
        die("rep0_open", rv);
    for (size_t i = 0; i < sizeof(works) / sizeof(works[0]); i++) {
        work *w = &works[i];
        if ((rv = nng_aio_alloc(&w->aio, work_cb, w)) != 0)
            die("aio_alloc", rv);
        if ((rv = nng_ctx_open(&w->ctx, s)) != 0)
            die("ctx_open", rv);
        w->state = WORK_RECV;
        nng_ctx_recv(w->ctx, w->aio);
    }
    if ((rv = nng_listen(s, "tcp://127.0.0.1:0", &l, 0)) != 0)
        die("listen", rv);
    if ((rv = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port)) != 0)
        die("bound port", rv);
    if (write(port_fd, &port, sizeof(port)) != (ssize_t)sizeof(port))
        exit(2);
    close(port_fd);
    /* Serve until the parent closes its end (or dies). */
    char c;
    while (read(life_fd, &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
}

/* ---- the client (parent process) ---- */

static size_t size = 700;
static char url[64];

static void fill(char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)((seed + i * 31u) & 0xff);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One round trip on a plain req0 socket; 0 if the reply echoes the request. */
static int round_trip(nng_socket s, const char *req, char *rep)
{
    int rv;
    size_t n = size;
    if ((rv = nng_send(s, (void *)req, size, 0)) != 0)
        die("send", rv);
    if ((rv = nng_recv(s, rep, &n, 0)) != 0)
        die("recv", rv);
    return n == size && memcmp(req, rep, size) == 0 ? 0 : 1;
}

static int sequential(long n, long warmup)
{
    nng_socket s;
    int rv, bad = 0;
    char *req = malloc(size), *rep = malloc(size + 1);
    double *t = malloc(sizeof(double) * (size_t)n);
    if (req == NULL || rep == NULL || t == NULL)
        exit(2);

    if ((rv = nng_req0_open(&s)) != 0)
        die("req0_open", rv);
    if ((rv = nng_dial(s, url, NULL, 0)) != 0)
        die("dial", rv);
    for (long i = 0; i < warmup; i++) {
        fill(req, size, (unsigned)i);
        bad |= round_trip(s, req, rep);
    }
    double sum = 0;
    for (long i = 0; i < n; i++) {
        fill(req, size, (unsigned)i);
        double t0 = now();
        bad |= round_trip(s, req, rep);
        t[i] = (now() - t0) * 1e6;
        sum += t[i];
    }
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    printf("nng_rtt mode=sequential size=%zu n=%ld rtt_us_median=%.1f rtt_us_mean=%.1f "
           "rtt_us_p99=%.1f rtt_us_min=%.1f\n",
           size, n, t[n / 2], sum / (double)n, t[(n * 99) / 100], t[0]);
    nng_close(s);
    free(req);
    free(rep);
    free(t);
    return bad;
}

typedef struct client {
    pthread_t thread;
    nng_socket s;
    long n;
    int bad;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    nng_ctx ctx;
    nng_aio *aio;
    int rv;
    char *req = malloc(size);
    if (req == NULL)
        exit(2);
    if ((rv = nng_ctx_open(&ctx, c->s)) != 0)
        die("ctx_open", rv);
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
        die("aio_alloc", rv);
    for (long i = 0; i < c->n; i++) {
        nng_msg *m;
        fill(req, size, (unsigned)(i ^ (long)(size_t)c));
        if ((rv = nng_msg_alloc(&m, 0)) != 0 || (rv = nng_msg_append(m, req, size)) != 0)
            die("msg", rv);
        nng_aio_set_msg(aio, m);
        nng_ctx_send(ctx, aio);
        nng_aio_wait(aio);
        if ((rv = nng_aio_result(aio)) != 0)
            die("ctx_send", rv);
        nng_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        if ((rv = nng_aio_result(aio)) != 0)
            die("ctx_recv", rv);
        m = nng_aio_get_msg(aio);
        if (nng_msg_len(m) != size || memcmp(nng_msg_body(m), req, size) != 0)
            c->bad = 1;
        nng_msg_free(m);
    }
    nng_aio_free(aio);
    nng_ctx_close(ctx);
    free(req);
    return NULL;
}

static int concurrent(int nclients, long total)
{
    nng_socket s;
    int rv, bad = 0;
    client *cs = calloc((size_t)nclients, sizeof(client));
    long each = total / nclients > 0 ? total / nclients : 1;
    if (cs == NULL)
        exit(2);
    if ((rv = nng_req0_open(&s)) != 0)
        die("req0_open", rv);
    if ((rv = nng_dial(s, url, NULL, 0)) != 0)
        die("dial", rv);
    double t0 = now();
    for (int i = 0; i < nclients; i++) {
        cs[i].s = s;
        cs[i].n = each;
        if (pthread_create(&cs[i].thread, NULL, client_main, &cs[i]) != 0)
            exit(2);
    }
    for (int i = 0; i < nclients; i++) {
        pthread_join(cs[i].thread, NULL);
        bad |= cs[i].bad;
    }
    double dt = now() - t0;
    printf(
        "nng_rtt mode=concurrent size=%zu clients=%d rt=%ld seconds=%.3f rt_per_s=%.0f\n",
        size, nclients, each * nclients, dt, (double)(each * nclients) / dt);
    nng_close(s);
    free(cs);
    return bad;
}

/* ---- the kernel's floor: blocking TCP sockets, no nng ---- */

static int read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const char *buf, size_t n)
{
    size_t put = 0;
    while (put < n) {
        ssize_t r = write(fd, buf + put, n - put);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        put += (size_t)r;
    }
    return 0;
}

static int tcp_sequential(long n, long warmup)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int one = 1, bad = 0;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    char *req = malloc(size), *rep = malloc(size);
    double *t = malloc(sizeof(double) * (size_t)n), sum = 0;

    if (ls < 0 || req == NULL || rep == NULL || t == NULL)
        exit(2);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
        perror("nng_rtt: tcp listen");
        exit(2);
    }
    pid_t pid = fork();
    if (pid < 0)
        exit(2);
    if (pid == 0) {
        int c = accept(ls, NULL, NULL);
        if (c < 0)
            _exit(2);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        while (read_full(c, rep, size) == 0 && write_full(c, rep, size) == 0) {
        }
        _exit(0);
    }
    close(ls);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("nng_rtt: tcp connect");
        exit(2);
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (long i = -warmup; i < n; i++) {
        fill(req, size, (unsigned)i);
        double t0 = now();
        if (write_full(s, req, size) != 0 || read_full(s, rep, size) != 0) {
            perror("nng_rtt: tcp echo");
            exit(2);
        }
        if (i >= 0) {
            t[i] = (now() - t0) * 1e6;
            sum += t[i];
        }
        bad |= memcmp(req, rep, size) != 0;
    }
    close(s);
    waitpid(pid, NULL, 0);
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    printf("tcp_rtt mode=sequential size=%zu n=%ld rtt_us_median=%.1f rtt_us_mean=%.1f "
           "rtt_us_p99=%.1f rtt_us_min=%.1f\n",
           size, n, t[n / 2], sum / (double)n, t[(n * 99) / 100], t[0]);
    free(req);
    free(rep);
    free(t);
    return bad;
}

int main(int argc, char **argv)
{
    long n = 20000, warmup = 2000;
    int clients[16], nclients = 0, tcp = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            n = 500;
            warmup = 100;
        } else if (strcmp(a, "--tcp") == 0) {
            tcp = 1;
        } else if (strcmp(a, "--size") == 0 && v != NULL) {
            size = (size_t)strtoul(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--n") == 0 && v != NULL) {
            n = strtol(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--warmup") == 0 && v != NULL) {
            warmup = strtol(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--clients") == 0 && v != NULL) {
            char *p = (char *)v;
            while (*p != '\0' && nclients < 16) {
                int c = (int)strtol(p, &p, 10);
                if (c < 1 || c > MAX_CLIENTS) {
                    fprintf(stderr, "nng_rtt: clients must be 1..%d\n", MAX_CLIENTS);
                    return 2;
                }
                clients[nclients++] = c;
                if (*p == ',')
                    p++;
            }
            i++;
        } else {
            fprintf(stderr, "usage: nng_rtt [--size BYTES] [--n N] [--warmup N] "
                            "[--clients C[,C...]] [--tcp] [--quick]\n");
            return 2;
        }
    }
    if (n < 1 || size < 1) {
        fprintf(stderr, "nng_rtt: --n and --size must be positive\n");
        return 2;
    }

    /* Before nng starts its threads: forks. */
    int bad = tcp ? tcp_sequential(n, warmup) : 0;
    fflush(stdout);
    /* Fork before nng starts its threads. */
    int port_pipe[2], life_pipe[2];
    if (pipe(port_pipe) != 0 || pipe(life_pipe) != 0) {
        perror("nng_rtt: pipe");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("nng_rtt: fork");
        return 2;
    }
    if (pid == 0) {
        close(port_pipe[0]);
        close(life_pipe[1]);
        serve(port_pipe[1], life_pipe[0]);
    }
    close(port_pipe[1]);
    close(life_pipe[0]);
    int port = 0;
    if (read(port_pipe[0], &port, sizeof(port)) != (ssize_t)sizeof(port)) {
        fprintf(stderr, "nng_rtt: the server did not start\n");
        return 2;
    }
    close(port_pipe[0]);
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);

    bad |= sequential(n, warmup);
    for (int i = 0; i < nclients; i++)
        bad |= concurrent(clients[i], n);

    close(life_pipe[1]);
    int status;
    waitpid(pid, &status, 0);
    if (bad) {
        fprintf(stderr, "nng_rtt: a reply differed from its request\n");
        return 1;
    }
    return 0;
}
