/* The embedded single node. */
#include "embedded.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "avm_err.h"
#include "memstore.h"
#include "sha256.h"
#include "solver.h"

static bool reach_machine(void *data, avm_val m)
{
    avm_embedded *e = data;
    return avm_val_eq(m, e->plat.node);
}

static bool reach_ctrl(void *data, avm_val c)
{
    avm_embedded *e = data;
    return avm_val_eq(c, e->plat.default_ctrl);
}

static int solve(void *data, avm_val problem, avm_val *model, avm_buf *why)
{
    avm_embedded *e = data;
    avm_solver_cfg cfg = {.timeout_ms = e->solver_timeout_ms};
    return avm_solver_solve(&cfg, problem, model, why);
}

static int init_platform(avm_embedded *e, const char *machine, const char *controller)
{
    if (avm_cstr(AVM_MACHID, machine, &e->plat.node) != 0 ||
        avm_cstr(AVM_CTRLID, controller, &e->plat.default_ctrl) != 0) {
        avm_embedded_close(e);
        return AVM_ENOMEM;
    }
    e->plat.store = e->store;
    e->plat.data = e;
    e->plat.reachable_machine = reach_machine;
    e->plat.reachable_controller = reach_ctrl;
    e->plat.solve = solve;
    return 0;
}

int avm_embedded_init(avm_embedded *e, const char *machine, const char *controller)
{
    memset(e, 0, sizeof(*e));
    e->store = avm_memstore_new();
    if (e->store == NULL)
        return AVM_ENOMEM;
    return init_platform(e, machine, controller);
}

/* mkdir -p */
static int make_dirs(const char *dir, char *errmsg, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        snprintf(errmsg, errlen, "data directory path too long: %s", dir);
        return AVM_EINVAL;
    }
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(errmsg, errlen, "cannot create %s: %s", path, strerror(errno));
            return AVM_EIO;
        }
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(errmsg, errlen, "cannot create %s: %s", path, strerror(errno));
        return AVM_EIO;
    }
    return 0;
}

int avm_embedded_open(avm_embedded *e, const char *machine, const char *controller,
                      const char *dir, char *errmsg, size_t errlen)
{
    memset(e, 0, sizeof(*e));
    int rv = make_dirs(dir, errmsg, errlen);
    if (rv != 0)
        return rv;
    avm_lmdb_config cfg = {.path = dir};
    rv = avm_lmdb_open(&cfg, &e->db, errmsg, errlen);
    if (rv != 0)
        return rv;
    e->store = avm_lmdb_store(e->db);
    rv = init_platform(e, machine, controller);
    if (rv != 0)
        snprintf(errmsg, errlen, "out of memory");
    return rv;
}

void avm_embedded_close(avm_embedded *e)
{
    avm_val_release(e->plat.node);
    avm_val_release(e->plat.default_ctrl);
    if (e->db != NULL)
        avm_lmdb_close(e->db);
    else
        avm_memstore_free(e->store);
    memset(e, 0, sizeof(*e));
}

int avm_embedded_default_dir(const char *machine, char *out, size_t n)
{
    const char *env = getenv("AVM_DATA");
    int w;
    if (env != NULL && *env)
        w = snprintf(out, n, "%s", env);
    else if ((env = getenv("XDG_DATA_HOME")) != NULL && *env)
        w = snprintf(out, n, "%s/avm/%s", env, machine);
    else if ((env = getenv("HOME")) != NULL && *env)
        w = snprintf(out, n, "%s/.local/share/avm/%s", env, machine);
    else
        return AVM_ENOTFOUND;
    return w > 0 && (size_t)w < n ? 0 : AVM_EINVAL;
}

const char *avm_embedded_status_name(int status)
{
    switch (status) {
    case AVM_RUN_DONE:
        return "done";
    case AVM_RUN_FAILED:
        return "failed";
    case AVM_RUN_YIELD:
        return "interrupted";
    case AVM_RUN_BLOCKED:
        return "blocked";
    case AVM_RUN_MOVED:
        return "moving";
    }
    return "unknown";
}

