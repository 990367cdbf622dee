/* The conformance suite's fixture (conf.h). */
#include "conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "compiler.h"
#include "memstore.h"
#include "module.h"

#ifndef AVM_SOURCE_DIR
#error "AVM_SOURCE_DIR must name the project's source directory"
#endif

char *conf_q(const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(n + 1);
    if (q == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i <= n; i++)
        q[i] = s[i] == '`' ? '"' : s[i];
    return q;
}

avm_module *conf_compile_raw(const char *name, const char *src, size_t len)
{
    avm_module *m = NULL;
    avm_diag d;
    memset(&d, 0, sizeof(d));
    int rv = avm_compile(name, src, len, &m, &d);
    if (rv != 0) {
        char msg[1024];
        avm_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "compile error (%s): %s\n", avm_strerror(rv), msg);
        return NULL;
    }
    return m;
}

avm_module *conf_compile(const char *name, const char *src)
{
    char *q = conf_q(src);
    avm_module *m = conf_compile_raw(name, q, strlen(q));
    free(q);
    return m;
}

avm_exec_config conf_config(int flags)
{
    avm_exec_config cfg = {
        .mode = (flags & CONF_STRICT) ? AVM_MODE_STRICT : AVM_MODE_DEFAULT,
        .allow_unsafe = (flags & CONF_UNSAFE) != 0,
        .keep_trace = true,
    };
    return cfg;
}

static void copy_buf(char *dst, size_t n, avm_buf *b)
{
    const char *s = avm_buf_cstr(b);
    size_t len = strlen(s);
    /* Drop one final newline (the store dump ends its lines with one). */
    if (len > 0 && s[len - 1] == '\n')
        len--;
    if (len >= n)
        len = n - 1;
    memcpy(dst, s, len);
    dst[len] = '\0';
}

void conf_capture(avm_embedded *e, avm_exec *x, conf_result *out)
{
    avm_buf b;
    out->status = (int)avm_exec_status(x);
    out->result[0] = out->error[0] = out->errpos[0] = '\0';
    if (out->status == AVM_RUN_DONE) {
        avm_buf_init(&b);
        avm_val_print(&b, avm_exec_result(x));
        copy_buf(out->result, sizeof(out->result), &b);
        avm_buf_free(&b);
    } else if (out->status == AVM_RUN_FAILED) {
        const avm_error *err = avm_exec_error(x);
        avm_error bare = {.code = err->code};
        memcpy(bare.args, err->args, sizeof(bare.args)); /* borrowed: not cleared */
        avm_buf_init(&b);
        avm_error_print(&b, &bare);
        copy_buf(out->error, sizeof(out->error), &b);
        avm_buf_free(&b);
        if (err->source.kind == AVM_STR && err->line > 0)
            snprintf(out->errpos, sizeof(out->errpos), "%s:%u:%u", err->source.u.s->data,
                     err->line, err->col);
    }
    avm_buf_init(&b);
    for (size_t i = 0; i < avm_exec_trace_len(x); i++) {
        if (i > 0)
            avm_buf_puts(&b, "\n");
        avm_event_print(&b, &avm_exec_trace(x)[i]);
    }
    copy_buf(out->trace, sizeof(out->trace), &b);
    avm_buf_free(&b);
    avm_buf_init(&b);
    avm_embedded_dump(e, &b, false);
    copy_buf(out->store, sizeof(out->store), &b);
    avm_buf_free(&b);
    out->counter = (unsigned long long)avm_exec_event_counter(x);
}

