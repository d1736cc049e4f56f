/* Fuzz target: one well-framed gRPC call per input whose request message is fuzzed,
 * so the fuzzer spends its time in protobuf-c's unpack and the handlers' validation
 * instead of in HTTP/2 framing. An nghttp2 client session plays the kubelet and checks
 * the answer: valid HTTP/2, a grpc-status on every unary call, and an OK response
 * that decodes as the method's response type.
 * Input: byte 0 picks the method, byte 1 the options, the rest is the message. */
#include "fuzz_common.h"
#include "grpc/frame.h"
#include "util.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct method {
	const char *path;
	const ProtobufCMessageDescriptor *response; /* NULL: any */
	bool streaming;
};

static const struct method methods[] = {
    {"/v1beta1.DevicePlugin/Allocate", &v1beta1__allocate_response__descriptor, false},
    {"/v1beta1.DevicePlugin/GetPreferredAllocation",
     &v1beta1__preferred_allocation_response__descriptor, false},
    {"/v1beta1.DevicePlugin/PreStartContainer", &v1beta1__pre_start_container_response__descriptor,
     false},
    {"/v1beta1.DevicePlugin/GetDevicePluginOptions", &v1beta1__device_plugin_options__descriptor,
     false},
    {"/v1beta1.DevicePlugin/ListAndWatch", &v1beta1__list_and_watch_response__descriptor, true},
    {"/v1beta1.DevicePlugin/NoSuchMethod", NULL, false},
};

enum {
	/* bits 0-1: the DATA chunk size the request is split into */
	OPT_COMPRESSED = 1 << 2,  /* set the compressed flag of the message prefix */
	OPT_TWICE = 1 << 3,	  /* send the message twice in the stream */
	OPT_NO_PREFIX = 1 << 4,	  /* raw payload, no 5-byte prefix */
	OPT_SECOND_CALL = 1 << 5, /* a second stream with the same request */
	OPT_CLOSE = 1 << 6,	  /* close the client before the server is freed */
};

static const size_t chunk_sizes[] = {16384, 1, 7, 300};

struct client {
	struct fuzz_daemon *d;
	const struct method *method;
	uint8_t *request;
	size_t request_len, request_pos;
	size_t chunk;
	uint8_t *out; /* what the client session wants sent */
	size_t out_len;
	int status[2]; /* grpc-status per stream, -1: none yet */
	bool closed[2];
	struct grpc_reader responses[2];
	int32_t stream_ids[2];
};

static int client_stream_index(const struct client *c, int32_t stream_id)
{
	for (int i = 0; i < 2; i++)
		if (c->stream_ids[i] == stream_id)
			return i;
	return -1;
}

static ssize_t client_send(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
			   void *user_data)
{
	struct client *c = user_data;
	(void)session;
	(void)flags;

	c->out = xrealloc(c->out, c->out_len + length);
	memcpy(c->out + c->out_len, data, length);
	c->out_len += length;
	return (ssize_t)length;
}

static ssize_t client_read_request(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
				   size_t length, uint32_t *data_flags, nghttp2_data_source *source,
				   void *user_data)
{
	struct client *c = user_data;
	size_t *pos = source->ptr;
	(void)session;
	(void)stream_id;
	size_t n = c->request_len - *pos;

	if (n > length)
		n = length;
	if (n > c->chunk)
		n = c->chunk;
	memcpy(buf, c->request + *pos, n);
	*pos += n;
	if (*pos == c->request_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int client_on_header(nghttp2_session *session, const nghttp2_frame *frame,
			    const uint8_t *name, size_t namelen, const uint8_t *value,
			    size_t valuelen, uint8_t flags, void *user_data)
{
	struct client *c = user_data;
	int i = client_stream_index(c, frame->hd.stream_id);
	(void)session;
	(void)flags;

	if (i >= 0 && namelen == 11 && !memcmp(name, "grpc-status", 11)) {
		c->status[i] = grpc_status_parse(value, valuelen);
		fuzz_assert(c->status[i] >= 0);
	}
	return 0;
}

static int client_on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			  const uint8_t *data, size_t len, void *user_data)
{
	struct client *c = user_data;
	int i = client_stream_index(c, stream_id);
	(void)session;
	(void)flags;

	if (i >= 0)
		fuzz_assert(grpc_reader_append(&c->responses[i], data, len) == 0);
	return 0;
}

static int client_on_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	struct client *c = user_data;
	int i = client_stream_index(c, stream_id);
	(void)session;
	(void)error_code;

	if (i >= 0)
		c->closed[i] = true;
	return 0;
}

/* What the server sent goes into the client session: it must be valid HTTP/2. */
static void client_receive(void *data, const uint8_t *buf, size_t len)
{
	nghttp2_session *session = data;
	ssize_t used = nghttp2_session_mem_recv(session, buf, len);

	if (used < 0)
		fprintf(stderr, "client: %s\n", nghttp2_strerror((int)used));
	fuzz_assert(used == (ssize_t)len);
}

