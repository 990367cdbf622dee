/* Canonical msgpack encoding of values and a bounded, non-recursive decoder.
 *
 * Written by hand rather than with msgpack-c: its unpacker allocates what a length
 * prefix announces before looking at the input, so six hostile bytes
 * (dd ff ff ff ff ..) would make it reserve 4 Gi elements. Here every count is
 * compared with the bytes that remain before anything is allocated.
 *
 * Format reference: the msgpack specification,
 * https://github.com/msgpack/msgpack/blob/master/spec.md */
#include "codec.h"

#include <assert.h>
#include <string.h>

#include "avm_err.h"

/* Type bytes. The fix* families are ranges: positive fixint 0x00-0x7f, fixmap
 * 0x80-0x8f, fixarray 0x90-0x9f, fixstr 0xa0-0xbf, negative fixint 0xe0-0xff. */
enum {
    MP_FIXMAP = 0x80,
    MP_FIXARRAY = 0x90,
    MP_FIXSTR = 0xa0,
    MP_NIL = 0xc0,
    MP_NEVER_USED = 0xc1,
    MP_FALSE = 0xc2,
    MP_TRUE = 0xc3,
    MP_BIN8 = 0xc4,
    MP_BIN16 = 0xc5,
    MP_BIN32 = 0xc6,
    MP_EXT8 = 0xc7,
    MP_EXT16 = 0xc8,
    MP_EXT32 = 0xc9,
    MP_FLOAT32 = 0xca,
    MP_FLOAT64 = 0xcb,
    MP_UINT8 = 0xcc,
    MP_UINT16 = 0xcd,
    MP_UINT32 = 0xce,
    MP_UINT64 = 0xcf,
    MP_INT8 = 0xd0,
    MP_INT16 = 0xd1,
    MP_INT32 = 0xd2,
    MP_INT64 = 0xd3,
    MP_FIXEXT1 = 0xd4,
    MP_FIXEXT2 = 0xd5,
    MP_FIXEXT4 = 0xd6,
    MP_FIXEXT8 = 0xd7,
    MP_FIXEXT16 = 0xd8,
    MP_STR8 = 0xd9,
    MP_STR16 = 0xda,
    MP_STR32 = 0xdb,
    MP_ARRAY16 = 0xdc,
    MP_ARRAY32 = 0xdd,
    MP_MAP16 = 0xde,
    MP_MAP32 = 0xdf,
    MP_NEGFIXINT = 0xe0,
};

/* Writers. */

/* A type byte followed by the low nbytes of v, big-endian (msgpack's byte order). */
static inline void put_tagged(avm_buf *b, uint8_t tag, uint64_t v, unsigned nbytes)
{
    /* Written in place: this runs for every scalar of every encoded value. */
    if ((b->len + 10 >= b->cap || b->err) && avm_buf_reserve(b, 10) != 0)
        return;
    uint8_t *p = (uint8_t *)b->data + b->len;
    p[0] = tag;
    for (unsigned i = 0; i < nbytes; i++)
        p[1 + i] = (uint8_t)(v >> (8 * (nbytes - 1 - i)));
    b->len += 1 + nbytes;
    b->data[b->len] = '\0';
}

/* The smallest of the three length forms (8, 16 or 32 bits) that holds n. */
static void put_len(avm_buf *b, uint8_t tag8, uint32_t n)
{
    if (n <= 0xff)
        put_tagged(b, tag8, n, 1);
    else if (n <= 0xffff)
        put_tagged(b, (uint8_t)(tag8 + 1), n, 2);
    else
        put_tagged(b, (uint8_t)(tag8 + 2), n, 4);
}

void avm_mp_put_nil(avm_buf *b)
{
    uint8_t c = MP_NIL;
    avm_buf_put(b, &c, 1);
}

void avm_mp_put_bool(avm_buf *b, bool v)
{
    uint8_t c = v ? MP_TRUE : MP_FALSE;
    avm_buf_put(b, &c, 1);
}

