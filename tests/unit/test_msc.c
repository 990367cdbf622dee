/* Sequence charts: hand-written trace logs (chart records nesting calls and returns,
 * a message, runtime events and spec events) render to the exact text, Mermaid and
 * JSON expected; labels are escaped and cut; a log that does not decode is refused
 * with the record's byte offset and leaves the output alone; an empty log renders an
 * empty chart. */
#include <stdint.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "msc.h"
#include "test.h"

static avm_val str(const char *s)
{
    avm_val v;
    if (avm_cstr(AVM_STR, s, &v) != 0)
        abort();
    return v;
}

static avm_val id(avm_kind k, const char *s)
{
    avm_val v;
    if (avm_cstr(k, s, &v) != 0)
        abort();
    return v;
}

static avm_val list2(avm_val a, avm_val b)
{
    avm_val items[2] = {a, b}, l;
    if (avm_list_from(items, 2, &l) != 0)
        abort();
    return l;
}

/* Appends one record [ts, type, has_output, ecode, ctrl, a0, a1, a2]; takes the
 * values. */
static void rec(avm_buf *b, uint64_t ts, unsigned type, bool has_output, avm_val ctrl,
                avm_val a0, avm_val a1, avm_val a2)
{
    avm_mp_put_array(b, 8);
    avm_mp_put_uint(b, ts);
    avm_mp_put_uint(b, type);
    avm_mp_put_bool(b, has_output);
    avm_mp_put_uint(b, 0);
    avm_val v[4] = {ctrl, a0, a1, a2};
    for (int i = 0; i < 4; i++) {
        if (avm_val_encode(b, v[i]) != 0)
            abort();
        avm_val_release(v[i]);
    }
}

static avm_val mach(void)
{
    return id(AVM_MACHID, "node1");
}

static avm_val obj(const char *s)
{
    return id(AVM_OBJID, s);
}

/* A small execution: started, creates an object, calls it, sends it a message,
 * terminates. */
static void small_log(avm_buf *b)
{
    avm_buf_init(b);
    rec(b, 1, AVM_MSC_RUNTIME, false, mach(), str("ExecutionStarted"), str("node1/x7"),
        avm_nil());
    rec(b, 0, AVM_EV_OBJECT_CREATED, false, id(AVM_CTRLID, "main"), obj("node1/1"),
        str("echo"), avm_nil());
    rec(b, 2, AVM_MSC_CALL, false, mach(), avm_nil(), obj("node1/1"),
        list2(avm_int(1), str("a")));
    rec(b, 1, AVM_EV_OBJECT_CALLED, true, id(AVM_CTRLID, "main"), obj("node1/1"),
        list2(avm_int(1), str("a")), list2(avm_int(1), str("a")));
    rec(b, 3, AVM_MSC_RETURN, false, mach(), obj("node1/1"), avm_nil(),
        list2(avm_int(1), str("a")));
    rec(b, 4, AVM_MSC_MESSAGE, false, mach(), str("client"), obj("node1/1"),
        str("hi;#\"x"));
    rec(b, 2, AVM_EV_MESSAGE_RECEIVED, false, avm_nil(), obj("node1/1"), str("hi;#\"x"),
        avm_nil());
    rec(b, 5, AVM_MSC_RUNTIME, false, mach(), str("ExecutionTerminated"), str("node1/x7"),
        str("done"));
    if (b->err != 0)
        abort();
}

static int render(const avm_buf *log, avm_msc_format f, const char *exec_id, avm_buf *out,
                  char *err)
{
    avm_buf_init(out);
    err[0] = '\0';
    return avm_msc_render((const uint8_t *)log->data, log->len, f, exec_id, out, err,
                          256);
}

