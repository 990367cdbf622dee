/* link_bench: the node-to-node links (transport/link.h) with and without mutual TLS,
 * measured in the same run: two links in this process on one libuv loop over
 * tcp://127.0.0.1 (so every figure pays for both ends on one core):
 *
 *   rtt     sequential echo requests of a 64-byte string: p50 and p99 round trip
 *   small   one-way messages (an int each), up to 4096 unacknowledged: messages/s
 *   bulk    one-way 1 MiB strings, up to 8 unacknowledged: MB/s
 *
 * each for --secs seconds (default 2) after a 0.2 s warm-up, plain then TLS, with the
 * CPU time of the process per operation (both ends; robust to other tenants), and the
 * ratios TLS / plain. The TLS run needs certificates for machines a and b:
 * deploy/make-certs.sh DIR a b, then --certs DIR. --quick: tiny counts, checks only.
 * The exit code is 1 when a result is wrong (a message lost or out of order). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "avm_err.h"
#include "link.h"

typedef struct side {
    avm_link *l;
    uint64_t got, bytes;
    int64_t last;
    bool wrong;
} side;

static uv_loop_t loop;
static side sa, sb;
static int rtt_done;

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000u;
}

/* This process's CPU time (user + system), us: unlike wall time, hardly moved by
 * other tenants of the machine. */
static uint64_t cpu_us(void)
{
    uv_rusage_t ru;
    if (uv_getrusage(&ru) != 0)
        return 0;
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void on_message(void *arg, const char *from, avm_val body)
{
    side *s = arg;
    (void)from;
    if (body.kind == AVM_INT) {
        s->wrong |= body.u.i != s->last + 1;
        s->last = body.u.i;
    } else if (body.kind == AVM_STR) {
        s->bytes += body.u.s->len;
    }
    s->got++;
}

static void on_request(void *arg, avm_link_req *req, const char *from, const char *op,
                       avm_val body)
{
    (void)arg;
    (void)from;
    (void)op;
    avm_link_reply(req, body);
}

static void on_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    (void)arg;
    (void)reply;
    (void)errmsg;
    rtt_done = rv == 0 ? 1 : -1;
}

