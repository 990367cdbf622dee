/* Fuzz target: arbitrary bytes as a control frame (transport/control.h), which is
 * what a node reads from any client. Properties checked (abort() on violation):
 *   - a refused frame comes with a message, owns no body, and carries an id only
 *     when the header up to the id was readable;
 *   - an accepted frame re-encodes to bytes that decode to the same frame, and
 *     those bytes are canonical (no longer than the input);
 *   - the body helpers never fail on any body: a string from avm_ctl_get_str is
 *     NUL-terminated at its length, the getters agree with avm_ctl_get.
 * Crashes, leaks and sanitizer reports are findings too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "control.h"
#include "fuzz.h"

static void check_body(avm_val body)
{
    static const char *const keys[] = {"id", "code", "message", "ms", ""};
    char msg[256];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        avm_val v = avm_ctl_get(body, keys[i]);
        const char *s;
        int64_t n;
        int rv = avm_ctl_get_str(body, keys[i], &s, msg, sizeof(msg));
        if (rv == 0 && (v.kind != AVM_STR || strlen(s) != v.u.s->len))
            abort();
        if (rv != 0 && (rv != AVM_EINVAL || msg[0] == '\0'))
            abort();
        rv = avm_ctl_get_int(body, keys[i], &n, msg, sizeof(msg));
        if (rv == 0 && (v.kind != AVM_INT || v.u.i != n))
            abort();
        if (rv != 0 && (rv != AVM_EINVAL || msg[0] == '\0'))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    avm_ctl_frame f;
    char msg[256];
    msg[0] = '\0';
    int rv = avm_ctl_decode(data, size, &f, msg, sizeof(msg));
    if (rv != 0) {
        if (msg[0] == '\0' || f.body.kind != AVM_NIL)
            abort();
        /* The id sits after a fixarray/array header, the magic and the version:
         * eleven bytes at the very least. */
        if (f.id != 0 && size < 11)
            abort();
        return 0;
    }
    check_body(f.body);

    avm_buf b;
    avm_buf_init(&b);
    if (avm_ctl_encode(&b, f.id, f.word, f.body) != 0)
        abort();
    if (b.len > size)
        abort(); /* the canonical encoding is the shortest */
    avm_ctl_frame g;
    if (avm_ctl_decode((const uint8_t *)b.data, b.len, &g, msg, sizeof(msg)) != 0)
        abort();
    if (g.id != f.id || g.version != f.version || strcmp(g.word, f.word) != 0 ||
        !avm_val_eq(g.body, f.body))
        abort();
    avm_val_release(g.body);
    avm_val_release(f.body);
    avm_buf_free(&b);
    return 0;
}

/* Seeds: requests and replies as the protocol has them (docs/protocol.md), and a
 * few of the malformed shapes the server names. Hex, since frames hold NULs. */
static const char *const seeds[] = {
    /* ["avm-ctl" 1 1 "status" ()] */
    "hex:95 a7 61 76 6d 2d 63 74 6c 01 01 a6 73 74 61 74 75 73 90",
    /* ["avm-ctl" 1 2 "exec.show" (("id" "node1/x7"))] */
    "hex:95 a7 61 76 6d 2d 63 74 6c 01 02 a9 65 78 65 63 2e 73 68 6f 77"
    " 91 92 a2 69 64 a8 6e 6f 64 65 31 2f 78 37",
    /* ["avm-ctl" 1 3 "exec.result" (("id" "n/x1") ("wait_ms" 500))] */
    "hex:95 a7 61 76 6d 2d 63 74 6c 01 03 ab 65 78 65 63 2e 72 65 73 75 6c 74"
    " 92 92 a2 69 64 a4 6e 2f 78 31 92 a7 77 61 69 74 5f 6d 73 cd 01 f4",
    /* ["avm-ctl" 1 4 "send" (("to" #obj"n/7") ("value" (1 #t nil)))] */
    "hex:95 a7 61 76 6d 2d 63 74 6c 01 04 a4 73 65 6e 64"
    " 92 92 a2 74 6f d6 01 6e 2f 37 00 92 a5 76 61 6c 75 65 93 01 c3 c0",
    /* ["avm-ctl" 1 5 "ok" (("name" "node1") ("pid" 4242))] */
    "hex:95 a7 61 76 6d 2d 63 74 6c 01 05 a2 6f 6b"
    " 92 92 a4 6e 61 6d 65 a5 6e 6f 64 65 31 92 a3 70 69 64 cd 10 92",
    /* ["avm-ctl" 1 6 "error" (("code" "ENOTFOUND") ("message" "no execution x"))] */
    "hex:95 a7 61 76 6d 2d 63 74 6c 01 06 a5 65 72 72 6f 72"
    " 92 92 a4 63 6f 64 65 a9 45 4e 4f 54 46 4f 55 4e 44"
    " 92 a7 6d 65 73 73 61 67 65 ae 6e 6f 20 65 78 65 63 75 74 69 6f 6e 20 78",
    /* version 2 */
    "hex:95 a7 61 76 6d 2d 63 74 6c 02 07 a4 65 63 68 6f 90",
    /* an array of 4 */
    "hex:94 a7 61 76 6d 2d 63 74 6c 01 08 a4 65 63 68 6f",
    /* the id as a uint64 and the body nested 16 deep */
    "hex:95 a7 61 76 6d 2d 63 74 6c 01 cf 00 00 00 01 00 00 00 00 a4 65 63 68 6f"
    " 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 c0",
    /* array16 header, str8 op */
    "hex:dc 00 05 a7 61 76 6d 2d 63 74 6c 01 09 d9 04 65 63 68 6f 90",
};

const char *const *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}