TEST(text_small)
{
    avm_buf log, out;
    char err[256];
    small_log(&log);
    REQUIRE(render(&log, AVM_MSC_TEXT, "node1/x7", &out, err) == 0);
    CHECK_STR(avm_buf_cstr(&out),
              "1 node1 == ExecutionStarted node1/x7 ==\n"
              "    0 ObjectCreated #obj\"node1/1\" \"echo\" [#ctl\"main\"]\n"
              "2 node1 main -> node1/1: call (1 \"a\")\n"
              "    1 ObjectCalled #obj\"node1/1\" (1 \"a\") -> (1 \"a\") [#ctl\"main\"]\n"
              "3 node1 node1/1 --> main: return (1 \"a\")\n"
              "4 node1 client -) node1/1: message \"hi;#\\\"x\"\n"
              "    2 MessageReceived #obj\"node1/1\" \"hi;#\\\"x\"\n"
              "5 node1 == ExecutionTerminated node1/x7: \"done\" ==\n");
    avm_buf_free(&out);
    avm_buf_free(&log);
}

TEST(mermaid_small)
{
    avm_buf log, out;
    char err[256];
    small_log(&log);
    REQUIRE(render(&log, AVM_MSC_MERMAID, "node1/x7", &out, err) == 0);
    CHECK_STR(
        avm_buf_cstr(&out),
        "sequenceDiagram\n"
        "    title execution node1/x7\n"
        "    participant p1 as \"main\"\n"
        "    participant p2 as \"node1/1\"\n"
        "    participant p3 as \"client\"\n"
        "    Note over p1: [1] ExecutionStarted node1/x7\n"
        "    Note over p2: ObjectCreated #35;obj#quot;node1/1#quot; #quot;echo#quot; "
        "[#35;ctl#quot;main#quot;]\n"
        "    p1->>p2: [2] (1 #quot;a#quot;)\n"
        "    p2-->>p1: [3] (1 #quot;a#quot;)\n"
        "    p3-)p2: [4] #quot;hi#59;#35;\\#quot;x#quot;\n"
        "    Note over p1: [5] ExecutionTerminated node1/x7 #quot;done#quot;\n");
    avm_buf_free(&out);
    avm_buf_free(&log);
}

TEST(json_small)
{
    avm_buf log, out;
    char err[256];
    small_log(&log);
    REQUIRE(render(&log, AVM_MSC_JSON, "node1/x7", &out, err) == 0);
    CHECK_STR(
        avm_buf_cstr(&out),
        "{\"execution\":\"node1/x7\",\"entries\":["
        "{\"lamport\":1,\"kind\":\"runtime\",\"machine\":{\"machine\":\"node1\"},"
        "\"event\":\"ExecutionStarted\",\"execution\":\"node1/x7\",\"value\":null},"
        "{\"kind\":\"event\",\"lamport\":1,\"event\":{\"timestamp\":0,\"event\":"
        "\"ObjectCreated\",\"object\":{\"object\":\"node1/1\"},\"behavior\":\"echo\","
        "\"controller\":{\"controller\":\"main\"}}},"
        "{\"lamport\":2,\"kind\":\"call\",\"machine\":{\"machine\":\"node1\"},"
        "\"from\":null,\"to\":{\"object\":\"node1/1\"},\"value\":[1,\"a\"]},"
        "{\"kind\":\"event\",\"lamport\":2,\"event\":{\"timestamp\":1,\"event\":"
        "\"ObjectCalled\",\"object\":{\"object\":\"node1/1\"},\"input\":[1,\"a\"],"
        "\"output\":{\"just\":[1,\"a\"]},\"controller\":{\"controller\":\"main\"}}},"
        "{\"lamport\":3,\"kind\":\"return\",\"machine\":{\"machine\":\"node1\"},"
        "\"from\":{\"object\":\"node1/1\"},\"to\":null,\"value\":[1,\"a\"]},"
        "{\"lamport\":4,\"kind\":\"message\",\"machine\":{\"machine\":\"node1\"},"
        "\"from\":\"client\",\"to\":{\"object\":\"node1/1\"},\"value\":\"hi;#\\\"x\"},"
        "{\"kind\":\"event\",\"lamport\":4,\"event\":{\"timestamp\":2,\"event\":"
        "\"MessageReceived\",\"object\":{\"object\":\"node1/1\"},\"input\":\"hi;#\\\"x\","
        "\"controller\":null}},"
        "{\"lamport\":5,\"kind\":\"runtime\",\"machine\":{\"machine\":\"node1\"},"
        "\"event\":\"ExecutionTerminated\",\"execution\":\"node1/x7\",\"value\":\"done\"}"
        "]}");
    avm_buf_free(&out);
    avm_buf_free(&log);
}

