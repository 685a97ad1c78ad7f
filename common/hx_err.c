#include "hx_err.h"

const char *hx_strerror(int err)
{
    switch (err) {
    case HX_OK: return "ok";
    case HX_ERR_NOMEM: return "out of memory";
    case HX_ERR_IO: return "I/O error";
    case HX_ERR_INVALID: return "invalid argument or malformed input";
    case HX_ERR_STALE_EPOCH: return "stale volume epoch: a newer writer or recovery owns the volume";
    case HX_ERR_STALE_MEMBERSHIP: return "stale membership epoch: the protection group changed members";
    case HX_ERR_NOT_FOUND: return "not found";
    case HX_ERR_NOT_COMPLETE: return "read point above the segment complete LSN";
    case HX_ERR_CHECKSUM: return "checksum mismatch";
    case HX_ERR_TIMEOUT: return "timed out";
    case HX_ERR_NO_QUORUM: return "too few storage nodes reachable for a quorum";
    case HX_ERR_TOO_BIG: return "over a configured size limit";
    case HX_ERR_PROTOCOL: return "protocol error";
    case HX_ERR_CONFIG: return "bad configuration";
    case HX_ERR_CLOSED: return "closed";
    case HX_ERR_NO_SPACE: return "no space left on device";
    case HX_ERR_FENCED: return "fenced: a newer writer owns the volume";
    case HX_ERR_TRUNCATED: return "record lies in a truncated range";
    case HX_ERR_BUSY: return "busy, retry later";
    default: return "unknown error";
    }
}