void avm_mp_put_uint(avm_buf *b, uint64_t v)
{
    if (v <= 0x7f)
        put_tagged(b, (uint8_t)v, 0, 0);
    else if (v <= 0xff)
        put_tagged(b, MP_UINT8, v, 1);
    else if (v <= 0xffff)
        put_tagged(b, MP_UINT16, v, 2);
    else if (v <= 0xffffffffu)
        put_tagged(b, MP_UINT32, v, 4);
    else
        put_tagged(b, MP_UINT64, v, 8);
}

void avm_mp_put_int(avm_buf *b, int64_t v)
{
    /* Non-negative values always take the unsigned forms, so each integer has
     * exactly one encoding. The casts keep the two's complement bits. */
    if (v >= 0)
        avm_mp_put_uint(b, (uint64_t)v);
    else if (v >= -32)
        put_tagged(b, (uint8_t)(int8_t)v, 0, 0);
    else if (v >= INT8_MIN)
        put_tagged(b, MP_INT8, (uint64_t)v, 1);
    else if (v >= INT16_MIN)
        put_tagged(b, MP_INT16, (uint64_t)v, 2);
    else if (v >= INT32_MIN)
        put_tagged(b, MP_INT32, (uint64_t)v, 4);
    else
        put_tagged(b, MP_INT64, (uint64_t)v, 8);
}

void avm_mp_put_str(avm_buf *b, const char *s, size_t n)
{
    assert(n <= UINT32_MAX);
    if (n < 32)
        put_tagged(b, (uint8_t)(MP_FIXSTR | n), 0, 0);
    else
        put_len(b, MP_STR8, (uint32_t)n);
    if (n > 0)
        avm_buf_put(b, s, n);
}

void avm_mp_put_bin(avm_buf *b, const void *p, size_t n)
{
    assert(n <= UINT32_MAX);
    put_len(b, MP_BIN8, (uint32_t)n);
    if (n > 0)
        avm_buf_put(b, p, n);
}

void avm_mp_put_array(avm_buf *b, uint32_t n)
{
    if (n < 16)
        put_tagged(b, (uint8_t)(MP_FIXARRAY | n), 0, 0);
    else if (n <= 0xffff)
        put_tagged(b, MP_ARRAY16, n, 2);
    else
        put_tagged(b, MP_ARRAY32, n, 4);
}

void avm_mp_put_map(avm_buf *b, uint32_t n)
{
    if (n < 16)
        put_tagged(b, (uint8_t)(MP_FIXMAP | n), 0, 0);
    else if (n <= 0xffff)
        put_tagged(b, MP_MAP16, n, 2);
    else
        put_tagged(b, MP_MAP32, n, 4);
}

/* Ext: the fixext forms when the payload size allows, as the specification's
 * "smallest form" rule (and msgpack-c) does; ext8/16/32 otherwise. */
static void put_ext(avm_buf *b, int8_t type, const void *p, size_t n)
{
    assert(n <= UINT32_MAX);
    uint8_t t = (uint8_t)type;
    switch (n) {
    case 1:
        put_tagged(b, MP_FIXEXT1, t, 1);
        break;
    case 2:
        put_tagged(b, MP_FIXEXT2, t, 1);
        break;
    case 4:
        put_tagged(b, MP_FIXEXT4, t, 1);
        break;
    case 8:
        put_tagged(b, MP_FIXEXT8, t, 1);
        break;
    case 16:
        put_tagged(b, MP_FIXEXT16, t, 1);
        break;
    default:
        put_len(b, MP_EXT8, (uint32_t)n);
        avm_buf_put(b, &t, 1);
    }
    if (n > 0)
        avm_buf_put(b, p, n);
}

