/* Message sequence charts from trace logs (msc.h). The log is decoded whole first, so
 * that a malformed log leaves the output untouched and Mermaid can declare its
 * participants before the first arrow. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "msc.h"

/* Memory the values of one record may take once decoded. */
#define RECORD_BUDGET AVM_DECODE_DEFAULT_MAX

static bool is_chart(unsigned type)
{
    return type >= AVM_MSC_CALL && type <= AVM_MSC_RUNTIME;
}

static void rec_release(avm_event *e)
{
    avm_val_release(e->ctrl);
    for (int i = 0; i < 3; i++)
        avm_val_release(e->a[i]);
}

typedef struct recs {
    avm_event *v;
    size_t n, cap;
} recs;

static void recs_free(recs *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        rec_release(&rs->v[i]);
    free(rs->v);
}

static int recs_push(recs *rs, const avm_event *e)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        avm_event *v = realloc(rs->v, cap * sizeof(*v));
        if (v == NULL)
            return AVM_ENOMEM;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n++] = *e;
    return 0;
}

static const char *cause_of(int rv)
{
    switch (rv) {
    case AVM_ETRUNCATED:
        return "the record ends early";
    case AVM_ETOODEEP:
        return "a value nests too deeply";
    case AVM_ETOOBIG:
        return "a value exceeds a size limit";
    case AVM_ENOMEM:
        return "out of memory";
    default:
        return "a field does not decode";
    }
}

/* Decodes one record starting at r->p into *e (owned by the caller on success). */
static int decode_one(avm_mp_reader *r, avm_event *e, char *cause, size_t causelen)
{
    uint32_t n;
    uint64_t ts, type, ecode;
    memset(e, 0, sizeof(*e));
    r->budget = RECORD_BUDGET;
    int rv = avm_mp_get_array(r, &n);
    if (rv != 0) {
        snprintf(cause, causelen, "%s",
                 rv == AVM_ETRUNCATED ? cause_of(rv) : "the record is not an array");
        return rv;
    }
    if (n != 8) {
        snprintf(cause, causelen, "the record is an array of %u, not 8", n);
        return AVM_EMALFORMED;
    }
    const char *field = "timestamp";
    if ((rv = avm_mp_get_uint(r, &ts)) != 0)
        goto bad_field;
    field = "type";
    if ((rv = avm_mp_get_uint(r, &type)) != 0)
        goto bad_field;
    if (type >= AVM_EV_COUNT && (type < AVM_MSC_CALL || type > AVM_MSC_RUNTIME)) {
        snprintf(cause, causelen, "unknown record type %llu", (unsigned long long)type);
        return AVM_EMALFORMED;
    }
    field = "has_output";
    if ((rv = avm_mp_get_bool(r, &e->has_output)) != 0)
        goto bad_field;
    field = "error code";
    if ((rv = avm_mp_get_uint(r, &ecode)) != 0)
        goto bad_field;
    if (type < AVM_EV_COUNT && ecode >= AVM_ERR_COUNT) {
        snprintf(cause, causelen, "unknown error code %llu", (unsigned long long)ecode);
        return AVM_EMALFORMED;
    }
    e->ts = ts;
    e->type = (uint8_t)type;
    e->ecode = type < AVM_EV_COUNT ? (uint16_t)ecode : 0;
    static const char *names[4] = {"ctrl", "a0", "a1", "a2"};
    avm_val *f[4] = {&e->ctrl, &e->a[0], &e->a[1], &e->a[2]};
    for (int k = 0; k < 4; k++) {
        field = names[k];
        if ((rv = avm_mp_get_val(r, f[k])) != 0) {
            rec_release(e);
            memset(e, 0, sizeof(*e));
            goto bad_field;
        }
    }
    return 0;
bad_field:
    if (rv == AVM_ETRUNCATED || rv == AVM_ENOMEM)
        snprintf(cause, causelen, "%s", cause_of(rv));
    else
        snprintf(cause, causelen, "field %s: %s", field, cause_of(rv));
    return rv;
}

