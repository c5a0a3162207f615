/*
 * isoproto.h - the framed protocol between the host and a plugin child
 * process (process isolation: isolate.c on the host side, plugin_child.c in
 * the child).  Both ends are the same evhost binary, so the protocol has no
 * version of its own: a child is always exactly as new as its host.
 *
 * The two ends talk over one AF_UNIX stream socket (socketpair; fd 3 in the
 * child).  Every message is one frame:
 *
 *     u32 length (little-endian)  bytes of payload that follow the type
 *     u8  type                    ISO_* below
 *     payload                     a JSON object text ("head"), optionally
 *                                 followed by one NUL byte and raw bytes
 *                                 (event data, step output, HTTP bodies:
 *                                 passed byte for byte, never re-encoded)
 *
 * A frame longer than ISO_FRAME_MAX is a protocol error and ends the
 * connection (the child is killed).
 *
 * Host -> child                          answer (child -> host)
 *   DESCRIBE {library}                   DESCRIPTOR {id, kind, abi_major,
 *                                          abi_minor, struct_size,
 *                                          table_size, has_init, has_run,
 *                                          has_fini, has_stop, has_http,
 *                                          has_validate}
 *                                          or {error}
 *   INIT {library, manifest, config}     INIT_DONE {rc, error?}
 *   RUN  step: {id, attempt, event,      RESULT {id, rc, error?, has_output,
 *          steps, execution_id,            metrics{}} + NUL + output bytes
 *          workflow_id, step_id, config}
 *        source: {id}                    RUN_DONE {id, rc} (when run returns)
 *   STOP {}                              (none: wait() and stopping() see it,
 *                                          and the plugin's stop() is called)
 *   HTTP {id, method, path, headers,     HTTP_REPLY {id, rc, status,
 *         query, remote_addr} + NUL +      content_type?, headers?} + NUL +
 *         body                             body
 *   FINI {}                              FINI_DONE {} (then the child exits)
 *   VALIDATE {library, manifest,         VALIDATE_DONE {rc, field?, error?}
 *             config}                      (a short-lived child: the step's
 *                                          validate, SDK 1.2; then EOF)
 *   REPLY {id, rc, value?}               - (the answer to a child request)
 *
 * Child -> host requests, answered by REPLY with the same id:
 *   EMIT {id, event_type, user_id?, durable} + NUL + data
 *   DATA_DIR {id}                        REPLY value: the directory or null
 * and one without an answer:
 *   LOG {level, msg}
 */
#ifndef EVH_ISOPROTO_H
#define EVH_ISOPROTO_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* The largest payload: the biggest event (1 MiB), step input (event, earlier
 * outputs and config) or HTTP body fits with a wide margin. */
#define ISO_FRAME_MAX (64u * 1024 * 1024)

/* The fd the child finds its end of the socket on. */
#define ISO_CHILD_FD 3

enum {
    /* host -> child */
    ISO_DESCRIBE = 1,
    ISO_INIT = 2,
    ISO_RUN = 3,
    ISO_STOP = 4,
    ISO_HTTP = 5,
    ISO_FINI = 6,
    ISO_REPLY = 7,
    ISO_VALIDATE = 8,
    /* child -> host */
    ISO_DESCRIPTOR = 16,
    ISO_INIT_DONE = 17,
    ISO_RESULT = 18,
    ISO_RUN_DONE = 19,
    ISO_HTTP_REPLY = 20,
    ISO_FINI_DONE = 21,
    ISO_EMIT = 22,
    ISO_LOG = 23,
    ISO_DATA_DIR = 24,
    ISO_VALIDATE_DONE = 25,
};

typedef struct iso_frame {
    uint8_t type;
    char *data;      /* the payload plus a NUL; owned */
    size_t len;      /* payload bytes */
    cJSON *head;     /* the parsed JSON head, or NULL when it is not JSON */
    const char *raw; /* the bytes after the head's NUL (inside data), or NULL */
    size_t raw_len;
} iso_frame;

/* iso_recv results. */
#define ISO_RECV_FRAME 1
#define ISO_RECV_IDLE 0     /* nothing arrived within wait_ms */
#define ISO_RECV_EOF (-1)   /* the peer closed the socket at a frame boundary */
#define ISO_RECV_BROKEN (-2) /* an error, a torn or oversized frame */

/*
 * Send one frame: head (NULL: "{}") and, when raw is not NULL, a NUL and
 * raw_len raw bytes.  deadline_ns (monotonic_ns(); 0: none) bounds the whole
 * write, so a peer that stopped reading cannot block the caller forever.
 * Returns 0, or -1 (the connection is unusable).
 */
int iso_send(int fd, uint8_t type, const cJSON *head, const void *raw, size_t raw_len,
             int64_t deadline_ns);

/*
 * Receive one frame.  Waits up to wait_ms (-1: forever) for its first byte;
 * once a frame began, the rest must arrive before max(deadline_ns, 10 s from
 * now) (deadline_ns 0: the 10 s).  On ISO_RECV_FRAME *f holds the frame
 * (free it with iso_frame_free).
 */
int iso_recv(int fd, iso_frame *f, int wait_ms, int64_t deadline_ns);

void iso_frame_free(iso_frame *f);

/* Helpers for reading a frame's head. */
const char *iso_str(const iso_frame *f, const char *key); /* NULL when absent */
int64_t iso_int(const iso_frame *f, const char *key, int64_t fallback);

#endif