/* Recursion is bounded: lists deeper than the decoder accepts are refused. */
static int encode_val(avm_buf *b, avm_val v, unsigned depth)
{
    switch (v.kind) {
    case AVM_NIL:
        avm_mp_put_nil(b);
        break;
    case AVM_BOOL:
        avm_mp_put_bool(b, v.u.b);
        break;
    case AVM_INT:
        avm_mp_put_int(b, v.u.i);
        break;
    case AVM_STR:
        avm_mp_put_str(b, v.u.s->data, v.u.s->len);
        break;
    case AVM_LIST:
        if (depth >= AVM_MAX_DEPTH)
            return AVM_ETOODEEP;
        avm_mp_put_array(b, v.u.l->len);
        for (uint32_t i = 0; i < v.u.l->len; i++) {
            int rv = encode_val(b, v.u.l->items[i], depth + 1);
            if (rv != 0)
                return rv;
        }
        break;
    case AVM_SYM: {
        if (depth >= AVM_MAX_DEPTH)
            return AVM_ETOODEEP;
        avm_val l = v;
        l.kind = AVM_LIST;
        avm_buf sub;
        avm_buf_init(&sub);
        int rv = encode_val(&sub, l, depth);
        if (rv == 0)
            put_ext(b, AVM_EXT_SYM, sub.data, sub.len);
        avm_buf_free(&sub);
        if (rv != 0)
            return rv;
        break;
    }
    default:
        assert(AVM_KIND_IS_ID(v.kind));
        put_ext(b, (int8_t)(v.kind - AVM_OBJID + AVM_EXT_OBJID), v.u.s->data, v.u.s->len);
    }
    return b->err;
}

int avm_val_encode(avm_buf *b, avm_val v)
{
    return encode_val(b, v, 0);
}

/* Reader. */

void avm_mp_reader_init(avm_mp_reader *r, const uint8_t *p, size_t n, size_t budget)
{
    r->p = p;
    r->end = n > 0 ? p + n : p; /* p may be NULL when n is 0: no arithmetic on it */
    r->budget = budget;
}

