/* The HTTP/1.1 request head parser (RFC 9112 §2-5), a pure function over a buffer.
 * Why our own: we serve two GET paths from a static, dependency-light binary; the
 * well-kept parsers (llhttp, picohttpparser) would be a vendored dependency bigger
 * than this file for features we refuse anyway (bodies, chunking, keep-alive,
 * upgrades). It is strict rather than clever, and the fuzzing work drives it. */
#include "http.h"
#include "../util.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* tchar, RFC 9110 §5.6.2. */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* VCHAR, RFC 5234 appendix B.1: what a request-target is made of. */
static bool is_vchar(unsigned char c)
{
	return c > 0x20 && c < 0x7f;
}

/* field-vchar / obs-text and the whitespace between them, RFC 9110 §5.5. */
static bool is_field_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Finds the end of the line starting at pos: *content_end excludes the CRLF (or bare
 * LF, which RFC 9112 §2.2 lets a recipient accept), *next is after it. */
static int line_end(const char *buf, size_t len, size_t pos, size_t *content_end, size_t *next)
{
	const char *lf = memchr(buf + pos, '\n', len - pos);

	if (!lf)
		return -EAGAIN;
	size_t end = (size_t)(lf - buf);
	*next = end + 1;
	*content_end = end > pos && buf[end - 1] == '\r' ? end - 1 : end;
	return 0;
}

/* The path of the request-target: origin-form "/p?q" gives "/p"; absolute-form
 * "http://host/p?q" gives "/p" (RFC 9112 §3.2.2: servers must accept it); "*" is
 * kept (only OPTIONS uses it, which is refused later). */
static int target_path(const char *target, size_t n, struct http_request *req)
{
	size_t start = 0;

	if (n == 1 && target[0] == '*') {
		req->path = target;
		req->path_len = 1;
		return 0;
	}
	if (target[0] != '/') {
		size_t scheme = 0;
		if (n >= 7 && !strncasecmp(target, "http://", 7))
			scheme = 7;
		else if (n >= 8 && !strncasecmp(target, "https://", 8))
			scheme = 8;
		else
			return -EBADMSG;
		const char *slash = memchr(target + scheme, '/', n - scheme);
		if (!slash) {
			req->path = "/";
			req->path_len = 1;
			return 0;
		}
		start = (size_t)(slash - target);
	}
	size_t end = start;
	while (end < n && target[end] != '?' && target[end] != '#')
		end++;
	req->path = target + start;
	req->path_len = end - start;
	return 0;
}

/* method SP request-target SP HTTP-version, checked as far as the bytes go so junk is
 * refused at once rather than after HTTP_MAX_REQUEST bytes. Returns the offset after
 * the line, or -EAGAIN / -EBADMSG / -EPROTONOSUPPORT. */
static long parse_request_line(const char *buf, size_t len, size_t i, struct http_request *req)
{
	static const char name[] = "HTTP/";
	size_t start = i, end, next;

	while (i < len && is_tchar((unsigned char)buf[i]))
		i++;
	if (i == len)
		return -EAGAIN;
	if (buf[i] != ' ' || i == start)
		return -EBADMSG;
	req->method = buf + start;
	req->method_len = i - start;

	start = ++i;
	while (i < len && is_vchar((unsigned char)buf[i]))
		i++;
	if (i == len)
		return -EAGAIN;
	if (buf[i] != ' ' || i == start || target_path(buf + start, i - start, req) < 0)
		return -EBADMSG;

	i++;
	for (size_t k = 0; k < sizeof(name) - 1; k++, i++) {
		if (i == len)
			return -EAGAIN;
		if (buf[i] != name[k])
			return -EBADMSG;
	}
	/* HTTP-version = HTTP-name "/" DIGIT "." DIGIT */
	for (size_t k = 0; k < 3; k++) {
		if (i + k == len)
			return -EAGAIN;
		if (k == 1 ? buf[i + k] != '.' : (buf[i + k] < '0' || buf[i + k] > '9'))
			return -EBADMSG;
	}
	char major = buf[i];
	req->minor_version = buf[i + 2] - '0';
	i += 3;
	if (line_end(buf, len, i, &end, &next) < 0)
		return i + 1 < len || (i < len && buf[i] != '\r') ? -EBADMSG : -EAGAIN;
	if (end != i)
		return -EBADMSG;
	return major == '1' ? (long)next : -EPROTONOSUPPORT;
}

/* One field line: field-name ":" OWS field-value OWS. Counts Host fields. */
static int parse_field_line(const char *line, size_t n, unsigned *host_count)
{
	size_t i = 0;

	/* Obsolete line folding (RFC 9112 §5.2) and whitespace before the name. */
	while (i < n && is_tchar((unsigned char)line[i]))
		i++;
	/* No whitespace between name and colon (RFC 9112 §5.1: must be rejected). */
	if (i == 0 || i == n || line[i] != ':')
		return -EBADMSG;
	if (span_equals_ignore_case(line, i, "host"))
		(*host_count)++;
	for (i++; i < n; i++)
		if (!is_field_value_char((unsigned char)line[i]))
			return -EBADMSG;
	return 0;
}

int http_parse_request(const char *buf, size_t len, struct http_request *req)
{
	unsigned host_count = 0;
	size_t i = 0;

	*req = (struct http_request){0};
	/* RFC 9112 §2.2: ignore empty lines received before the request line. */
	while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
		i++;
	long r = parse_request_line(buf, len, i, req);
	if (r < 0)
		return (int)r;
	for (i = (size_t)r;;) {
		size_t end, next;
		if (line_end(buf, len, i, &end, &next) < 0)
			return -EAGAIN;
		if (end == i) {
			req->head_len = next;
			break;
		}
		if (parse_field_line(buf + i, end - i, &host_count) < 0)
			return -EBADMSG;
		i = next;
	}
	/* RFC 9112 §3.2: a 1.1 request without exactly one Host gets 400. */
	if (host_count > 1 || (req->minor_version >= 1 && host_count == 0))
		return -EBADMSG;
	return 0;
}

bool http_method_is(const struct http_request *req, const char *s)
{
	return span_equals(req->method, req->method_len, s);
}

bool http_path_is(const struct http_request *req, const char *s)
{
	return span_equals(req->path, req->path_len, s);
}
