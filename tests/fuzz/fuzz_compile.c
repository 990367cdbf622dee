/* Fuzz target: the .avm reader and compiler on arbitrary bytes.
 *
 * Properties: no crash, no leak; a failure is AVM_ECOMPILE (or AVM_ENOMEM /
 * AVM_ETOOBIG) with a message and no module; a success is a module that the
 * compiler has already verified and that survives encoding and decoding with the
 * same hash, as it must to be stored or sent to a peer. */
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "compiler.h"
#include "fuzz.h"
#include "module.h"

static void check_roundtrip(const avm_module *m)
{
    avm_buf enc;
    avm_buf_init(&enc);
    int rv = avm_module_encode(m, &enc);
    if (rv == AVM_ENOMEM) {
        avm_buf_free(&enc);
        return;
    }
    if (rv != 0)
        abort();
    avm_module *d = NULL;
    rv = avm_module_decode((const uint8_t *)enc.data, enc.len, &d, NULL, 0);
    if (rv == 0 && memcmp(d->hash, m->hash, sizeof(m->hash)) != 0)
        abort();
    if (rv != 0 && rv != AVM_ENOMEM)
        abort();
    avm_module_release(d);
    avm_buf_free(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    avm_module *m = NULL;
    avm_diag diag;
    int rv = avm_compile("fuzz.avm", (const char *)data, size, &m, &diag);
    if (rv == 0) {
        if (m == NULL)
            abort();
        check_roundtrip(m);
        avm_module_release(m);
        return 0;
    }
    if (m != NULL || diag.msg[0] == '\0')
        abort();
    if (rv != AVM_ECOMPILE && rv != AVM_ENOMEM && rv != AVM_ETOOBIG)
        abort();
    return 0;
}

/* The reference example. */
static const char seed_example[] =
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
    "    (list (callPure \"add\" (list 1 2)) (count-down 3 '()))))\n";

/* Every special form, the scry helpers and function references. */
static const char seed_forms[] =
    "(pure big? (meta) (> (length meta) 2))\n"
    "(defun named? (beh meta) (= beh \"ping\"))\n"
    "(defun f (x) (cond ((> x 1) (scryMeta big?)) ((< x 0)) (else (scryDeep named?))))\n"
    "(main (let ((a 1) (b '(1 \"x\" #obj\"o/1\" (#t #f nil)))) (set! a (str a "
    "\"\\x41\\n\"))\n"
    "  (when a (unless b (or a b (and a b)))) (registerPure \"big\" big?)\n"
    "  (updatePure \"big\" big?) (begin (f a) (do)) (- a) (* 1 2 3)))\n";

/* Literals and comments. */
static const char seed_literals[] =
    "; comment\n(main (list -9223372036854775808 9223372036854775807 #ctl\"main\"\n"
    "  #mach\"node1\" #tx\"node1/t2\" 'sym \"a\\\"b\\\\c\\t\\r\" (reflect "
    "#obj\"n/1\")))\n";

static const char *const seeds[] = {
    seed_example,
    seed_forms,
    seed_literals,
    /* Syntax errors. */
    "(main (list 1 2) \"unterminated",
    "(behaviour b () (list (receive) (sender) (getState) (setState '(1))))\n)",
};

const char *const *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}
