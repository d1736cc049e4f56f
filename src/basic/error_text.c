/* errno values as text, independent of the libc: see error_text.h. The table holds
 * the values the plugin, its tools and the kernel calls they make can report, with
 * glibc 2.36's wording (string/_strerror.c, sysdeps/gnu/errlist.h). */
#include "error_text.h"

#include <errno.h>
#include <string.h>

#include "../util.h"

static const char *const error_texts[] = {
    [EPERM] = "Operation not permitted (EPERM)",
    [ENOENT] = "No such file or directory (ENOENT)",
    [ESRCH] = "No such process (ESRCH)",
    [EINTR] = "Interrupted system call (EINTR)",
    [EIO] = "Input/output error (EIO)",
    [ENXIO] = "No such device or address (ENXIO)",
    [E2BIG] = "Argument list too long (E2BIG)",
    [ENOEXEC] = "Exec format error (ENOEXEC)",
    [EBADF] = "Bad file descriptor (EBADF)",
    [ECHILD] = "No child processes (ECHILD)",
    [EAGAIN] = "Resource temporarily unavailable (EAGAIN)",
    [ENOMEM] = "Cannot allocate memory (ENOMEM)",
    [EACCES] = "Permission denied (EACCES)",
    [EFAULT] = "Bad address (EFAULT)",
    [EBUSY] = "Device or resource busy (EBUSY)",
    [EEXIST] = "File exists (EEXIST)",
    [EXDEV] = "Invalid cross-device link (EXDEV)",
    [ENODEV] = "No such device (ENODEV)",
    [ENOTDIR] = "Not a directory (ENOTDIR)",
    [EISDIR] = "Is a directory (EISDIR)",
    [EINVAL] = "Invalid argument (EINVAL)",
    [ENFILE] = "Too many open files in system (ENFILE)",
    [EMFILE] = "Too many open files (EMFILE)",
    [ENOTTY] = "Inappropriate ioctl for device (ENOTTY)",
    [ETXTBSY] = "Text file busy (ETXTBSY)",
    [EFBIG] = "File too large (EFBIG)",
    [ENOSPC] = "No space left on device (ENOSPC)",
    [ESPIPE] = "Illegal seek (ESPIPE)",
    [EROFS] = "Read-only file system (EROFS)",
    [EMLINK] = "Too many links (EMLINK)",
    [EPIPE] = "Broken pipe (EPIPE)",
    [ERANGE] = "Numerical result out of range (ERANGE)",
    [EDEADLK] = "Resource deadlock avoided (EDEADLK)",
    [ENAMETOOLONG] = "File name too long (ENAMETOOLONG)",
    [ENOSYS] = "Function not implemented (ENOSYS)",
    [ENOTEMPTY] = "Directory not empty (ENOTEMPTY)",
    [ELOOP] = "Too many levels of symbolic links (ELOOP)",
    [ENODATA] = "No data available (ENODATA)",
    [EPROTO] = "Protocol error (EPROTO)",
    [EBADMSG] = "Bad message (EBADMSG)",
    [EOVERFLOW] = "Value too large for defined data type (EOVERFLOW)",
    [ENOTSOCK] = "Socket operation on non-socket (ENOTSOCK)",
    [EDESTADDRREQ] = "Destination address required (EDESTADDRREQ)",
    [EMSGSIZE] = "Message too long (EMSGSIZE)",
    [EPROTOTYPE] = "Protocol wrong type for socket (EPROTOTYPE)",
    [ENOPROTOOPT] = "Protocol not available (ENOPROTOOPT)",
    [EPROTONOSUPPORT] = "Protocol not supported (EPROTONOSUPPORT)",
    [EOPNOTSUPP] = "Operation not supported (EOPNOTSUPP)",
    [EAFNOSUPPORT] = "Address family not supported by protocol (EAFNOSUPPORT)",
    [EADDRINUSE] = "Address already in use (EADDRINUSE)",
    [EADDRNOTAVAIL] = "Cannot assign requested address (EADDRNOTAVAIL)",
    [ENETDOWN] = "Network is down (ENETDOWN)",
    [ENETUNREACH] = "Network is unreachable (ENETUNREACH)",
    [ECONNABORTED] = "Software caused connection abort (ECONNABORTED)",
    [ECONNRESET] = "Connection reset by peer (ECONNRESET)",
    [ENOBUFS] = "No buffer space available (ENOBUFS)",
    [EISCONN] = "Transport endpoint is already connected (EISCONN)",
    [ENOTCONN] = "Transport endpoint is not connected (ENOTCONN)",
    [ETIMEDOUT] = "Connection timed out (ETIMEDOUT)",
    [ECONNREFUSED] = "Connection refused (ECONNREFUSED)",
    [EHOSTUNREACH] = "No route to host (EHOSTUNREACH)",
    [EALREADY] = "Operation already in progress (EALREADY)",
    [EINPROGRESS] = "Operation now in progress (EINPROGRESS)",
    [EDQUOT] = "Disk quota exceeded (EDQUOT)",
    [ECANCELED] = "Operation canceled (ECANCELED)",
};

const char *error_text(int errnum)
{
	if (errnum > 0 && (size_t)errnum < ARRAY_SIZE(error_texts) && error_texts[errnum])
		return error_texts[errnum];
	return strerror(errnum);
}
