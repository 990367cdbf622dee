/* ctl_probe: sends bad control requests to a running avmd and checks that each gets
 * the error reply it should, and that the node still answers afterwards. Also
 * sends raw frames that are not control frames at all. Exit 0 when every check
 * holds; prints each check. Usage: ctl_probe URL
 *
 * ctl_probe URL spoof TOKEN PRINCIPAL: a client that claims a principal. Sends
 * `run` of (main 7) with ("principal" PRINCIPAL) and, unless TOKEN is "-",
 * ("auth" TOKEN); prints the execution id, or the error's name and message (exit
 * 1). The node must record the principal it authenticated, never the claimed one. */
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "avm_err.h"
#include "codec.h"
#include "compiler.h"
#include "control.h"
#include "module.h"

static int fails;

/* Sends op with body (which it consumes) and checks the error code and message. */
static void expect(avm_ctl_client *c, const char *what, const char *op, avm_val body,
                   int code, const char *needle)
{
    avm_val reply = avm_nil();
    char err[1024] = "";
    int rv = avm_ctl_call(c, op, body, 5000, &reply, err, sizeof(err));
    avm_val_release(body); /* the probe's bodies are built for one call */
    bool ok = rv == code && (needle == NULL || strstr(err, needle) != NULL);
    printf("%s %s: %s (%s)\n", ok ? "ok  " : "FAIL", what, avm_strerror(rv), err);
    fails += !ok;
    avm_val_release(reply);
}

static avm_val body1(const char *k, avm_val v)
{
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put(&b, k, v);
    avm_val out = avm_nil();
    avm_ctl_body_finish(&b, &out);
    return out;
}

static avm_val str(const char *s)
{
    avm_val v = avm_nil();
    avm_cstr(AVM_STR, s, &v);
    return v;
}

/* A raw request: the reply must be an error frame naming the cause. */
static void raw(const char *url, const char *what, const void *p, size_t n,
                const char *needle)
{
    nng_socket s;
    nng_msg *m = NULL;
    bool ok = false;
    char why[512] = "no reply";
    if (nng_req0_open(&s) == 0) {
        nng_setopt_ms(s, NNG_OPT_RECVTIMEO, 5000);
        nng_setopt_ms(s, NNG_OPT_SENDTIMEO, 5000);
        if (nng_dial(s, url, NULL, 0) == 0 && nng_send(s, (void *)p, n, 0) == 0 &&
            nng_recvmsg(s, &m, 0) == 0) {
            avm_ctl_frame f;
            char err[256];
            if (avm_ctl_decode(nng_msg_body(m), nng_msg_len(m), &f, err, sizeof(err)) ==
                0) {
                avm_val msg = avm_ctl_get(f.body, "message");
                snprintf(why, sizeof(why), "%s: %s", f.word,
                         msg.kind == AVM_STR ? msg.u.s->data : "?");
                ok = strcmp(f.word, "error") == 0 &&
                     (needle == NULL || strstr(why, needle) != NULL);
                avm_val_release(f.body);
            } else {
                snprintf(why, sizeof(why), "reply does not decode: %s", err);
            }
            nng_msg_free(m);
        }
        nng_close(s);
    }
    printf("%s %s: %s\n", ok ? "ok  " : "FAIL", what, why);
    fails += !ok;
}

