/* hexad error codes.
 *
 * Functions return int: 0 on success, one of these negative codes on
 * failure, with results through out-parameters. Translate errno, SQLITE_*
 * and RocksDB error strings into these at the module boundary.
 * The same codes travel on the wire in Error.code.
 */
#ifndef HX_ERR_H
#define HX_ERR_H

enum hx_err {
    HX_OK = 0,
    HX_ERR_NOMEM = -1,             /* allocation failed */
    HX_ERR_IO = -2,                /* disk or socket I/O failed */
    HX_ERR_INVALID = -3,           /* bad argument or malformed input */
    HX_ERR_STALE_EPOCH = -4,       /* request carries an older volume epoch */
    HX_ERR_STALE_MEMBERSHIP = -5,  /* request carries an older membership epoch */
    HX_ERR_NOT_FOUND = -6,         /* no such segment, page or key */
    HX_ERR_NOT_COMPLETE = -7,      /* read point above the segment's SCL */
    HX_ERR_CHECKSUM = -8,          /* stored or received data fails its checksum */
    HX_ERR_TIMEOUT = -9,           /* a deadline passed */
    HX_ERR_NO_QUORUM = -10,        /* too few segments reachable */
    HX_ERR_TOO_BIG = -11,          /* over a configured limit */
    HX_ERR_PROTOCOL = -12,         /* peer broke the wire protocol */
    HX_ERR_CONFIG = -13,           /* bad configuration */
    HX_ERR_CLOSED = -14,           /* object or connection already closed */
    HX_ERR_NO_SPACE = -15,         /* disk full */
    HX_ERR_FENCED = -16,           /* a newer writer owns the volume */
    HX_ERR_TRUNCATED = -17,        /* record lies in a truncated range */
    HX_ERR_BUSY = -18,             /* back-pressure: retry later */
};

/* A static, human-readable description of err; never NULL. */
const char *hx_strerror(int err);

#endif