static int start(side *s, const char *name, const char *certs)
{
    char crt[512], key[512], ca[512], err[1024];
    snprintf(crt, sizeof(crt), "%s/%s.crt", certs ? certs : "", name);
    snprintf(key, sizeof(key), "%s/%s.key", certs ? certs : "", name);
    snprintf(ca, sizeof(ca), "%s/ca.crt", certs ? certs : "");
    memset(s, 0, sizeof(*s));
    avm_link_config cfg = {.self = name,
                           .listen = "tcp://127.0.0.1:0",
                           .on_message = on_message,
                           .on_request = on_request,
                           .tls_cert = certs ? crt : NULL,
                           .tls_key = certs ? key : NULL,
                           .tls_ca = certs ? ca : NULL,
                           .arg = s};
    if (avm_link_start(&loop, &cfg, &s->l, err, sizeof(err)) != 0) {
        fprintf(stderr, "link_bench: %s\n", err);
        return -1;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct figures {
    double p50_us, p99_us, msgs_s, mb_s;
    double cpu_rtt, cpu_msg, cpu_mb; /* CPU us per request, message, MB */
} figures;

/* Runs one mode; false when something went wrong. */
static bool run(const char *certs, double secs, figures *f)
{
    if (start(&sa, "a", certs) != 0 || start(&sb, "b", certs) != 0)
        return false;
    char url[64], err[256];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", avm_link_port(sb.l));
    avm_link_add_peer(sa.l, "b", url, err, sizeof(err));
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", avm_link_port(sa.l));
    avm_link_add_peer(sb.l, "a", url, err, sizeof(err));
    bool ok = true;
    avm_val small;
    avm_cstr(AVM_STR, "0123456789012345678901234567890123456789012345678901234567890123",
             &small);
    /* rtt (the first request also waits for the pair to come up) */
    size_t cap = 1 << 20, n = 0;
    uint64_t *lat = malloc(cap * sizeof(*lat));
    uint64_t t0 = now_us(), warm = t0 + 200000, end = warm + (uint64_t)(secs * 1e6);
    uint64_t c0 = 0;
    for (uint64_t t = t0; t < end && ok; t = now_us()) {
        if (c0 == 0 && t >= warm)
            c0 = cpu_us();
        rtt_done = 0;
        uint64_t s = now_us();
        if (avm_link_request(sa.l, "b", "echo", small, 5000, on_reply, NULL, err,
                             sizeof(err)) != 0) {
            ok = false;
            break;
        }
        while (rtt_done == 0)
            uv_run(&loop, UV_RUN_ONCE);
        ok = rtt_done == 1;
        if (s >= warm && n < cap)
            lat[n++] = now_us() - s;
    }
    f->cpu_rtt = n ? (double)(cpu_us() - c0) / (double)n : 0;
    qsort(lat, n, sizeof(*lat), cmp_u64);
    if (getenv("LB_DEBUG")) {
        size_t slow = 0;
        for (size_t i = 0; i < n; i++)
            slow += lat[i] > 1000;
        fprintf(stderr, "%s: %zu requests, %zu over 1 ms, max %llu us\n",
                certs ? "tls" : "plain", n, slow,
                n ? (unsigned long long)lat[n - 1] : 0ull);
    }
    f->p50_us = n ? (double)lat[n / 2] : 0;
    f->p99_us = n ? (double)lat[n * 99 / 100] : 0;
    free(lat);
    /* small one-way messages */
    int64_t next = 1;
    uint64_t base = 0;
    t0 = now_us();
    warm = t0 + 200000;
    end = warm + (uint64_t)(secs * 1e6);
    bool counting = false;
    while (ok && now_us() < end) {
        if (!counting && now_us() >= warm) {
            counting = true;
            base = sb.got;
            c0 = cpu_us();
        }
        while ((uint64_t)(next - 1) - sb.got < 4096 &&
               avm_link_send(sa.l, "b", avm_int(next), err, sizeof(err)) == 0)
            next++;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    f->msgs_s = (double)(sb.got - base) / secs;
    f->cpu_msg = sb.got > base ? (double)(cpu_us() - c0) / (double)(sb.got - base) : 0;
    ok &= !sb.wrong;
    /* drain, then bulk */
    while ((uint64_t)(next - 1) != sb.got && ok)
        uv_run(&loop, UV_RUN_ONCE);
    char *buf = malloc(1 << 20);
    memset(buf, 'x', 1 << 20);
    avm_val mb;
    avm_str_new(AVM_STR, buf, 1 << 20, &mb);
    free(buf);
    uint64_t sent = 0, got0 = sb.got, bytes0 = 0;
    t0 = now_us();
    warm = t0 + 200000;
    end = warm + (uint64_t)(secs * 1e6);
    counting = false;
    while (ok && now_us() < end) {
        if (!counting && now_us() >= warm) {
            counting = true;
            bytes0 = sb.bytes;
            c0 = cpu_us();
        }
        while (sent - (sb.got - got0) < 8 &&
               avm_link_send(sa.l, "b", mb, err, sizeof(err)) == 0)
            sent++;
        uv_run(&loop, UV_RUN_ONCE);
    }
    f->mb_s = (double)(sb.bytes - bytes0) / secs / 1e6;
    f->cpu_mb = sb.bytes > bytes0
                    ? (double)(cpu_us() - c0) / ((double)(sb.bytes - bytes0) / 1e6)
                    : 0;
    avm_val_release(mb);
    avm_val_release(small);
    avm_link_stop(sa.l);
    avm_link_stop(sb.l);
    uv_run(&loop, UV_RUN_DEFAULT);
    return ok;
}

int main(int argc, char **argv)
{
    const char *certs = NULL;
    double secs = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--certs") == 0 && i + 1 < argc)
            certs = argv[++i];
        else if (strcmp(argv[i], "--secs") == 0 && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            secs = 0.2;
        else {
            fprintf(stderr, "usage: link_bench --certs DIR [--secs S] [--quick]\n");
            return 2;
        }
    }
    if (certs == NULL) {
        fprintf(stderr, "link_bench: --certs DIR (deploy/make-certs.sh DIR a b)\n");
        return 2;
    }
    if (uv_loop_init(&loop) != 0)
        return 2;
    figures p, t;
    bool ok = run(NULL, secs, &p);
    ok &= run(certs, secs, &t);
    double load[3];
    uv_loadavg(load);
    printf("link_bench: two links in one process, %.1f s per figure, load %.2f\n", secs,
           load[0]);
    printf("%-34s %12s %12s %8s\n", "", "plain", "TLS", "TLS/plain");
    printf("%-34s %12.0f %12.0f %8.2f\n", "request round trip p50 (us)", p.p50_us,
           t.p50_us, p.p50_us > 0 ? t.p50_us / p.p50_us : 0);
    printf("%-34s %12.0f %12.0f %8.2f\n", "request round trip p99 (us)", p.p99_us,
           t.p99_us, p.p99_us > 0 ? t.p99_us / p.p99_us : 0);
    printf("%-34s %12.0f %12.0f %8.2f\n", "one-way messages/s", p.msgs_s, t.msgs_s,
           p.msgs_s > 0 ? t.msgs_s / p.msgs_s : 0);
    printf("%-34s %12.1f %12.1f %8.2f\n", "1 MiB messages, MB/s", p.mb_s, t.mb_s,
           p.mb_s > 0 ? t.mb_s / p.mb_s : 0);
    printf("%-34s %12.1f %12.1f %8.2f\n", "CPU us per request (both ends)", p.cpu_rtt,
           t.cpu_rtt, p.cpu_rtt > 0 ? t.cpu_rtt / p.cpu_rtt : 0);
    printf("%-34s %12.2f %12.2f %8.2f\n", "CPU us per message (both ends)", p.cpu_msg,
           t.cpu_msg, p.cpu_msg > 0 ? t.cpu_msg / p.cpu_msg : 0);
    printf("%-34s %12.0f %12.0f %8.2f\n", "CPU us per MB (both ends)", p.cpu_mb, t.cpu_mb,
           p.cpu_mb > 0 ? t.cpu_mb / p.cpu_mb : 0);
    if (!ok)
        printf("RESULTS WRONG\n");
    uv_loop_close(&loop);
    return ok ? 0 : 1;
}
