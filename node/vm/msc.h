/* Message sequence charts: an execution's trace log rendered as text, Mermaid or JSON.
 *
 * A trace log (docs/protocol.md, "Trace logs and sequence charts") is a sequence of
 * msgpack arrays [ts, type, has_output, ecode, ctrl, a0, a1, a2]. Types below 64 are
 * the specification's log entries (AVM_EVENT_MAP, ts the event counter); types 64..67
 * are sequence-chart records (ts the Lamport clock, ctrl the machine):
 *
 *   call     a0 caller (object id, nil for the top level), a1 callee, a2 input
 *   return   a0 callee, a1 caller, a2 output (nil when the call failed)
 *   message  a0 sender (string or object id), a1 receiver, a2 the message
 *   runtime  a0 event name ("ExecutionStarted", ...), a1 execution id, a2 detail
 *
 * Like the rest of node/vm this module does no I/O: it renders into an avm_buf. */
#ifndef AVM_MSC_H
#define AVM_MSC_H

#include <stddef.h>
#include <stdint.h>

#include "value.h"
#include "vm.h"

/* Record types of the sequence chart (vm.h may define them too). */
#ifndef AVM_MSC_CALL
#define AVM_MSC_CALL 64
#endif
#ifndef AVM_MSC_RETURN
#define AVM_MSC_RETURN 65
#endif
#ifndef AVM_MSC_MESSAGE
#define AVM_MSC_MESSAGE 66
#endif
#ifndef AVM_MSC_RUNTIME
#define AVM_MSC_RUNTIME 67
#endif

/* Values longer than this (printed) are cut with "..." in Mermaid labels. */
#define AVM_MSC_LABEL_MAX 60

typedef enum {
    /* One line per record, in log order:
     *   LAMPORT MACHINE FROM -> TO: call INPUT
     *   LAMPORT MACHINE TO --> FROM: return OUTPUT      ("nothing (failed)" for nil)
     *   LAMPORT MACHINE SENDER -) RECEIVER: message VALUE
     *   LAMPORT MACHINE == EVENT EXECUTION[: DETAIL] ==
     *       EVENT-TEXT                                   (spec events, indented, as
     *                                                     avm_event_print writes them)
     * Participants are named bare: an object id or a sender by its string, the top
     * level (a nil caller) as "main"; values as avm_val_print writes them. */
    AVM_MSC_TEXT,
    /* A Mermaid sequenceDiagram: a title naming the execution, participants declared
     * in order of first appearance (aliases p1, p2, ...), ->> calls, -->> returns,
     * -) messages, each label prefixed with the Lamport time [t]; runtime events and
     * the spec events that are not already arrows (all but ObjectCalled and
     * MessageReceived) as notes. Labels are escaped (; # " < > and line breaks as
     * Mermaid entity codes) and long values cut at AVM_MSC_LABEL_MAX characters. */
    AVM_MSC_MERMAID,
    /* One JSON object, without a final newline:
     *   {"execution": ID, "entries": [ENTRY, ...]}
     * a call, return or message entry is
     *   {"lamport":t,"kind":"call"|"return"|"message","machine":M,"from":F,"to":T,
     *    "value":V}
     * (from/to are the arrow's ends: a return goes from the callee to the caller), a
     * runtime entry {"lamport":t,"kind":"runtime","machine":M,"event":NAME,
     * "execution":ID,"value":DETAIL}, and a spec event {"kind":"event","lamport":t,
     * "event":E} with E as avm_event_json writes it and t the Lamport time of the
     * latest chart record before it (0 if none). Values as avm_val_json writes them. */
    AVM_MSC_JSON,
} avm_msc_format;

/* Renders the trace log log[0..len) of execution exec_id (may be NULL: no title, a
 * null "execution") as a chart in format f, appended to out. Returns 0; AVM_EINVAL
 * for an unknown format; AVM_EMALFORMED for a log that does not decode (a record
 * that is not an array of 8, a field of the wrong kind, an unknown record type, a
 * truncated record), then errmsg names the record's byte offset and the cause and
 * out is left as it was; or AVM_ENOMEM (out's sticky error). An empty log renders
 * an empty chart: nothing in text, the header alone in Mermaid, no entries in JSON. */
int avm_msc_render(const uint8_t *log, size_t len, avm_msc_format f, const char *exec_id,
                   avm_buf *out, char *errmsg, size_t errlen);

#endif
