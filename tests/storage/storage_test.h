/* Helpers shared by the storage tests: temporary directories, compiling sources,
 * building write sets and printing store contents. Header-only (static). */
#ifndef AVM_STORAGE_TEST_H
#define AVM_STORAGE_TEST_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "avm_err.h"
#include "compiler.h"
#include "lmdb_store.h"
#include "memstore.h"
#include "module.h"
#include "sha256.h"

/* A fresh directory under $TMPDIR (or /tmp), written into buf. */
static inline const char *st_mkdtemp(char *buf, size_t len)
{
    const char *t = getenv("TMPDIR");
    snprintf(buf, len, "%s/avm-storage-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(buf);
}

/* rm -rf dir (no symbolic links are followed). */
static inline void st_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[4096];
            if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= (int)sizeof(p))
                continue;
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                st_rmtree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static inline avm_module *st_compile(const char *src)
{
    avm_module *m = NULL;
    avm_diag d;
    if (avm_compile("test.avm", src, strlen(src), &m, &d) != 0) {
        char msg[800];
        avm_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "compile: %s\n", msg);
        return NULL;
    }
    return m;
}

static inline avm_lmdb *st_open(const char *dir, size_t map_size, size_t map_max)
{
    avm_lmdb_config cfg = {.path = dir, .map_size = map_size, .map_max = map_max};
    avm_lmdb *db = NULL;
    char err[512];
    int rv = avm_lmdb_open(&cfg, &db, err, sizeof(err));
    if (rv != 0)
        fprintf(stderr, "open %s: %s (%s)\n", dir, err, avm_strerror(rv));
    return db;
}

static inline avm_val st_id(avm_kind k, const char *s)
{
    avm_val v;
    if (avm_cstr(k, s, &v) != 0)
        abort();
    return v;
}

static inline avm_val st_oidn(unsigned n)
{
    char b[32];
    snprintf(b, sizeof(b), "node1/%u", n);
    return st_id(AVM_OBJID, b);
}

/* One record as a line of text (everything observable, the module by hash). */
static inline void st_rec_line(avm_buf *b, const avm_objrec *r)
{
    avm_val_print(b, r->oid);
    avm_buf_puts(b, " beh=");
    avm_val_print(b, r->beh.name);
    if (r->beh.mod != NULL) {
        char hex[65];
        avm_hex32(r->beh.mod->hash, hex);
        avm_buf_printf(b, " mod=%.12s fn=%u", hex, r->beh.fn);
    }
    avm_buf_puts(b, " machine=");
    avm_val_print(b, r->meta.machine);
    avm_buf_puts(b, " creating=");
    avm_val_print(b, r->meta.creating);
    avm_buf_puts(b, " current=");
    avm_val_print(b, r->meta.current);
    avm_buf_printf(b, " v=%llu state=", (unsigned long long)r->version);
    avm_val_print(b, r->state);
    avm_buf_puts(b, "\n");
}

static inline int st_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every object of the store, one line each, sorted (stores list ids in different
 * orders). The caller frees b. */
static inline int st_dump(avm_store *s, avm_buf *out)
{
    avm_val ids;
    int rv = s->ops->ids(s, &ids);
    if (rv != 0)
        return rv;
    size_t n = avm_list_len(ids);
    char **lines = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const avm_objrec *r = s->ops->get(s, NULL, avm_list_at(ids, i));
        avm_buf b;
        avm_buf_init(&b);
        if (r == NULL)
            avm_buf_puts(&b, "MISSING\n");
        else
            st_rec_line(&b, r);
        lines[i] = strdup(avm_buf_cstr(&b));
        avm_buf_free(&b);
    }
    qsort(lines, n, sizeof(char *), st_cmp_str);
    for (size_t i = 0; i < n; i++) {
        avm_buf_puts(out, lines[i]);
        free(lines[i]);
    }
    free(lines);
    avm_val_release(ids);
    return out->err;
}

#endif
