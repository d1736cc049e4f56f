/* Fuzz target: the HTTP/1.1 request head parser (src/http/), a pure function.
 * Besides memory safety it checks what the server relies on: results stay inside the
 * buffer, and a head parsed whole parses the same when it arrives in pieces. */
#include "fuzz_common.h"
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Parses buf[0..len) from an exact-size copy, so any read past it is caught. */
static int parse_copy(const uint8_t *buf, size_t len, struct http_request *req, char **copy)
{
	*copy = malloc(len ? len : 1);
	fuzz_assert(*copy);
	if (len)
		memcpy(*copy, buf, len);
	return http_parse_request(*copy, len, req);
}

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && n <= len && p + n <= buf + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request req, part;
	char *copy, *part_copy;

	int r = parse_copy(data, size, &req, &copy);
	fuzz_assert(r == 0 || r == -EAGAIN || r == -EBADMSG || r == -EPROTONOSUPPORT);
	if (r == 0) {
		fuzz_assert(req.head_len > 0 && req.head_len <= size);
		fuzz_assert(req.method_len > 0 && inside(req.method, req.method_len, copy, size));
		fuzz_assert(req.path_len > 0);
		/* The path points into the buffer, or is the static "/" of "http://host". */
		fuzz_assert(inside(req.path, req.path_len, copy, size) ||
			    (req.path_len == 1 && req.path[0] == '/'));
		fuzz_assert(req.minor_version >= 0 && req.minor_version <= 9);
		fuzz_assert(copy[req.head_len - 1] == '\n');

		/* The head alone parses the same; any strict prefix of it needs more bytes. */
		fuzz_assert(parse_copy(data, req.head_len, &part, &part_copy) == 0);
		fuzz_assert(part.head_len == req.head_len && part.method_len == req.method_len &&
			    part.path_len == req.path_len &&
			    part.minor_version == req.minor_version);
		free(part_copy);
		size_t cuts[] = {req.head_len - 1, req.head_len / 2, size > 0 ? data[0] % size : 0};
		for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
			if (cuts[i] >= req.head_len)
				continue;
			fuzz_assert(parse_copy(data, cuts[i], &part, &part_copy) == -EAGAIN);
			free(part_copy);
		}
	}
	free(copy);
	return 0;
}
