/* Fuzz target: arbitrary bytes as a node-to-node link frame (transport/link.h), as
 * a node decodes every frame read from its link port. Properties checked (abort()
 * on violation):
 *   - a refused frame comes with a cause and owns no body; one over max_frame is
 *     refused with AVM_ETOOBIG;
 *   - an accepted frame has a known kind, a sender and word without NUL bytes
 *     within their limits, and re-encodes to canonical bytes (no longer than the
 *     input) that decode to the same frame.
 * Crashes, leaks and sanitizer reports are findings too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "fuzz.h"
#include "link.h"
#include "transport_internal.h"

/* Small, so that inputs of a few kilobytes reach the limit. */
#define MAX_FRAME 3000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    avm_link__frame f;
    const char *why = NULL;
    int rv = avm_link__decode_frame(data, size, MAX_FRAME, &f, &why);
    if (rv != 0) {
        if (why == NULL || why[0] == '\0' || f.body.kind != AVM_NIL)
            abort();
        if ((size > MAX_FRAME) != (rv == AVM_ETOOBIG))
            abort();
        return 0;
    }
    if (size > MAX_FRAME || f.kind > 4 || strlen(f.from) >= sizeof(f.from) ||
        strlen(f.word) >= sizeof(f.word))
        abort();

    avm_buf b;
    avm_buf_init(&b);
    if (avm_link__encode_frame(&b, &f) != 0)
        abort();
    if (b.len > size)
        abort(); /* the canonical encoding is the shortest */
    avm_link__frame g;
    why = NULL;
    if (avm_link__decode_frame((const uint8_t *)b.data, b.len, MAX_FRAME, &g, &why) != 0)
        abort();
    if (strcmp(f.from, g.from) != 0 || strcmp(f.word, g.word) != 0 || f.kind != g.kind ||
        f.seq != g.seq || f.ack != g.ack || f.corr != g.corr ||
        !avm_val_eq(f.body, g.body))
        abort();
    avm_val_release(g.body);
    avm_val_release(f.body);
    avm_buf_free(&b);
    return 0;
}

/* Seeds: frames of every kind as a node sends them, built by the link's encoder. */

static avm_val str(const char *s)
{
    avm_val v;
    if (avm_cstr(AVM_STR, s, &v) != 0)
        abort();
    return v;
}

static char *seed(const char *from, uint64_t kind, uint64_t seq, uint64_t ack,
                  uint64_t corr, const char *word, avm_val body)
{
    avm_link__frame f;
    memset(&f, 0, sizeof(f));
    snprintf(f.from, sizeof(f.from), "%s", from);
    snprintf(f.word, sizeof(f.word), "%s", word);
    f.kind = kind;
    f.seq = seq;
    f.ack = ack;
    f.corr = corr;
    f.body = body;
    avm_buf b;
    avm_buf_init(&b);
    if (avm_link__encode_frame(&b, &f) != 0)
        abort();
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(4 + 2 * b.len + 1);
    if (s == NULL)
        abort();
    memcpy(s, "hex:", 4);
    for (size_t i = 0; i < b.len; i++) {
        s[4 + 2 * i] = digits[(uint8_t)b.data[i] >> 4];
        s[4 + 2 * i + 1] = digits[(uint8_t)b.data[i] & 0x0f];
    }
    s[4 + 2 * b.len] = '\0';
    avm_buf_free(&b);
    avm_val_release(body);
    return s;
}

enum { NSEEDS = 8 };

const char *const *fuzz_seeds(size_t *n)
{
    static const char *seeds[NSEEDS];
    static bool built;
    if (!built) {
        size_t k = 0;
        avm_val hb[4] = {avm_int(123456789), avm_int(0), avm_int(16 << 20),
                         str("tcp://127.0.0.1:7001")};
        avm_val v;
        if (avm_list_from(hb, 4, &v) != 0)
            abort();
        seeds[k++] = seed("node1", 4, 0, 0, 0, "", v);
        avm_val hb3[3] = {avm_int(42), avm_int(7), avm_int(1 << 20)};
        if (avm_list_from(hb3, 3, &v) != 0)
            abort();
        seeds[k++] = seed("n2", 4, 0, 17, 0, "", v);
        avm_val msg[3] = {str("post"), avm_int(5), avm_nil()};
        if (avm_list_from(msg, 3, &v) != 0)
            abort();
        seeds[k++] = seed("node1", 0, 1, 0, 0, "", v);
        seeds[k++] = seed("node-2", 1, 2, 1, 9, "ctrl.create", str("orders"));
        seeds[k++] = seed("node-2", 2, 3, 2, 9, "", avm_int(-1));
        seeds[k++] = seed("node-2", 3, 4, 3, 10, "ENOTFOUND", str("no object n/7"));
        avm_val oid;
        if (avm_cstr(AVM_OBJID, "node1/77", &oid) != 0)
            abort();
        seeds[k++] = seed("node1", 1, 18446744073709551615ull, 0, 1, "obj.fetch", oid);
        seeds[k++] = seed("", 0, 1, 0, 0, "", avm_nil());
        if (k != NSEEDS)
            abort();
        built = true;
    }
    *n = NSEEDS;
    return seeds;
}