static int decode_log(const uint8_t *log, size_t len, recs *rs, char *errmsg,
                      size_t errlen)
{
    avm_mp_reader r;
    avm_mp_reader_init(&r, log, len, RECORD_BUDGET);
    size_t k = 0;
    while (r.p < r.end) {
        size_t off = (size_t)(r.p - log);
        avm_event e;
        char cause[128];
        int rv = decode_one(&r, &e, cause, sizeof(cause));
        if (rv == 0 && (rv = recs_push(rs, &e)) != 0) {
            rec_release(&e);
            snprintf(cause, sizeof(cause), "out of memory");
        }
        if (rv != 0) {
            if (errmsg != NULL && errlen > 0)
                snprintf(errmsg, errlen, "trace log: record %zu at byte %zu: %s", k, off,
                         cause);
            return rv == AVM_ENOMEM ? AVM_ENOMEM : AVM_EMALFORMED;
        }
        k++;
    }
    return 0;
}

/* --- Names -------------------------------------------------------------- */

/* A participant or a machine, bare: the string of a string or an identifier (control
 * characters escaped), "main" for nil, the printed value otherwise. */
static void put_name(avm_buf *b, avm_val v)
{
    if (v.kind == AVM_NIL) {
        avm_buf_puts(b, "main");
        return;
    }
    if (!AVM_KIND_HAS_STR(v.kind)) {
        avm_val_print(b, v);
        return;
    }
    for (uint32_t i = 0; i < v.u.s->len; i++) {
        unsigned char c = (unsigned char)v.u.s->data[i];
        if (c < 0x20 || c == 0x7f)
            avm_buf_printf(b, "\\x%02x", c);
        else
            avm_buf_put(b, &c, 1);
    }
}

static void put_machine(avm_buf *b, avm_val v)
{
    if (v.kind == AVM_NIL)
        avm_buf_puts(b, "-");
    else
        put_name(b, v);
}

/* A return's output: nil when the call failed. */
static void put_output(avm_buf *b, avm_val v)
{
    if (v.kind == AVM_NIL)
        avm_buf_puts(b, "nothing (failed)");
    else
        avm_val_print(b, v);
}

/* --- Text --------------------------------------------------------------- */

static void render_text(const recs *rs, avm_buf *out)
{
    for (size_t i = 0; i < rs->n; i++) {
        const avm_event *e = &rs->v[i];
        if (!is_chart(e->type)) {
            avm_buf_puts(out, "    ");
            avm_event_print(out, e);
            avm_buf_puts(out, "\n");
            continue;
        }
        avm_buf_printf(out, "%llu ", (unsigned long long)e->ts);
        put_machine(out, e->ctrl);
        avm_buf_puts(out, " ");
        switch (e->type) {
        case AVM_MSC_CALL:
            put_name(out, e->a[0]);
            avm_buf_puts(out, " -> ");
            put_name(out, e->a[1]);
            avm_buf_puts(out, ": call ");
            avm_val_print(out, e->a[2]);
            break;
        case AVM_MSC_RETURN:
            put_name(out, e->a[0]);
            avm_buf_puts(out, " --> ");
            put_name(out, e->a[1]);
            avm_buf_puts(out, ": return ");
            put_output(out, e->a[2]);
            break;
        case AVM_MSC_MESSAGE:
            put_name(out, e->a[0]);
            avm_buf_puts(out, " -) ");
            put_name(out, e->a[1]);
            avm_buf_puts(out, ": message ");
            avm_val_print(out, e->a[2]);
            break;
        default:
            avm_buf_puts(out, "== ");
            put_name(out, e->a[0]);
            avm_buf_puts(out, " ");
            put_name(out, e->a[1]);
            if (e->a[2].kind != AVM_NIL) {
                avm_buf_puts(out, ": ");
                avm_val_print(out, e->a[2]);
            }
            avm_buf_puts(out, " ==");
            break;
        }
        avm_buf_puts(out, "\n");
    }
}

/* --- Mermaid ------------------------------------------------------------ */

/* Appends s[0..n) as Mermaid label text: cut at max bytes (on a UTF-8 character
 * boundary) with "...", and the characters Mermaid's parser reads as syntax
 * written as its entity codes. */
static void mm_text(avm_buf *b, const char *s, size_t n, size_t max)
{
    bool cut = false;
    if (max > 0 && n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
        cut = true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case ';':
            avm_buf_puts(b, "#59;");
            break;
        case '#':
            avm_buf_puts(b, "#35;");
            break;
        case '"':
            avm_buf_puts(b, "#quot;");
            break;
        case '<':
            avm_buf_puts(b, "#lt;");
            break;
        case '>':
            avm_buf_puts(b, "#gt;");
            break;
        case '\n':
            avm_buf_puts(b, "#92;n");
            break;
        case '\r':
            avm_buf_puts(b, "#92;r");
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                avm_buf_puts(b, " ");
            else
                avm_buf_put(b, &c, 1);
        }
    }
    if (cut)
        avm_buf_puts(b, "...");
}

