/* Fuzz target: gRPC's framing helpers, which see peer bytes first: the message reader
 * fed in fuzzed pieces, the grpc-status parser, and the grpc-message percent codec
 * (decode(encode(s)) == s). Input: one byte of chunk size, then the stream's DATA. */
#include "fuzz_common.h"
#include "grpc/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct grpc_reader reader = {0};
	const uint8_t *msg;
	size_t len, taken = 0;
	int r = 0;

	if (size < 1)
		return 0;
	size_t chunk = data[0] ? data[0] : size;
	data++;
	size--;

	for (size_t pos = 0; pos < size && r >= 0;) {
		size_t n = size - pos < chunk ? size - pos : chunk;
		r = grpc_reader_append(&reader, data + pos, n);
		fuzz_assert(r == 0 || r == -EMSGSIZE);
		pos += n;
		while (r == 0 && (r = grpc_reader_next(&reader, &msg, &len)) == 1) {
			fuzz_assert(len <= (size_t)GRPC_MAX_MESSAGE_SIZE);
			/* The message is the bytes after its prefix in the stream. */
			fuzz_assert(taken + GRPC_PREFIX_SIZE + len <= pos);
			fuzz_assert(len == 0 || !memcmp(msg, data + taken + GRPC_PREFIX_SIZE, len));
			taken += GRPC_PREFIX_SIZE + len;
			r = 0;
		}
		fuzz_assert(r == 0 || r == -EMSGSIZE || r == -EPROTONOSUPPORT || r == -EBADMSG);
		if (r == 0)
			fuzz_assert(grpc_reader_pending(&reader) == pos - taken);
	}
	grpc_reader_free(&reader);

	int status = grpc_status_parse(data, size);
	fuzz_assert(status == -EINVAL || (status >= 0 && status <= 16));

	char *text = malloc(size + 1);
	fuzz_assert(text);
	memcpy(text, data, size);
	text[size] = '\0';
	char *encoded = grpc_percent_encode(text);
	for (const char *p = encoded; *p; p++)
		fuzz_assert(*p >= 0x20 && *p <= 0x7e);
	char *decoded = grpc_percent_decode((const uint8_t *)encoded, strlen(encoded));
	fuzz_assert(!strcmp(decoded, text));
	free(decoded);
	free(encoded);
	char *raw = grpc_percent_decode(data, size);
	fuzz_assert(raw);
	free(raw);
	free(text);
	return 0;
}