static size_t remaining(const avm_mp_reader *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t load_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Consumes the type byte and the n-byte big-endian field after it. */
static int take_field(avm_mp_reader *r, unsigned n, uint64_t *v)
{
    if (remaining(r) < 1 + (size_t)n)
        return AVM_ETRUNCATED;
    *v = load_be(r->p + 1, n);
    r->p += 1 + n;
    return 0;
}

static int peek_tag(const avm_mp_reader *r, uint8_t *t)
{
    if (r->p >= r->end)
        return AVM_ETRUNCATED;
    *t = r->p[0];
    return 0;
}

/* Takes cost bytes from the memory budget of the values being decoded. */
static int charge(avm_mp_reader *r, size_t cost)
{
    if (cost > r->budget)
        return AVM_ETOOBIG;
    r->budget -= cost;
    return 0;
}

bool avm_mp_peek_nil(const avm_mp_reader *r)
{
    return r->p < r->end && r->p[0] == MP_NIL;
}

int avm_mp_get_nil(avm_mp_reader *r)
{
    uint8_t t;
    int rv = peek_tag(r, &t);
    if (rv != 0)
        return rv;
    if (t != MP_NIL)
        return AVM_EMALFORMED;
    r->p++;
    return 0;
}

int avm_mp_get_bool(avm_mp_reader *r, bool *v)
{
    uint8_t t;
    int rv = peek_tag(r, &t);
    if (rv != 0)
        return rv;
    if (t != MP_TRUE && t != MP_FALSE)
        return AVM_EMALFORMED;
    *v = t == MP_TRUE;
    r->p++;
    return 0;
}

/* Any integer form, canonical or not. A negative value comes back in *neg_v with
 * *is_neg set; a non-negative one (even from a signed form) in *pos_v. */
static int get_integer(avm_mp_reader *r, bool *is_neg, int64_t *neg_v, uint64_t *pos_v)
{
    uint8_t t;
    uint64_t raw;
    unsigned width;
    bool is_signed;
    int rv = peek_tag(r, &t);
    if (rv != 0)
        return rv;
    if (t <= 0x7f || t >= MP_NEGFIXINT) {
        r->p++;
        *is_neg = t >= MP_NEGFIXINT;
        if (*is_neg)
            *neg_v = (int64_t)t - 256;
        else
            *pos_v = t;
        return 0;
    }
    if (t >= MP_UINT8 && t <= MP_UINT64) {
        width = 1u << (t - MP_UINT8);
        is_signed = false;
    } else if (t >= MP_INT8 && t <= MP_INT64) {
        width = 1u << (t - MP_INT8);
        is_signed = true;
    } else {
        return AVM_EMALFORMED;
    }
    rv = take_field(r, width, &raw);
    if (rv != 0)
        return rv;
    if (!is_signed || (raw >> (8 * width - 1)) == 0) {
        /* Unsigned, or signed with a clear sign bit: the value is raw itself. */
        *is_neg = false;
        *pos_v = raw;
        return 0;
    }
    /* Sign-extend the two's complement field to 64 bits, then convert without
     * relying on implementation-defined unsigned-to-signed conversion. */
    if (width < 8)
        raw |= ~UINT64_C(0) << (8 * width);
    *is_neg = true;
    *neg_v = -(int64_t)(~raw) - 1;
    return 0;
}

int avm_mp_get_int(avm_mp_reader *r, int64_t *v)
{
    bool neg;
    int64_t n;
    uint64_t u;
    int rv = get_integer(r, &neg, &n, &u);
    if (rv != 0)
        return rv;
    if (neg) {
        *v = n;
        return 0;
    }
    /* AVM integers are int64: a larger uint64 is not a value we can represent. */
    if (u > INT64_MAX)
        return AVM_EMALFORMED;
    *v = (int64_t)u;
    return 0;
}

int avm_mp_get_uint(avm_mp_reader *r, uint64_t *v)
{
    bool neg;
    int64_t n;
    uint64_t u;
    int rv = get_integer(r, &neg, &n, &u);
    if (rv != 0)
        return rv;
    if (neg)
        return AVM_EMALFORMED;
    *v = u;
    return 0;
}

/* Reads a length of the form tag8/tag16/tag32 (consecutive type bytes). */
static int get_len_form(avm_mp_reader *r, uint8_t t, uint8_t tag8, uint32_t *n)
{
    uint64_t raw;
    int rv = take_field(r, 1u << (t - tag8), &raw);
    if (rv != 0)
        return rv;
    *n = (uint32_t)raw;
    return 0;
}

/* Checks that n payload bytes remain, then returns them and moves past them. */
static int take_bytes(avm_mp_reader *r, uint32_t n, const uint8_t **p)
{
    if (remaining(r) < n)
        return AVM_ETRUNCATED;
    *p = r->p;
    r->p += n;
    return 0;
}

int avm_mp_get_str(avm_mp_reader *r, const char **s, uint32_t *n)
{
    uint8_t t;
    int rv = peek_tag(r, &t);
    if (rv != 0)
        return rv;
    if ((t & 0xe0) == MP_FIXSTR) {
        r->p++;
        *n = t & 0x1f;
    } else if (t >= MP_STR8 && t <= MP_STR32) {
        rv = get_len_form(r, t, MP_STR8, n);
        if (rv != 0)
            return rv;
    } else {
        return AVM_EMALFORMED;
    }
    const uint8_t *p;
    rv = take_bytes(r, *n, &p);
    if (rv != 0)
        return rv;
    *s = (const char *)p;
    return 0;
}

int avm_mp_get_bin(avm_mp_reader *r, const uint8_t **p, uint32_t *n)
{
    uint8_t t;
    int rv = peek_tag(r, &t);
    if (rv != 0)
        return rv;
    if (t < MP_BIN8 || t > MP_BIN32)
        return AVM_EMALFORMED;
    rv = get_len_form(r, t, MP_BIN8, n);
    if (rv != 0)
        return rv;
    return take_bytes(r, *n, p);
}

int avm_mp_get_array(avm_mp_reader *r, uint32_t *n)
{
    uint8_t t;
    int rv = peek_tag(r, &t);
    if (rv != 0)
        return rv;
    if ((t & 0xf0) == MP_FIXARRAY) {
        r->p++;
        *n = t & 0x0f;
    } else if (t == MP_ARRAY16 || t == MP_ARRAY32) {
        rv = get_len_form(r, t, MP_ARRAY16 - 1, n);
        if (rv != 0)
            return rv;
    } else {
        return AVM_EMALFORMED;
    }
    /* Each element takes at least one byte. */
    return remaining(r) < *n ? AVM_ETRUNCATED : 0;
}

int avm_mp_get_map(avm_mp_reader *r, uint32_t *n)
{
    uint8_t t;
    int rv = peek_tag(r, &t);
    if (rv != 0)
        return rv;
    if ((t & 0xf0) == MP_FIXMAP) {
        r->p++;
        *n = t & 0x0f;
    } else if (t == MP_MAP16 || t == MP_MAP32) {
        rv = get_len_form(r, t, MP_MAP16 - 1, n);
        if (rv != 0)
            return rv;
    } else {
        return AVM_EMALFORMED;
    }
    /* Each key and each value takes at least one byte. */
    return remaining(r) / 2 < *n ? AVM_ETRUNCATED : 0;
}

static int get_val_at(avm_mp_reader *r, unsigned depth0, avm_val *out);

/* An identifier: ext type 1..4 with the name as payload; or a symbolic value: ext
 * type 5 with its payload list's encoding (decoded at the depth it sits at). */
static int get_ident(avm_mp_reader *r, uint8_t t, unsigned depth, avm_val *out)
{
    uint32_t n;
    int rv;
    if (t >= MP_FIXEXT1 && t <= MP_FIXEXT16) {
        r->p++;
        n = 1u << (t - MP_FIXEXT1);
    } else {
        rv = get_len_form(r, t, MP_EXT8, &n);
        if (rv != 0)
            return rv;
    }
    const uint8_t *type, *payload;
    rv = take_bytes(r, 1, &type);
    if (rv != 0)
        return rv;
    /* The type is a signed byte: 1..4 read the same either way. */
    uint8_t ext = type[0];
    if (ext < AVM_EXT_OBJID || ext > AVM_EXT_SYM)
        return AVM_EMALFORMED;
    rv = take_bytes(r, n, &payload);
    if (rv != 0)
        return rv;
    if (ext == AVM_EXT_SYM) {
        if (depth >= AVM_MAX_DEPTH)
            return AVM_ETOODEEP;
        avm_mp_reader sub;
        avm_mp_reader_init(&sub, payload, n, r->budget);
        avm_val l;
        rv = get_val_at(&sub, depth, &l);
        if (rv != 0)
            return rv;
        r->budget = sub.budget;
        if (sub.p != sub.end || !avm_sym_check(l)) {
            avm_val_release(l);
            return AVM_EMALFORMED;
        }
        l.kind = AVM_SYM;
        *out = l;
        return 0;
    }
    if (n > AVM_MAX_STR_LEN)
        return AVM_ETOOBIG;
    rv = charge(r, sizeof(avm_str) + n + 1);
    if (rv != 0)
        return rv;
    return avm_str_new((avm_kind)(AVM_OBJID + (ext - AVM_EXT_OBJID)),
                       (const char *)payload, n, out);
}

/* One scalar, or the header of a list (returned as a list of nils to fill). */
static int get_item(avm_mp_reader *r, unsigned depth, avm_val *out)
{
    bool list_allowed = depth < AVM_MAX_DEPTH;
    uint8_t t;
    int rv = peek_tag(r, &t);
    if (rv != 0)
        return rv;
    if (t <= 0x7f || t >= MP_NEGFIXINT || (t >= MP_UINT8 && t <= MP_INT64)) {
        int64_t i;
        rv = avm_mp_get_int(r, &i);
        if (rv == 0)
            *out = avm_int(i);
        return rv;
    }
    if ((t & 0xe0) == MP_FIXSTR || (t >= MP_STR8 && t <= MP_STR32)) {
        const char *s;
        uint32_t n;
        rv = avm_mp_get_str(r, &s, &n);
        if (rv != 0)
            return rv;
        if (n > AVM_MAX_STR_LEN)
            return AVM_ETOOBIG;
        rv = charge(r, sizeof(avm_str) + n + 1);
        if (rv != 0)
            return rv;
        return avm_str_new(AVM_STR, s, n, out);
    }
    if ((t & 0xf0) == MP_FIXARRAY || t == MP_ARRAY16 || t == MP_ARRAY32) {
        uint32_t n;
        /* Checked before the header is read so that nothing is allocated. */
        if (!list_allowed)
            return AVM_ETOODEEP;
        rv = avm_mp_get_array(r, &n);
        if (rv != 0)
            return rv;
        if (n > AVM_MAX_LIST_LEN)
            return AVM_ETOOBIG;
        rv = charge(r, sizeof(avm_list) + (size_t)n * sizeof(avm_val));
        if (rv != 0)
            return rv;
        return avm_list_new(n, out);
    }
    if ((t >= MP_FIXEXT1 && t <= MP_FIXEXT16) || (t >= MP_EXT8 && t <= MP_EXT32))
        return get_ident(r, t, depth, out);
    switch (t) {
    case MP_NIL:
        r->p++;
        *out = avm_nil();
        return 0;
    case MP_FALSE:
    case MP_TRUE:
        r->p++;
        *out = avm_bool(t == MP_TRUE);
        return 0;
    default:
        /* Maps, binary, floats (the AVM has no floats) and the never-used 0xc1. */
        return AVM_EMALFORMED;
    }
}

/* Iterative, with an explicit stack of the lists being filled, so that hostile
 * nesting costs no C stack and fails at AVM_MAX_DEPTH open lists. */
int avm_mp_get_val(avm_mp_reader *r, avm_val *out)
{
    return get_val_at(r, 0, out);
}

/* depth0: lists already open around this value (a symbolic value's payload). */
static int get_val_at(avm_mp_reader *r, unsigned depth0, avm_val *out)
{
    struct open_list {
        avm_list *l;
        uint32_t next; /* index of the next item to fill */
    } open[AVM_MAX_DEPTH];
    unsigned depth = 0;
    avm_val v;
    int rv;

    for (;;) {
        rv = get_item(r, depth0 + depth, &v);
        if (rv != 0)
            goto err;
        if (v.kind == AVM_LIST && v.u.l->len > 0) {
            open[depth].l = v.u.l;
            open[depth].next = 0;
            depth++;
            continue;
        }
        /* v is complete: store it in its parent, closing every list it fills. */
        for (;;) {
            if (depth == 0) {
                *out = v;
                return 0;
            }
            struct open_list *o = &open[depth - 1];
            o->l->items[o->next++] = v;
            if (o->next < o->l->len)
                break;
            v.kind = AVM_LIST;
            v.u.l = o->l;
            avm_list_seal(v);
            depth--;
        }
    }

err:
    /* An open list is not yet stored in its parent, so each is released on its
     * own; its unfilled slots still hold nil. */
    while (depth > 0) {
        v.kind = AVM_LIST;
        v.u.l = open[--depth].l;
        avm_val_release(v);
    }
    return rv;
}

int avm_val_decode(const uint8_t *p, size_t n, size_t max_bytes, avm_val *out,
                   size_t *used)
{
    avm_mp_reader r;
    avm_mp_reader_init(&r, p, n, max_bytes ? max_bytes : AVM_DECODE_DEFAULT_MAX);
    int rv = avm_mp_get_val(&r, out);
    if (rv != 0)
        return rv;
    if (used != NULL)
        *used = (size_t)(r.p - p);
    return 0;
}

int avm_val_decode_all(const uint8_t *p, size_t n, avm_val *out)
{
    size_t used;
    int rv = avm_val_decode(p, n, 0, out, &used);
    if (rv != 0)
        return rv;
    if (used != n) {
        avm_val_release(*out);
        return AVM_EMALFORMED;
    }
    return 0;
}