/* A value (or a name, or an output) as a Mermaid label. */
enum { MM_VALUE, MM_NAME, MM_OUTPUT };

static void mm_val(avm_buf *b, avm_buf *tmp, avm_val v, int how, size_t max)
{
    tmp->len = 0;
    if (tmp->data != NULL)
        tmp->data[0] = '\0';
    if (how == MM_NAME)
        put_name(tmp, v);
    else if (how == MM_OUTPUT)
        put_output(tmp, v);
    else
        avm_val_print(tmp, v);
    if (tmp->err != 0) {
        b->err = tmp->err;
        return;
    }
    mm_text(b, tmp->data ? tmp->data : "", tmp->len, max);
}

typedef struct parts {
    avm_val *keys; /* borrowed from the records */
    size_t n, cap;
} parts;

/* The participant number (1-based) of v, added if new; 0 on allocation failure. */
static size_t part_of(parts *ps, avm_val v)
{
    for (size_t i = 0; i < ps->n; i++)
        if (avm_val_eq(ps->keys[i], v))
            return i + 1;
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        avm_val *k = realloc(ps->keys, cap * sizeof(*k));
        if (k == NULL)
            return 0;
        ps->keys = k;
        ps->cap = cap;
    }
    ps->keys[ps->n++] = v;
    return ps->n;
}

/* The participant a note is drawn over: the event's object, else the top level. */
static avm_val note_over(const avm_event *e)
{
    if (e->type == AVM_MSC_RUNTIME)
        return avm_nil();
    if (e->type < AVM_EV_COUNT && e->a[0].kind == AVM_OBJID)
        return e->a[0];
    return avm_nil();
}

static bool is_arrow(const avm_event *e)
{
    return e->type == AVM_MSC_CALL || e->type == AVM_MSC_RETURN ||
           e->type == AVM_MSC_MESSAGE;
}

/* Spec events already drawn as arrows by their chart records. A log written without
 * chart records (an execution run with msc off) has no arrows: then every spec event
 * is a note. */
static bool drawn_as_arrow(const avm_event *e, bool arrows)
{
    return arrows &&
           (e->type == AVM_EV_OBJECT_CALLED || e->type == AVM_EV_MESSAGE_RECEIVED);
}

static int render_mermaid(const recs *rs, const char *exec_id, avm_buf *out)
{
    parts ps = {0};
    bool arrows = false;
    for (size_t i = 0; i < rs->n && !arrows; i++)
        arrows = is_arrow(&rs->v[i]);
    /* Participants in order of first appearance. */
    for (size_t i = 0; i < rs->n; i++) {
        const avm_event *e = &rs->v[i];
        size_t ok = 1;
        if (is_arrow(e)) {
            ok = part_of(&ps, e->a[0]) && part_of(&ps, e->a[1]);
        } else if (!drawn_as_arrow(e, arrows)) {
            ok = part_of(&ps, note_over(e));
        }
        if (!ok) {
            free(ps.keys);
            return AVM_ENOMEM;
        }
    }
    avm_buf tmp;
    avm_buf_init(&tmp);
    avm_buf_puts(out, "sequenceDiagram\n");
    if (exec_id != NULL) {
        avm_buf_puts(out, "    title execution ");
        mm_text(out, exec_id, strlen(exec_id), 0);
        avm_buf_puts(out, "\n");
    }
    for (size_t i = 0; i < ps.n; i++) {
        avm_buf_printf(out, "    participant p%zu as \"", i + 1);
        mm_val(out, &tmp, ps.keys[i], MM_NAME, AVM_MSC_LABEL_MAX);
        avm_buf_puts(out, "\"\n");
    }
    static const char *heads[] = {"->>", "-->>", "-)"};
    for (size_t i = 0; i < rs->n; i++) {
        const avm_event *e = &rs->v[i];
        if (is_arrow(e)) {
            size_t from = part_of(&ps, e->a[0]), to = part_of(&ps, e->a[1]);
            assert(from != 0 && to != 0); /* declared above: found, not added */
            avm_buf_printf(out, "    p%zu%sp%zu: [%llu] ", from,
                           heads[e->type - AVM_MSC_CALL], to, (unsigned long long)e->ts);
            mm_val(out, &tmp, e->a[2], e->type == AVM_MSC_RETURN ? MM_OUTPUT : MM_VALUE,
                   AVM_MSC_LABEL_MAX);
        } else if (e->type == AVM_MSC_RUNTIME) {
            avm_buf_printf(out, "    Note over p%zu: [%llu] ", part_of(&ps, note_over(e)),
                           (unsigned long long)e->ts);
            mm_val(out, &tmp, e->a[0], MM_NAME, AVM_MSC_LABEL_MAX);
            avm_buf_puts(out, " ");
            mm_val(out, &tmp, e->a[1], MM_NAME, AVM_MSC_LABEL_MAX);
            if (e->a[2].kind != AVM_NIL) {
                avm_buf_puts(out, " ");
                mm_val(out, &tmp, e->a[2], MM_VALUE, AVM_MSC_LABEL_MAX);
            }
        } else if (!drawn_as_arrow(e, arrows)) {
            /* The event as avm_event_print writes it, without its counter. */
            tmp.len = 0;
            avm_event_print(&tmp, e);
            if (tmp.err != 0) {
                out->err = tmp.err;
                break;
            }
            const char *s = strchr(tmp.data, ' ');
            s = s ? s + 1 : tmp.data;
            avm_buf_printf(out, "    Note over p%zu: ", part_of(&ps, note_over(e)));
            mm_text(out, s, tmp.len - (size_t)(s - tmp.data), 2 * AVM_MSC_LABEL_MAX);
        } else {
            continue;
        }
        avm_buf_puts(out, "\n");
    }
    avm_buf_free(&tmp);
    free(ps.keys);
    return 0;
}

