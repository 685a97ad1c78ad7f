/* PostgreSQL v3 wire protocol codec: frontend message parsers and backend
 * message builders.
 *
 * Pure functions over byte buffers: no sockets, no clock, no globals. The
 * caller owns the transport; it hands the parsers the bytes it has so far
 * and drains what they report as consumed.
 *
 * Parsers are incremental. Each returns
 *    1  a complete message was decoded; *consumed is its size in bytes;
 *    0  the buffer holds a prefix of a message: read more and call again
 *       with the same bytes plus the new ones (nothing is consumed);
 *   <0  a hexad error (HX_ERR_PROTOCOL, HX_ERR_TOO_BIG): the peer broke the
 *       protocol; out->error names why. The connection cannot be resynced.
 * A length field is checked as soon as it is readable, so an oversize
 * message is refused before the caller buffers it.
 *
 * Decoded strings point into the caller's buffer (zero copy): they stay
 * valid until the caller drains or changes those bytes. Every string the
 * parser returns was checked to be NUL-terminated inside its message.
 *
 * Builders append whole messages to a pgw_buf, whose errors are sticky (see
 * pgw_buf). The supported subset is the simple query protocol: startup,
 * SSL/GSS refusal, cancel, cleartext password, Query and Terminate. The
 * extended protocol messages are recognised and reported as unsupported so
 * the session can answer with an error instead of dropping the connection.
 */
#ifndef HX_PGWIRE_H
#define HX_PGWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Limits ------------------------------------------------------------ */

#define PGW_STARTUP_LEN_MAX (1u << 20)    /* startup packet, incl. length */
#define PGW_MESSAGE_LEN_MAX (64u << 20)   /* typed message, incl. length */
#define PGW_STARTUP_PARAMS_MAX 64         /* name/value pairs in startup */
#define PGW_BUF_BYTES_MAX_DEFAULT (256u << 20)

/* ---- Protocol constants ------------------------------------------------ */

#define PGW_PROTOCOL_3_0 196608u          /* (3 << 16) | 0 */
#define PGW_SSL_REQUEST_CODE 80877103u
#define PGW_GSSENC_REQUEST_CODE 80877104u
#define PGW_CANCEL_REQUEST_CODE 80877102u

/* Type OIDs used in RowDescription (text format only). */
#define PGW_OID_BYTEA 17u
#define PGW_OID_INT8 20u
#define PGW_OID_TEXT 25u
#define PGW_OID_FLOAT8 701u

/* ---- Output buffer ----------------------------------------------------- */

/* A growable byte buffer that builders append to.
 *
 * Errors are sticky: the first failed append (HX_ERR_NOMEM, or
 * HX_ERR_TOO_BIG when len would pass max_bytes) is stored in err and every
 * later append is a no-op returning it, so a caller may build a sequence of
 * messages and check once. A failed builder may leave a partial message;
 * pgw_buf_truncate() back to a message boundary undoes it and clears err. */
typedef struct pgw_buf {
    uint8_t *data;    /* owned; NULL until the first append */
    size_t len;       /* bytes in use */
    size_t cap;       /* bytes allocated */
    size_t max_bytes; /* limit on len; 0 means PGW_BUF_BYTES_MAX_DEFAULT */
    int err;          /* sticky first error, 0 if none */
} pgw_buf;

/* Empty buffer with a limit (0 for the default). Allocates nothing. */
void pgw_buf_init(pgw_buf *b, size_t max_bytes);
/* Frees the storage; b may be reused after pgw_buf_init. NULL is a no-op. */
void pgw_buf_free(pgw_buf *b);
/* Drops the first n bytes (sent to the peer); keeps err. n > len drops all. */
void pgw_buf_drain(pgw_buf *b, size_t n);
/* Cuts the buffer back to len (<= b->len) and clears the sticky error. */
void pgw_buf_truncate(pgw_buf *b, size_t len);

/* Raw appends, for builders and tests. Integers are big-endian. */
int pgw_buf_put_bytes(pgw_buf *b, const void *p, size_t n);
int pgw_buf_put_u8(pgw_buf *b, uint8_t v);
int pgw_buf_put_u16(pgw_buf *b, uint16_t v);
int pgw_buf_put_u32(pgw_buf *b, uint32_t v);
int pgw_buf_put_cstr(pgw_buf *b, const char *s); /* with its NUL */

/* Starts a typed message: appends the type byte and a length placeholder.
 * Returns the message's start offset, to pass to pgw_msg_end(). */
size_t pgw_msg_begin(pgw_buf *b, uint8_t type);
/* Patches the length of the message started at start. Returns b->err;
 * HX_ERR_TOO_BIG if the body passed INT32_MAX. */
int pgw_msg_end(pgw_buf *b, size_t start);

/* ---- Startup phase (untyped packets) ----------------------------------- */

enum pgw_startup_kind {
    PGW_STARTUP = 1,      /* StartupMessage: version + parameters */
    PGW_SSL_REQUEST,      /* answer with the single byte 'N' */
    PGW_GSSENC_REQUEST,   /* answer with the single byte 'N' */
    PGW_CANCEL_REQUEST,   /* cancel_pid, cancel_key; no answer, close */
};