int avm_embedded_toplevel(avm_val *self, avm_val *input)
{
    if (avm_cstr(AVM_OBJID, "root/orchestrator", self) != 0)
        return AVM_ENOMEM;
    if (avm_cstr(AVM_STR, "", input) != 0) {
        avm_val_release(*self);
        return AVM_ENOMEM;
    }
    return 0;
}

int avm_embedded_start(avm_embedded *e, avm_module *m, int fn, const avm_exec_config *cfg,
                       avm_exec **out, char *errmsg, size_t errlen)
{
    avm_exec *x = avm_exec_new(&e->plat, cfg);
    if (x == NULL)
        return AVM_ENOMEM;
    avm_val self, input;
    int rv = avm_embedded_toplevel(&self, &input);
    if (rv == 0) {
        rv = avm_exec_start(x, m, fn, self, input, errmsg, errlen);
        avm_val_release(self);
        avm_val_release(input);
    }
    if (rv != 0) {
        avm_exec_free(x);
        return rv;
    }
    *out = x;
    return 0;
}

int avm_embedded_run(avm_embedded *e, avm_module *m, int fn, const avm_exec_config *cfg,
                     avm_exec **out, char *errmsg, size_t errlen)
{
    int rv = avm_embedded_start(e, m, fn, cfg, out, errmsg, errlen);
    if (rv == 0)
        avm_exec_run(*out, 0);
    return rv;
}

void avm_objrec_json(avm_buf *b, const avm_objrec *r, bool with_module, bool with_state)
{
    avm_buf_puts(b, "{\"object\":");
    avm_val_json(b, r->oid);
    avm_buf_puts(b, ",\"behavior\":");
    avm_val_json(b, r->beh.name);
    avm_buf_puts(b, ",\"machine\":");
    avm_val_json(b, r->meta.machine);
    avm_buf_puts(b, ",\"creatingController\":");
    avm_val_json(b, r->meta.creating);
    avm_buf_puts(b, ",\"currentController\":");
    avm_val_json(b, r->meta.current);
    avm_buf_printf(b, ",\"version\":%llu", (unsigned long long)r->version);
    if (with_module && r->beh.mod != NULL) {
        char hex[65];
        avm_hex32(r->beh.mod->hash, hex);
        avm_buf_printf(b, ",\"module\":\"%s\"", hex);
    }
    if (with_state) {
        avm_buf_puts(b, ",\"state\":");
        avm_val_json(b, r->state);
    }
    avm_buf_puts(b, "}");
}

void avm_embedded_dump(avm_embedded *e, avm_buf *b, bool json)
{
    avm_val ids;
    if (e->store->ops->ids(e->store, &ids) != 0) {
        b->err = AVM_ENOMEM;
        return;
    }
    if (json)
        avm_buf_puts(b, "[");
    for (uint32_t i = 0; i < ids.u.l->len; i++) {
        const avm_objrec *r = e->store->ops->get(e->store, NULL, ids.u.l->items[i]);
        if (r == NULL)
            continue; /* unreadable: the store has recorded why */
        if (json) {
            if (i)
                avm_buf_puts(b, ",");
            avm_objrec_json(b, r, false, true);
        } else {
            avm_val_print(b, r->oid);
            avm_buf_puts(b, " ");
            avm_val_print(b, r->beh.name);
            avm_buf_puts(b, " machine=");
            avm_val_print(b, r->meta.machine);
            avm_buf_puts(b, " creating=");
            avm_val_print(b, r->meta.creating);
            avm_buf_puts(b, " current=");
            avm_val_print(b, r->meta.current);
            avm_buf_puts(b, " state=");
            avm_val_print(b, r->state);
            avm_buf_puts(b, "\n");
        }
    }
    if (json)
        avm_buf_puts(b, "]");
    avm_val_release(ids);
}
