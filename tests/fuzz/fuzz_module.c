/* Fuzz target: the program loader. Arbitrary bytes as an encoded module, which is
 * what avmctl run sends a node (the "module" of a run request) and what a node
 * reads from a peer or its store: decoded and verified, never run. Properties
 * checked (abort() on violation):
 *   - a refused module comes with a message and one of the codes module.h names;
 *   - an accepted module verifies again, has a height for the entry of each of
 *     its functions, is found by name as avmd looks an entry up, and re-encodes
 *     to bytes that decode to the same hash.
 * Crashes, leaks and sanitizer reports are findings too. fuzz_decode also feeds
 * its inputs to the loader; this target's seeds are compiled programs, so the
 * fuzzer spends its time inside real modules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "compiler.h"
#include "fuzz.h"
#include "module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    avm_module *m = NULL;
    char msg[256];
    msg[0] = '\0';
    int rv = avm_module_decode(data, size, &m, msg, sizeof(msg));
    if (rv != 0) {
        if (m != NULL || msg[0] == '\0')
            abort();
        if (rv != AVM_EMALFORMED && rv != AVM_EVERSION && rv != AVM_EVERIFY &&
            rv != AVM_ETOOBIG && rv != AVM_ETOODEEP && rv != AVM_ETRUNCATED &&
            rv != AVM_ENOMEM)
            abort();
        return 0;
    }
    if (m == NULL || m->rc != 1 || avm_module_verify(m, msg, sizeof(msg)) != 0)
        abort();
    if (m->main_fn >= 0 && (uint32_t)m->main_fn >= m->nfuncs)
        abort();
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        uint32_t h;
        if (avm_module_height_at(m, i, 0, &h) != 0 || h != 0)
            abort();
        const avm_str *name = m->funcs[i].name.u.s;
        if (strlen(name->data) == name->len &&
            avm_module_find(m, name->data, m->funcs[i].kind) < 0)
            abort();
        (void)avm_module_fn_unsafe(m, i);
    }
    avm_buf a;
    avm_buf_init(&a);
    if (avm_module_encode(m, &a) != 0)
        abort();
    avm_module *d = NULL;
    if (avm_module_decode((const uint8_t *)a.data, a.len, &d, msg, sizeof(msg)) != 0 ||
        memcmp(d->hash, m->hash, sizeof(m->hash)) != 0)
        abort();
    avm_module_release(d);
    avm_buf_free(&a);
    avm_module_release(m);
    return 0;
}

/* Seeds: modules compiled from programs that use every kind of function, many
 * instructions and constants of every kind. */
static const char *const programs[] = {
    "(behavior ping\n"
    "  (let ((msg (input)))\n"
    "    (if (< (get msg 'counter) (get msg 'max))\n"
    "        (do (call (get msg 'partner)\n"
    "                  (list (list 'type 'pong) (list 'counter (+ (get msg 'counter) "
    "1))\n"
    "                        (list 'partner (self)) (list 'max (get msg 'max))))\n"
    "            (list \"ping-continue\"))\n"
    "        (list \"ping-done\"))))\n"
    "(pure add (a b) (+ a b))\n"
    "(defun count-down (n acc) (if (<= n 0) acc (count-down (- n 1) (cons n acc))))\n"
    "(main\n"
    "  (let ((tx (beginTx))\n"
    "        (p (createObj \"ping\")))\n"
    "    (commitTx tx)\n"
    "    (list (callPure \"add\" (list 1 2)) (count-down 3 '()))))\n",
    "(pure big? (meta) (> (length meta) 2))\n"
    "(defun named? (beh meta) (= beh \"ping\"))\n"
    "(defun f (x) (cond ((> x 1) (scryMeta big?)) ((< x 0)) (else (scryDeep named?))))\n"
    "(main (let ((a 1) (b '(1 \"x\" #obj\"o/1\" (#t #f nil)))) (set! a (str a "
    "\"\\x41\\n\"))\n"
    "  (when a (unless b (or a b (and a b)))) (registerPure \"big\" big?)\n"
    "  (updatePure \"big\" big?) (begin (f a) (do)) (- a) (* 1 2 3)))\n",
    "(main (list -9223372036854775808 9223372036854775807 #ctl\"main\"\n"
    "  #mach\"node1\" #tx\"node1/t2\" 'sym \"a\\\"b\\\\c\\t\\r\" (reflect "
    "#obj\"n/1\")))\n",
    "(behavior counter (let ((s (getState))) (setState (cons (input) s)) (list s)))\n"
    "(main (let ((c (createObj \"counter\" #ctl\"main\")) (t (beginTx)))\n"
    "  (call c 7) (let ((u (beginTx))) (call c 8) (abortTx u))\n"
    "  (commitTx t) (getState)))\n",
    "(defun transfer (from to n)\n"
    "  (let ((t (beginTx)))\n"
    "    (call from (list 'withdraw n)) (call to (list 'deposit n)) (commitTx t)))\n"
    "(behavior account (let ((m (input)) (s (getState)))\n"
    "  (cond ((= (get m 0) 'withdraw) (setState (list (- (get s 0) (get m 1)))))\n"
    "        (else (setState (list (+ (get s 0) (get m 1))))))\n"
    "  (list (getState))))\n"
    "(main (let ((a (createObj \"account\")) (b (createObj \"account\")))\n"
    "  (transfer a b 10)))\n",
};

enum { NPROGS = sizeof(programs) / sizeof(programs[0]) };

const char *const *fuzz_seeds(size_t *n)
{
    static const char *seeds[NPROGS];
    static size_t count;
    static bool built;
    if (!built) {
        for (size_t i = 0; i < NPROGS; i++) {
            avm_module *m = NULL;
            avm_diag d;
            if (avm_compile("seed.avm", programs[i], strlen(programs[i]), &m, &d) != 0) {
                char msg[800];
                avm_diag_format(&d, msg, sizeof(msg));
                fprintf(stderr, "fuzz_module: seed %zu does not compile: %s\n", i, msg);
                abort();
            }
            avm_buf b;
            avm_buf_init(&b);
            if (avm_module_encode(m, &b) != 0)
                abort();
            char *s = malloc(4 + 2 * b.len + 1);
            if (s == NULL)
                abort();
            memcpy(s, "hex:", 4);
            for (size_t j = 0; j < b.len; j++)
                snprintf(s + 4 + 2 * j, 3, "%02x", (unsigned char)b.data[j]);
            seeds[count++] = s;
            avm_buf_free(&b);
            avm_module_release(m);
        }
        built = true;
    }
    *n = count;
    return seeds;
}
