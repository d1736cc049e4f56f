/* One error object for a reason that must reach a log line or a gRPC status: the
 * -errno code and a one-line message saying what failed, on what, and why. It is
 * filled where the error arises and reported once, by the layer that decides what
 * happens (see "Conventions" in docs/architecture.md). */
#pragma once

#define ERROR_MESSAGE_SIZE 512

struct error {
	int code;			  /* 0, or -errno */
	char message[ERROR_MESSAGE_SIZE]; /* "" while code is 0; truncated if longer */
};

/* Records code (a negative errno) and the message formatted from fmt in *e, which may
 * be NULL (the caller wants only the code). Returns code, so a failure path reads
 * "return error_set(e, -errno, "cannot open %s: %s", path, strerror(errno));". */
int error_set(struct error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The message of e, or strerror(-e->code) when the code came without one; "" for an
 * error that is not set. */
const char *error_message(const struct error *e);