/* Brackets and braces balance outside strings, and strings close. */
static bool json_balanced(const char *s)
{
    char stack[256];
    size_t depth = 0;
    bool in_str = false;
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1] != '\0')
                s++;
            else if (*s == '"')
                in_str = false;
            else if ((unsigned char)*s < 0x20)
                return false;
            continue;
        }
        if (*s == '"') {
            in_str = true;
        } else if (*s == '[' || *s == '{') {
            if (depth == sizeof(stack))
                return false;
            stack[depth++] = *s;
        } else if (*s == ']' || *s == '}') {
            if (depth == 0 || stack[depth - 1] != (*s == ']' ? '[' : '{'))
                return false;
            depth--;
        }
    }
    return !in_str && depth == 0;
}

/* main calls a, a calls b, b returns, a returns: the arrows nest in log order. */
TEST(nested_calls)
{
    avm_buf log, out;
    char err[256];
    avm_buf_init(&log);
    rec(&log, 1, AVM_MSC_CALL, false, mach(), avm_nil(), obj("n/a"), avm_int(1));
    rec(&log, 2, AVM_MSC_CALL, false, mach(), obj("n/a"), obj("n/b"), avm_int(2));
    rec(&log, 3, AVM_MSC_RETURN, false, mach(), obj("n/b"), obj("n/a"), avm_nil());
    rec(&log, 4, AVM_MSC_RETURN, false, mach(), obj("n/a"), avm_nil(), str("ok"));
    REQUIRE(log.err == 0);
    REQUIRE(render(&log, AVM_MSC_TEXT, NULL, &out, err) == 0);
    CHECK_STR(avm_buf_cstr(&out), "1 node1 main -> n/a: call 1\n"
                                  "2 node1 n/a -> n/b: call 2\n"
                                  "3 node1 n/b --> n/a: return nothing (failed)\n"
                                  "4 node1 n/a --> main: return \"ok\"\n");
    avm_buf_free(&out);
    REQUIRE(render(&log, AVM_MSC_MERMAID, NULL, &out, err) == 0);
    CHECK_STR(avm_buf_cstr(&out), "sequenceDiagram\n"
                                  "    participant p1 as \"main\"\n"
                                  "    participant p2 as \"n/a\"\n"
                                  "    participant p3 as \"n/b\"\n"
                                  "    p1->>p2: [1] 1\n"
                                  "    p2->>p3: [2] 2\n"
                                  "    p3-->>p2: [3] nothing (failed)\n"
                                  "    p2-->>p1: [4] #quot;ok#quot;\n");
    avm_buf_free(&out);
    REQUIRE(render(&log, AVM_MSC_JSON, NULL, &out, err) == 0);
    CHECK(strncmp(avm_buf_cstr(&out), "{\"execution\":null,\"entries\":[", 29) == 0);
    CHECK(json_balanced(avm_buf_cstr(&out)));
    avm_buf_free(&out);
    avm_buf_free(&log);
}

/* Long values are cut with an ellipsis; line breaks and Mermaid's syntax characters
 * are escaped; participant names too. */
TEST(mermaid_escapes_and_cuts)
{
    avm_buf log, out;
    char err[256];
    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    avm_buf_init(&log);
    rec(&log, 1, AVM_MSC_MESSAGE, false, mach(), str("a;b\nc"), obj("n/1"), str(big));
    REQUIRE(log.err == 0);
    REQUIRE(render(&log, AVM_MSC_MERMAID, "e\"1", &out, err) == 0);
    char want[1024];
    /* The printed value is "xxx...": its first 60 characters are the quote and 59
     * x's. */
    snprintf(want, sizeof(want),
             "sequenceDiagram\n"
             "    title execution e#quot;1\n"
             "    participant p1 as \"a#59;b\\x0ac\"\n"
             "    participant p2 as \"n/1\"\n"
             "    p1-)p2: [1] #quot;%.59s...\n",
             big);
    CHECK_STR(avm_buf_cstr(&out), want);
    /* Every line is one statement: no raw line break inside a label. */
    int lines = 0;
    for (const char *p = avm_buf_cstr(&out); *p; p++)
        lines += *p == '\n';
    CHECK_INT(lines, 5);
    avm_buf_free(&out);
    avm_buf_free(&log);
}