/* Every response message of stream i decodes as the method's response type. */
static void client_check_responses(struct client *c, int i)
{
	const uint8_t *msg;
	size_t len;
	int r;
	int count = 0;

	while ((r = grpc_reader_next(&c->responses[i], &msg, &len)) == 1) {
		count++;
		if (!c->method->response)
			continue;
		ProtobufCMessage *m =
		    protobuf_c_message_unpack(c->method->response, NULL, len, msg);
		fuzz_assert(m);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	fuzz_assert(r == 0);
	fuzz_assert(grpc_reader_pending(&c->responses[i]) == 0);
	if (c->status[i] == 0 && !c->method->streaming)
		fuzz_assert(count == 1); /* a unary OK carries exactly one response */
	if (c->status[i] > 0)
		fuzz_assert(count == 0); /* our errors are Trailers-Only */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_daemon d;
	struct client c = {0};
	nghttp2_session_callbacks *callbacks;
	nghttp2_session *session;

	if (size < 2 || size > (size_t)GRPC_MAX_MESSAGE_SIZE)
		return 0;
	c.method = &methods[data[0] % ARRAY_SIZE(methods)];
	uint8_t opts = data[1];
	const uint8_t *payload = data + 2;
	size_t payload_len = size - 2;

	/* The request body: [prefix] payload, once or twice. */
	size_t one = payload_len + (opts & OPT_NO_PREFIX ? 0 : GRPC_PREFIX_SIZE);
	c.request_len = one * (opts & OPT_TWICE ? 2 : 1);
	c.request = xmalloc(c.request_len ? c.request_len : 1);
	for (size_t off = 0; off < c.request_len; off += one) {
		uint8_t *p = c.request + off;
		if (!(opts & OPT_NO_PREFIX)) {
			p[0] = opts & OPT_COMPRESSED ? 1 : 0;
			p[1] = (uint8_t)(payload_len >> 24);
			p[2] = (uint8_t)(payload_len >> 16);
			p[3] = (uint8_t)(payload_len >> 8);
			p[4] = (uint8_t)payload_len;
			p += GRPC_PREFIX_SIZE;
		}
		if (payload_len)
			memcpy(p, payload, payload_len);
	}
	c.chunk = chunk_sizes[opts & 3];
	c.status[0] = c.status[1] = -1;
	c.stream_ids[0] = c.stream_ids[1] = -1;

	fuzz_init();
	int fds_before = fuzz_fd_count();
	fuzz_daemon_start(&d);
	c.d = &d;

	fuzz_assert(nghttp2_session_callbacks_new(&callbacks) == 0);
	nghttp2_session_callbacks_set_send_callback(callbacks, client_send);
	nghttp2_session_callbacks_set_on_header_callback(callbacks, client_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, client_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, client_on_close);
	fuzz_assert(nghttp2_session_client_new(&session, callbacks, &c) == 0);
	nghttp2_session_callbacks_del(callbacks);
	fuzz_assert(nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, NULL, 0) == 0);

	nghttp2_nv headers[] = {
	    {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
	    {(uint8_t *)":path", (uint8_t *)c.method->path, 5, strlen(c.method->path), 0},
	    {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0},
	    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
	    {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0},
	};
	size_t positions[2] = {0, 0};
	int streams = opts & OPT_SECOND_CALL ? 2 : 1;
	for (int i = 0; i < streams; i++) {
		nghttp2_data_provider provider = {.source.ptr = &positions[i],
						  .read_callback = client_read_request};
		c.stream_ids[i] = nghttp2_submit_request(session, NULL, headers,
							 ARRAY_SIZE(headers), &provider, NULL);
		fuzz_assert(c.stream_ids[i] > 0);
	}

	/* Exchange until neither side has anything more to say. */
	bool open = true;
	for (int round = 0; round < 1000 && open; round++) {
		fuzz_assert(nghttp2_session_send(session) == 0);
		if (c.out_len == 0)
			break;
		uint8_t *out = c.out;
		size_t out_len = c.out_len;
		c.out = NULL;
		c.out_len = 0;
		open = fuzz_daemon_write(&d, out, out_len, 0, client_receive, session);
		free(out);
	}
	fuzz_daemon_settle(&d, client_receive, session);

	for (int i = 0; i < streams; i++) {
		if (!c.method->streaming) {
			/* Every unary call is answered, with a status. */
			fuzz_assert(c.closed[i]);
			fuzz_assert(c.status[i] >= 0);
		}
		client_check_responses(&c, i);
	}
	if (opts & OPT_CLOSE) {
		close(d.client_fd);
		d.client_fd = -1;
		fuzz_daemon_settle(&d, NULL, NULL);
	}
	fuzz_daemon_stop(&d);
	nghttp2_session_del(session);
	for (int i = 0; i < 2; i++)
		grpc_reader_free(&c.responses[i]);
	free(c.out);
	free(c.request);
	fuzz_assert(fuzz_fd_count() == fds_before);
	return 0;
}
