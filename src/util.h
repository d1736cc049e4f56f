/* Small helpers every module uses: cleanup attributes so an early return never
 * leaks an fd or a buffer (the crun/systemd idiom), and allocation that aborts on
 * out-of-memory, the one failure we do not propagate. */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void close_fdp(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void free_voidp(void *p)
{
	free(*(void **)p);
}

#define cleanup_close __attribute__((cleanup(close_fdp)))
#define cleanup_free  __attribute__((cleanup(free_voidp)))

/* Hands ownership of an fd out of a cleanup_close variable. */
static inline int take_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

/* Hands ownership of a pointer out of a cleanup_free variable. */
#define take_ptr(p)                                                                                \
	({                                                                                         \
		__typeof__(p) taken_ = (p);                                                        \
		(p) = NULL;                                                                        \
		taken_;                                                                            \
	})

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* mkdir -p: creates the missing directories of path (each with mode; existing ones
 * are left as they are). Returns 0 or -errno (ENOTDIR if a component exists and is
 * not a directory). */
int mkdir_parents(const char *path, unsigned int mode);

/* Monotonic clock in microseconds. */
unsigned long long now_usec(void);