/* A log written without chart records: every spec event is a note, the calls too. */
TEST(mermaid_without_chart_records)
{
    avm_buf log, out;
    char err[256];
    avm_buf_init(&log);
    rec(&log, 0, AVM_EV_OBJECT_CALLED, false, avm_nil(), obj("n/1"), avm_int(5),
        avm_nil());
    rec(&log, 1, AVM_EV_TRANSACTION_STARTED, false, avm_nil(), id(AVM_TXID, "n/t1"),
        avm_nil(), avm_nil());
    REQUIRE(log.err == 0);
    REQUIRE(render(&log, AVM_MSC_MERMAID, NULL, &out, err) == 0);
    CHECK_STR(avm_buf_cstr(&out),
              "sequenceDiagram\n"
              "    participant p1 as \"n/1\"\n"
              "    participant p2 as \"main\"\n"
              "    Note over p1: ObjectCalled #35;obj#quot;n/1#quot; 5 -#gt; nothing\n"
              "    Note over p2: TransactionStarted #35;tx#quot;n/t1#quot;\n");
    avm_buf_free(&out);
    REQUIRE(render(&log, AVM_MSC_JSON, "x", &out, err) == 0);
    CHECK(json_balanced(avm_buf_cstr(&out)));
    /* No chart record before them: Lamport time 0. */
    CHECK(strstr(avm_buf_cstr(&out), "{\"kind\":\"event\",\"lamport\":0,") != NULL);
    avm_buf_free(&out);
    avm_buf_free(&log);
}

TEST(empty_log)
{
    avm_buf log, out;
    char err[256];
    avm_buf_init(&log);
    REQUIRE(render(&log, AVM_MSC_TEXT, "x", &out, err) == 0);
    CHECK_STR(avm_buf_cstr(&out), "");
    avm_buf_free(&out);
    REQUIRE(render(&log, AVM_MSC_MERMAID, NULL, &out, err) == 0);
    CHECK_STR(avm_buf_cstr(&out), "sequenceDiagram\n");
    avm_buf_free(&out);
    REQUIRE(render(&log, AVM_MSC_JSON, "node1/x1", &out, err) == 0);
    CHECK_STR(avm_buf_cstr(&out), "{\"execution\":\"node1/x1\",\"entries\":[]}");
    avm_buf_free(&out);
}

/* Renders bad[0..n) in every format: AVM_EMALFORMED, the message contains want, and
 * the output keeps what it held. */
static void check_malformed(int *test_failed_, const uint8_t *bad, size_t n,
                            const char *want)
{
    avm_msc_format fs[] = {AVM_MSC_TEXT, AVM_MSC_MERMAID, AVM_MSC_JSON};
    for (int i = 0; i < 3; i++) {
        avm_buf out;
        avm_buf_init(&out);
        avm_buf_puts(&out, "kept");
        char err[256] = "";
        int rv = avm_msc_render(bad, n, fs[i], "x", &out, err, sizeof(err));
        CHECK_INT(rv, AVM_EMALFORMED);
        if (strstr(err, want) == NULL) {
            fprintf(stderr, "message '%s' lacks '%s'\n", err, want);
            *test_failed_ = 1;
        }
        CHECK_STR(avm_buf_cstr(&out), "kept");
        avm_buf_free(&out);
    }
}