typedef struct pgw_param {
    const char *name;     /* points into the parsed buffer */
    const char *value;
} pgw_param;

typedef struct pgw_startup {
    enum pgw_startup_kind kind;
    uint32_t version;     /* PGW_STARTUP: major << 16 | minor */
    size_t nparams;
    pgw_param params[PGW_STARTUP_PARAMS_MAX];
    int32_t cancel_pid;   /* PGW_CANCEL_REQUEST */
    int32_t cancel_key;
    bool bad_version;     /* error was an unsupported protocol version */
    const char *error;    /* static text when the parser fails, else NULL */
} pgw_startup;

/* Parses the first packet(s) of a connection. Accepts protocol 3.x (any
 * minor: the session negotiates down to 3.0). See the return convention at
 * the top. On HX_ERR_PROTOCOL with out->bad_version set, the packet was
 * well-formed but asked for a major version other than 3. */
int pgw_parse_startup(const uint8_t *buf, size_t len, pgw_startup *out,
                      size_t *consumed);

/* The value of startup parameter name, or NULL. */
const char *pgw_startup_get(const pgw_startup *st, const char *name);

/* ---- Typed frontend messages ------------------------------------------- */

enum pgw_msg_kind {
    PGW_MSG_QUERY = 1,    /* 'Q': text = SQL */
    PGW_MSG_TERMINATE,    /* 'X' */
    PGW_MSG_PASSWORD,     /* 'p': text = password */
    PGW_MSG_UNSUPPORTED,  /* a valid frontend type we do not serve: the
                             extended protocol (P B D E S H C F) and copy
                             (d c f); type says which */
};

typedef struct pgw_msg {
    enum pgw_msg_kind kind;
    uint8_t type;         /* the type byte */
    const uint8_t *body;  /* points into the parsed buffer */
    size_t body_len;
    const char *text;     /* QUERY, PASSWORD: NUL-terminated at body end */
    size_t text_len;      /* strlen(text) */
    const char *error;    /* static text when the parser fails, else NULL */
} pgw_msg;

/* Parses one typed message. A type byte that no frontend sends is a
 * protocol error (like PostgreSQL's "invalid frontend message type"). */
int pgw_parse_message(const uint8_t *buf, size_t len, pgw_msg *out,
                      size_t *consumed);

/* ---- Backend message builders ------------------------------------------ */
/* Each appends one whole message and returns b->err (0 on success). */

int pgw_put_auth_ok(pgw_buf *b);
int pgw_put_auth_cleartext(pgw_buf *b);
int pgw_put_auth_md5(pgw_buf *b, const uint8_t salt[4]);
int pgw_put_parameter_status(pgw_buf *b, const char *name, const char *value);
int pgw_put_backend_key(pgw_buf *b, int32_t pid, int32_t secret);
/* status: 'I' idle, 'T' in a transaction block, 'E' in a failed one. */
int pgw_put_ready(pgw_buf *b, char status);
/* Tells a 3.x client (x > 0) the server speaks 3.newest_minor and which
 * _pq_. options it did not recognise. */
int pgw_put_negotiate_version(pgw_buf *b, uint32_t newest_minor,
                              size_t nunrecognized, const char *const *names);

/* One RowDescription field; table OID, attribute number and typmod are
 * sent as 0/0/-1 and the format as text. */
typedef struct pgw_field {
    const char *name;
    uint32_t type_oid;
} pgw_field;

/* typlen sent for a type OID: 8 for int8/float8, -1 (varlena) otherwise. */
int16_t pgw_type_len(uint32_t type_oid);

/* HX_ERR_INVALID when n > INT16_MAX. */
int pgw_put_row_description(pgw_buf *b, size_t n, const pgw_field *fields);

/* DataRow, built incrementally: begin with the column count, then exactly
 * that many values, then pgw_msg_end(b, start). */
size_t pgw_datarow_begin(pgw_buf *b, uint16_t ncols);
int pgw_datarow_value(pgw_buf *b, const void *p, size_t n);
int pgw_datarow_null(pgw_buf *b);
/* Appends p as a bytea value in hex output format ("\x0aff..."). */
int pgw_datarow_bytea(pgw_buf *b, const void *p, size_t n);

/* DataRow from an array in one call; a NULL value pointer sends SQL NULL
 * (length -1). lens[i] is ignored for NULLs. */
int pgw_put_data_row(pgw_buf *b, uint16_t ncols, const char *const *values,
                     const size_t *lens);

int pgw_put_command_complete(pgw_buf *b, const char *tag);
int pgw_put_empty_query(pgw_buf *b);

/* ErrorResponse ('E') and NoticeResponse ('N'). severity: "ERROR",
 * "FATAL", "WARNING", "NOTICE"...; sqlstate: 5 characters; detail and hint
 * may be NULL. */
int pgw_put_error(pgw_buf *b, const char *severity, const char *sqlstate,
                  const char *message, const char *detail, const char *hint);
int pgw_put_notice(pgw_buf *b, const char *severity, const char *sqlstate,
                   const char *message, const char *detail, const char *hint);

#endif