/* --- JSON --------------------------------------------------------------- */

static void render_json(const recs *rs, const char *exec_id, avm_buf *out)
{
    static const char *kinds[] = {"call", "return", "message", "runtime"};
    avm_buf_puts(out, "{\"execution\":");
    if (exec_id != NULL)
        avm_json_str(out, exec_id, strlen(exec_id));
    else
        avm_buf_puts(out, "null");
    avm_buf_puts(out, ",\"entries\":[");
    uint64_t lamport = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const avm_event *e = &rs->v[i];
        if (i > 0)
            avm_buf_puts(out, ",");
        if (!is_chart(e->type)) {
            avm_buf_printf(out, "{\"kind\":\"event\",\"lamport\":%llu,\"event\":",
                           (unsigned long long)lamport);
            avm_event_json(out, e);
            avm_buf_puts(out, "}");
            continue;
        }
        lamport = e->ts;
        avm_buf_printf(out, "{\"lamport\":%llu,\"kind\":\"%s\",\"machine\":",
                       (unsigned long long)e->ts, kinds[e->type - AVM_MSC_CALL]);
        avm_val_json(out, e->ctrl);
        if (e->type == AVM_MSC_RUNTIME) {
            avm_buf_puts(out, ",\"event\":");
            avm_val_json(out, e->a[0]);
            avm_buf_puts(out, ",\"execution\":");
        } else {
            avm_buf_puts(out, ",\"from\":");
            avm_val_json(out, e->a[0]);
            avm_buf_puts(out, ",\"to\":");
        }
        avm_val_json(out, e->a[1]);
        avm_buf_puts(out, ",\"value\":");
        avm_val_json(out, e->a[2]);
        avm_buf_puts(out, "}");
    }
    avm_buf_puts(out, "]}");
}

int avm_msc_render(const uint8_t *log, size_t len, avm_msc_format f, const char *exec_id,
                   avm_buf *out, char *errmsg, size_t errlen)
{
    if (f != AVM_MSC_TEXT && f != AVM_MSC_MERMAID && f != AVM_MSC_JSON) {
        if (errmsg != NULL && errlen > 0)
            snprintf(errmsg, errlen, "unknown chart format %d", (int)f);
        return AVM_EINVAL;
    }
    recs rs = {0};
    int rv = decode_log(log, len, &rs, errmsg, errlen);
    if (rv != 0)
        goto out;
    if (f == AVM_MSC_TEXT)
        render_text(&rs, out);
    else if (f == AVM_MSC_MERMAID)
        rv = render_mermaid(&rs, exec_id, out);
    else
        render_json(&rs, exec_id, out);
    if (rv == 0 && out->err != 0)
        rv = out->err;
    if (rv != 0 && errmsg != NULL && errlen > 0)
        snprintf(errmsg, errlen, "out of memory rendering the chart");
out:
    recs_free(&rs);
    return rv;
}