TEST(malformed)
{
    avm_buf log;
    small_log(&log);
    const uint8_t *p = (const uint8_t *)log.data;

    /* Every cut inside a record fails naming that record's offset; a cut between
     * records renders what is there. */
    size_t starts[16], nstarts = 0;
    {
        avm_mp_reader r;
        avm_mp_reader_init(&r, p, log.len, AVM_DECODE_DEFAULT_MAX);
        while (r.p < r.end) {
            starts[nstarts++] = (size_t)(r.p - p);
            uint32_t n;
            REQUIRE(avm_mp_get_array(&r, &n) == 0 && n == 8);
            for (int k = 0; k < 8; k++) {
                avm_val v;
                REQUIRE(avm_mp_get_val(&r, &v) == 0);
                avm_val_release(v);
            }
        }
    }
    REQUIRE(nstarts == 8);
    for (size_t cut = 0; cut < log.len; cut++) {
        size_t k = 0;
        while (k + 1 < nstarts && starts[k + 1] <= cut)
            k++;
        avm_buf out;
        avm_buf_init(&out);
        char err[256] = "";
        int rv = avm_msc_render(p, cut, AVM_MSC_JSON, "x", &out, err, sizeof(err));
        if (cut == starts[k]) {
            CHECK_INT(rv, 0);
        } else {
            char want[64];
            snprintf(want, sizeof(want), "record %zu at byte %zu: ", k, starts[k]);
            CHECK_INT(rv, AVM_EMALFORMED);
            if (strstr(err, want) == NULL) {
                fprintf(stderr, "cut %zu: message '%s' lacks '%s'\n", cut, err, want);
                *test_failed_ = 1;
            }
        }
        avm_buf_free(&out);
    }
    check_malformed(test_failed_, p, log.len - 1, "ends early");

    /* An array of 7 after a good record. */
    avm_buf b;
    avm_buf_init(&b);
    rec(&b, 1, AVM_MSC_CALL, false, mach(), avm_nil(), obj("n/1"), avm_nil());
    size_t off = b.len;
    avm_mp_put_array(&b, 7);
    for (int i = 0; i < 7; i++)
        avm_mp_put_uint(&b, 0);
    char want[128];
    snprintf(want, sizeof(want),
             "record 1 at byte %zu: the record is an array of 7, not 8", off);
    check_malformed(test_failed_, (const uint8_t *)b.data, b.len, want);
    avm_buf_free(&b);

    /* An unknown type. */
    avm_buf_init(&b);
    rec(&b, 1, 99, false, mach(), avm_nil(), avm_nil(), avm_nil());
    check_malformed(test_failed_, (const uint8_t *)b.data, b.len,
                    "record 0 at byte 0: unknown record type 99");
    avm_buf_free(&b);
    avm_buf_init(&b);
    rec(&b, 1, AVM_EV_COUNT, false, mach(), avm_nil(), avm_nil(), avm_nil());
    check_malformed(test_failed_, (const uint8_t *)b.data, b.len, "unknown record type");
    avm_buf_free(&b);

    /* A field of the wrong kind: the timestamp is a string. */
    avm_buf_init(&b);
    avm_mp_put_array(&b, 8);
    avm_mp_put_str(&b, "t", 1);
    for (int i = 0; i < 7; i++)
        avm_mp_put_nil(&b);
    check_malformed(test_failed_, (const uint8_t *)b.data, b.len,
                    "record 0 at byte 0: field timestamp");
    avm_buf_free(&b);

    /* Not an array at all. */
    uint8_t junk[] = {0xc1};
    check_malformed(test_failed_, junk, sizeof(junk), "record 0 at byte 0");
    avm_buf_free(&log);
}

TEST(unknown_format)
{
    avm_buf out;
    avm_buf_init(&out);
    char err[256];
    CHECK_INT(avm_msc_render(NULL, 0, (avm_msc_format)7, "x", &out, err, sizeof(err)),
              AVM_EINVAL);
    avm_buf_free(&out);
}

TEST_MAIN(T(text_small), T(mermaid_small), T(json_small), T(nested_calls),
          T(mermaid_escapes_and_cuts), T(mermaid_without_chart_records), T(empty_log),
          T(malformed), T(unknown_format))
