/* Small helpers every module uses: cleanup attributes so an early return never
 * leaks an fd, a buffer or a directory stream (the crun/systemd idiom), and
 * allocation that aborts on out-of-memory, the one failure we do not propagate. */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/**
 * ARRAY_SIZE() - the number of elements of an array
 * @a: an array (not a pointer)
 */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/**
 * close_fdp() - the cleanup function of cleanup_close
 * @fd: the variable; closed if it is >= 0, errno kept
 */
static inline void close_fdp(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

/**
 * free_voidp() - the cleanup function of cleanup_free
 * @p: the address of the pointer variable, which is freed
 */
static inline void free_voidp(void *p)
{
	free(*(void **)p);
}

/**
 * closedirp() - the cleanup function of cleanup_closedir
 * @d: the variable; closed if it is not NULL, errno kept
 */
static inline void closedirp(DIR **d)
{
	if (*d) {
		int saved = errno;
		closedir(*d);
		errno = saved;
	}
}

#define cleanup_close	 __attribute__((cleanup(close_fdp)))
#define cleanup_free	 __attribute__((cleanup(free_voidp)))
#define cleanup_closedir __attribute__((cleanup(closedirp)))

/**
 * take_fd() - hand ownership of an fd out of a cleanup_close variable
 * @fd: the variable, left -1
 *
 * Return: the fd it held.
 */
static inline int take_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

/**
 * take_ptr() - hand ownership of a pointer out of a cleanup_free variable
 * @p: the variable, left NULL
 *
 * Return: the pointer it held.
 */
#define take_ptr(p)                                                                                \
	({                                                                                         \
		__typeof__(p) taken_ = (p);                                                        \
		(p) = NULL;                                                                        \
		taken_;                                                                            \
	})

/**
 * xmalloc() - malloc() that aborts on out of memory
 * @size: bytes to allocate
 *
 * Return: the new memory (caller frees), never NULL.
 */
void *xmalloc(size_t size);

/**
 * xcalloc() - calloc() that aborts on out of memory
 * @count: number of elements
 * @size:  size of one element
 *
 * Return: the new zeroed memory (caller frees), never NULL.
 */
void *xcalloc(size_t count, size_t size);

/**
 * xrealloc() - realloc() that aborts on out of memory
 * @p:    memory from x*alloc(), or NULL
 * @size: its new size
 *
 * Return: the moved or grown memory (caller frees), never NULL.
 */
void *xrealloc(void *p, size_t size);

/**
 * xstrdup() - strdup() that aborts on out of memory
 * @s: the string to copy
 *
 * Return: the copy (caller frees), never NULL.
 */
char *xstrdup(const char *s);

/**
 * xasprintf() - asprintf() that aborts on out of memory
 * @fmt: printf format, then its arguments
 *
 * Return: the formatted string (caller frees), never NULL.
 */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/**
 * mkdir_parents() - mkdir -p
 * @path: the directory to create, with its missing parents
 * @mode: the mode of each directory created; existing ones are left as they are
 *
 * Return: 0, or -errno (-ENOTDIR if a component exists and is not a directory).
 */
int mkdir_parents(const char *path, unsigned int mode);

/**
 * now_usec() - the monotonic clock
 *
 * Return: CLOCK_MONOTONIC in microseconds.
 */
unsigned long long now_usec(void);

/**
 * strings_contain() - whether an array of strings holds one equal to @s
 * @strings: the array
 * @count:   its length
 * @s:       the string looked for
 *
 * A linear search: for short lists only (a peer's lists are looked up by index).
 *
 * Return: true if one of @strings equals @s.
 */
bool strings_contain(char *const *strings, size_t count, const char *s);

/**
 * span_equals() - whether a span of bytes (not NUL-terminated) is the string @s
 * @p:   the bytes: a header name or value, a method, a path
 * @len: their number
 * @s:   a NUL-terminated string
 *
 * The one way header names and the like are compared, in gRPC (HTTP/2 names are
 * lower case) and in HTTP/1 (see span_equals_ignore_case()).
 *
 * Return: true if the @len bytes at @p are exactly @s.
 */
static inline bool span_equals(const void *p, size_t len, const char *s)
{
	return strlen(s) == len && memcmp(p, s, len) == 0;
}

/**
 * span_equals_ignore_case() - span_equals() ignoring ASCII case
 * @p:   the bytes
 * @len: their number
 * @s:   a NUL-terminated string
 *
 * For HTTP/1 header names, which are case-insensitive (RFC 9110 §5.1).
 *
 * Return: true if the @len bytes at @p are @s but for case.
 */
static inline bool span_equals_ignore_case(const void *p, size_t len, const char *s)
{
	return strlen(s) == len && strncasecmp(p, s, len) == 0;
}
