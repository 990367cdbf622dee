/* Fuzz target: arbitrary bytes as a serialized execution state (what a node reads
 * back from its store to resume an execution). Properties checked (abort() on
 * violation):
 *   - a refused state comes with a message naming the cause;
 *   - an accepted state re-encodes to bytes that decode again, and runs (a bounded
 *     number of instructions) on the embedded node without memory errors;
 *   - the trace of an accepted state decodes.
 * Crashes, leaks and sanitizer reports are findings too. The seeds are states of
 * the examples taken in the middle of their runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "embedded.h"
#include "fuzz.h"
#include "module.h"
#include "vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    avm_embedded e;
    if (avm_embedded_init(&e, "node1", "main") != 0)
        abort();
    avm_exec *x = NULL;
    char err[512] = "";
    int rv = avm_exec_decode(data, size, &e.plat, &x, err, sizeof(err));
    if (rv != 0) {
        if (err[0] == '\0')
            abort();
        avm_embedded_close(&e);
        return 0;
    }
    avm_buf b;
    avm_buf_init(&b);
    if (avm_exec_encode(x, &b) != 0)
        abort();
    avm_exec *y = NULL;
    if (avm_exec_decode((const uint8_t *)b.data, b.len, &e.plat, &y, err, sizeof(err)) !=
        0)
        abort();
    avm_exec_free(y);
    avm_buf_free(&b);
    if (avm_exec_trace_len(x) > 0 && avm_exec_trace(x) == NULL)
        abort();
    avm_exec_run(x, 20000);
    avm_exec_free(x);
    avm_embedded_close(&e);
    return 0;
}

/* Hex of the state of `src` after `steps` instructions, or NULL. */
static char *state_hex(const char *src, uint64_t steps)
{
    avm_module *m = NULL;
    avm_diag d;
    if (avm_compile("seed.avm", src, strlen(src), &m, &d) != 0)
        return NULL;
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    avm_exec_config cfg = {.keep_trace = true};
    avm_exec *x = NULL;
    char *hex = NULL;
    if (avm_embedded_start(&e, m, -1, &cfg, &x, NULL, 0) == 0) {
        avm_exec_run(x, steps);
        avm_buf b;
        avm_buf_init(&b);
        if (avm_exec_encode(x, &b) == 0) {
            hex = malloc(4 + 2 * b.len + 1);
            if (hex != NULL) {
                memcpy(hex, "hex:", 4);
                for (size_t i = 0; i < b.len; i++)
                    snprintf(hex + 4 + 2 * i, 3, "%02x", (unsigned char)b.data[i]);
            }
        }
        avm_buf_free(&b);
        avm_exec_free(x);
    }
    avm_embedded_close(&e);
    avm_module_release(m);
    return hex;
}

static const char *const programs[] = {
    "(behavior echo (list (input)))\n"
    "(defun loop (o n) (if (= n 0) 0 (do (call o n) (loop o (- n 1)))))\n"
    "(main (let ((t (beginTx)) (o (createObj \"echo\"))) (commitTx t) (loop o 5)))\n",
    "(behavior counter (let ((s (getState))) (setState (cons (input) s)) (list s)))\n"
    "(pure add (a b) (+ a b))\n"
    "(main (let ((c (createObj \"counter\" #ctl\"main\")) (t (beginTx)))\n"
    "  (call c (callPure \"add\" (list 1 2)))\n"
    "  (let ((u (beginTx))) (call c 7) (abortTx u))\n"
    "  (commitTx t) (getState)))\n",
};

const char *const *fuzz_seeds(size_t *n)
{
    static const char *seeds[16];
    static size_t count;
    if (count == 0) {
        static const uint64_t steps[] = {1, 3, 7, 12, 20, 40};
        for (size_t p = 0; p < sizeof(programs) / sizeof(programs[0]); p++)
            for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
                char *h = state_hex(programs[p], steps[s]);
                if (h != NULL && count < 16)
                    seeds[count++] = h;
                else
                    free(h);
            }
    }
    *n = count;
    return seeds;
}