void conf_run_on(avm_embedded *e, const char *src, const char *entry, int flags,
                 conf_result *out)
{
    memset(out, 0, sizeof(*out));
    out->status = -1;
    avm_module *m = (flags & CONF_RAW) ? conf_compile_raw("t.avm", src, strlen(src))
                                       : conf_compile("t.avm", src);
    if (m == NULL) {
        snprintf(out->loadmsg, sizeof(out->loadmsg), "(does not compile)");
        out->load_rv = -1;
        return;
    }
    int fn = -1;
    if (entry != NULL) {
        fn = avm_module_find(m, entry, AVM_FN_FUNC);
        if (fn < 0) {
            snprintf(out->loadmsg, sizeof(out->loadmsg), "no function %s", entry);
            out->load_rv = -1;
            avm_module_release(m);
            return;
        }
    }
    avm_exec_config cfg = conf_config(flags);
    avm_exec *x = NULL;
    out->load_rv =
        avm_embedded_run(e, m, fn, &cfg, &x, out->loadmsg, sizeof(out->loadmsg));
    avm_module_release(m);
    if (out->load_rv != 0)
        return;
    conf_capture(e, x, out);
    avm_exec_free(x);
}

static bool id_is(avm_val v, avm_kind k, const char *a, const char *b)
{
    return v.kind == k && (strcmp(v.u.s->data, a) == 0 || strcmp(v.u.s->data, b) == 0);
}

static bool wide_machine(void *data, avm_val m)
{
    return id_is(m, AVM_MACHID, "node1", "node2");
}

static bool wide_ctrl(void *data, avm_val c)
{
    return id_is(c, AVM_CTRLID, "main", "aux");
}

void conf_widen(avm_embedded *e)
{
    e->plat.reachable_machine = wide_machine;
    e->plat.reachable_controller = wide_ctrl;
}

avm_exec *conf_start(avm_embedded *e, const char *src, int flags)
{
    avm_module *m = conf_compile("t.avm", src);
    if (m == NULL)
        return NULL;
    avm_exec_config cfg = conf_config(flags);
    avm_exec *x = avm_exec_new(&e->plat, &cfg);
    avm_val self, input;
    char msg[512];
    if (x == NULL || avm_embedded_toplevel(&self, &input) != 0) {
        avm_exec_free(x);
        avm_module_release(m);
        return NULL;
    }
    int rv = avm_exec_start(x, m, -1, self, input, msg, sizeof(msg));
    avm_val_release(self);
    avm_val_release(input);
    avm_module_release(m); /* the execution's frame holds its own reference */
    if (rv != 0) {
        fprintf(stderr, "start: %s: %s\n", avm_strerror(rv), msg);
        avm_exec_free(x);
        return NULL;
    }
    return x;
}

avm_run_status conf_run_until_events(avm_exec *x, size_t n)
{
    avm_run_status st = avm_exec_status(x);
    while (avm_exec_trace_len(x) < n && st == AVM_RUN_YIELD)
        st = avm_exec_run(x, 1);
    return st;
}

conf_result *conf_run_entry(const char *src, const char *entry, int flags)
{
    static conf_result r;
    avm_embedded e;
    if (avm_embedded_init(&e, "node1", "main") != 0) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    if (flags & CONF_WIDE)
        conf_widen(&e);
    conf_run_on(&e, src, entry, flags, &r);
    avm_embedded_close(&e);
    return &r;
}

conf_result *conf_run(const char *src, int flags)
{
    return conf_run_entry(src, NULL, flags);
}

char *conf_read_source(const char *relpath)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", AVM_SOURCE_DIR, relpath);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        char *p = realloc(buf, cap + 1);
        if (p == NULL)
            free(buf);
        buf = p;
    }
    fclose(f);
    if (buf == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    buf[n] = '\0';
    return buf;
}

bool conf_eq(const char *file, int line, const char *what, const char *got,
             const char *expected_q)
{
    char *exp = conf_q(expected_q);
    bool same = strcmp(got, exp) == 0;
    if (!same) {
        fprintf(stderr, "%s:%d: %s differs\n--- got:\n%s\n--- expected:\n%s\n---\n", file,
                line, what, got, exp);
        /* The first differing line, for long traces. */
        const char *g = got, *x = exp;
        int ln = 1;
        while (*g && *g == *x) {
            if (*g == '\n')
                ln++;
            g++;
            x++;
        }
        fprintf(stderr, "(first difference on line %d)\n", ln);
    }
    free(exp);
    return same;
}