static int spoof(const char *url, const char *token, const char *principal)
{
    static const char src[] = "(main 7)";
    avm_module *m = NULL;
    avm_diag diag;
    avm_buf mb;
    avm_buf_init(&mb);
    if (avm_compile("spoof.avm", src, sizeof(src) - 1, &m, &diag) != 0 ||
        avm_module_encode(m, &mb) != 0) {
        fprintf(stderr, "ctl_probe: cannot build the module\n");
        return 2;
    }
    avm_module_release(m);
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_val mv;
    if (avm_str_new(AVM_STR, mb.data, mb.len, &mv) != 0)
        return 2;
    avm_buf_free(&mb);
    avm_ctl_put(&b, "module", mv);
    avm_ctl_put_str(&b, "name", "spoof.avm");
    avm_ctl_put_str(&b, "principal", principal);
    if (strcmp(token, "-") != 0)
        avm_ctl_put_str(&b, "auth", token);
    avm_val body, reply = avm_nil();
    if (avm_ctl_body_finish(&b, &body) != 0)
        return 2;
    avm_ctl_client *c;
    char err[512];
    if (avm_ctl_client_open(url, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "ctl_probe: %s\n", err);
        return 2;
    }
    int rv = avm_ctl_call(c, "run", body, 5000, &reply, err, sizeof(err));
    avm_val_release(body);
    avm_ctl_client_close(c);
    if (rv != 0) {
        printf("%s %s\n", avm_err_name(rv) ? avm_err_name(rv) : "?", err);
        return 1;
    }
    avm_val id = avm_ctl_get(reply, "id");
    printf("%s\n", id.kind == AVM_STR ? id.u.s->data : "?");
    avm_val_release(reply);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[2], "spoof") == 0)
        return spoof(argv[1], argv[3], argv[4]);
    if (argc != 2) {
        fprintf(stderr, "usage: ctl_probe URL | ctl_probe URL spoof TOKEN PRINCIPAL\n");
        return 2;
    }
    avm_ctl_client *c;
    char err[512];
    if (avm_ctl_client_open(argv[1], &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "ctl_probe: %s\n", err);
        return 2;
    }
    expect(c, "unknown operation", "exec.explode", avm_nil(), AVM_EINVAL, "exec.explode");
    expect(c, "unknown top-level operation", "reboot", avm_nil(), AVM_EINVAL, "reboot");
    expect(c, "run without a module", "run", avm_nil(), AVM_EINVAL, "module");
    expect(c, "run with garbage bytes", "run", body1("module", str("\x93garbage")),
           AVM_EMALFORMED, "refused");
    expect(c, "run with a module of the wrong kind", "run", body1("module", avm_int(7)),
           AVM_EINVAL, "module");
    expect(c, "exec.show without id", "exec.show", avm_nil(), AVM_EINVAL, "id");
    expect(c, "exec.show with an int id", "exec.show", body1("id", avm_int(42)),
           AVM_EINVAL, "id");
    expect(c, "exec.show of no execution", "exec.show", body1("id", str("node1/x999999")),
           AVM_ENOTFOUND, "x999999");
    expect(c, "exec.kill of no execution", "exec.kill", body1("id", str("nope")),
           AVM_ENOTFOUND, "nope");
    expect(c, "exec.result without id", "exec.result", avm_nil(), AVM_EINVAL, "id");
    expect(c, "obj.show of no object", "obj.show", body1("id", str("node1/999999")),
           AVM_ENOTFOUND, "999999");
    expect(c, "obj.show with a list id", "obj.show", body1("id", avm_nil()), AVM_EINVAL,
           "object id");
    expect(c, "send to no object", "send", body1("to", str("node1/999999")),
           AVM_ENOTFOUND, "999999");
    expect(c, "send to a number", "send", body1("to", avm_int(5)), AVM_EINVAL,
           "object id");

    raw(argv[1], "garbage bytes", "\xff\xfe\xfd", 3, NULL);
    raw(argv[1], "an empty frame", "", 0, NULL);
    avm_buf b;
    avm_buf_init(&b);
    avm_mp_put_array(&b, 5);
    avm_mp_put_str(&b, "avm-ctl", 7);
    avm_mp_put_uint(&b, 99);
    avm_mp_put_uint(&b, 1);
    avm_mp_put_str(&b, "status", 6);
    avm_mp_put_nil(&b);
    raw(argv[1], "another version", b.data, b.len, "99");
    b.len = 0;
    avm_mp_put_array(&b, 4);
    avm_mp_put_str(&b, "avm-ctl", 7);
    avm_mp_put_uint(&b, 1);
    avm_mp_put_uint(&b, 1);
    avm_mp_put_str(&b, "status", 6);
    raw(argv[1], "a frame of 4", b.data, b.len, NULL);
    b.len = 0;
    /* 200 nested lists: deeper than any value may be. */
    avm_mp_put_array(&b, 5);
    avm_mp_put_str(&b, "avm-ctl", 7);
    avm_mp_put_uint(&b, 1);
    avm_mp_put_uint(&b, 1);
    avm_mp_put_str(&b, "status", 6);
    for (int i = 0; i < 200; i++)
        avm_mp_put_array(&b, 1);
    avm_mp_put_nil(&b);
    raw(argv[1], "a body nested 200 deep", b.data, b.len, NULL);
    avm_buf_free(&b);

    /* Still serving. */
    avm_val reply = avm_nil();
    int rv = avm_ctl_call(c, "status", avm_nil(), 5000, &reply, err, sizeof(err));
    printf("%s node answers after all that: %s\n", rv == 0 ? "ok  " : "FAIL",
           rv == 0 ? "status ok" : err);
    fails += rv != 0;
    avm_val_release(reply);
    avm_ctl_client_close(c);
    return fails ? 1 : 0;
}
