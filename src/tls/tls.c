/* mbedTLS 2.28 (Debian bookworm's libmbedtls) under the loop: our own non-blocking BIO
 * on the socket, TLS 1.2 with ALPN h2, the peer checked against the CA bundle and an IP
 * SAN (mbedTLS 2.28 matches host names only, so the IP check is ours, in verify_ip()). */
#include "tls.h"
#include "../basic/error_text.h"
#include "../util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h> /* its error codes only: the BIO is ours */
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

struct tls_config {
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
};

struct tls_session {
	mbedtls_ssl_context ssl;
	int fd;
	bool wants_write;
	uint8_t ip[16]; /* the address the certificate must name */
	size_t ip_len;	/* 4 or 16 */
};

/* RFC 7540 9.2.2: HTTP/2 over TLS 1.2 needs ephemeral key exchange and an AEAD cipher;
 * the API server (Go's crypto/tls) offers these. */
static const int ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

static const char *alpn_protocols[] = {"h2", NULL};

static const char *mbedtls_text(int code, char *buf, size_t size)
{
	mbedtls_strerror(code, buf, size);
	return buf;
}

/* x509 subjectAltName GeneralName iPAddress is [7] IMPLICIT OCTET STRING (RFC 5280
 * 4.2.1.6); mbedTLS 2.28 keeps such entries raw in subject_alt_names. */
#define SAN_IP_ADDRESS_TAG (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7)

static int verify_ip(void *data, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	const struct tls_session *session = data;

	if (depth != 0)
		return 0;
	for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san; san = san->next)
		if (san->buf.tag == SAN_IP_ADDRESS_TAG && san->buf.len == session->ip_len &&
		    memcmp(san->buf.p, session->ip, session->ip_len) == 0)
			return 0;
	*flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
	return 0;
}

static int bio_send(void *data, const unsigned char *buf, size_t len)
{
	struct tls_session *session = data;
	ssize_t n;

	do
		n = send(session->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
						     : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *data, unsigned char *buf, size_t len)
{
	struct tls_session *session = data;
	ssize_t n;

	do
		n = recv(session->fd, buf, len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return (int)n; /* 0: EOF, which mbedTLS reports as a closed connection */
	if (errno == EAGAIN)
		return MBEDTLS_ERR_SSL_WANT_READ;
	return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
}

int tls_config_new(const char *ca_file, struct tls_config **out, struct error *err)
{
	struct tls_config *config = xcalloc(1, sizeof(*config));
	char text[128];
	int r;

	mbedtls_ssl_config_init(&config->conf);
	mbedtls_x509_crt_init(&config->ca);
	mbedtls_entropy_init(&config->entropy);
	mbedtls_ctr_drbg_init(&config->drbg);
	r = mbedtls_x509_crt_parse_file(&config->ca, ca_file);
	if (r != 0 || config->ca.version == 0) {
		/* parse_file reports a missing file as a generic read error: ask the kernel. */
		int code = access(ca_file, R_OK) < 0 ? -errno : -EINVAL;
		error_set(err, code, "cannot load CA bundle %s: %s", ca_file,
			  code != -EINVAL ? error_text(-code)
			  : r < 0	  ? mbedtls_text(r, text, sizeof(text))
					  : "some certificates in it are invalid");
		tls_config_free(config);
		return code;
	}
	r = mbedtls_ctr_drbg_seed(&config->drbg, mbedtls_entropy_func, &config->entropy,
				  (const unsigned char *)"iommufd-dra", 11);
	if (r == 0)
		r = mbedtls_ssl_config_defaults(&config->conf, MBEDTLS_SSL_IS_CLIENT,
						MBEDTLS_SSL_TRANSPORT_STREAM,
						MBEDTLS_SSL_PRESET_DEFAULT);
	if (r == 0)
		r = mbedtls_ssl_conf_alpn_protocols(&config->conf, alpn_protocols);
	if (r != 0) {
		error_set(err, -EIO, "cannot set up TLS: %s", mbedtls_text(r, text, sizeof(text)));
		tls_config_free(config);
		return -EIO;
	}
	mbedtls_ssl_conf_rng(&config->conf, mbedtls_ctr_drbg_random, &config->drbg);
	mbedtls_ssl_conf_authmode(&config->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&config->conf, &config->ca, NULL);
	mbedtls_ssl_conf_min_version(&config->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(&config->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_ciphersuites(&config->conf, ciphersuites);
	*out = config;
	return 0;
}

void tls_config_free(struct tls_config *config)
{
	if (!config)
		return;
	mbedtls_ssl_config_free(&config->conf);
	mbedtls_x509_crt_free(&config->ca);
	mbedtls_ctr_drbg_free(&config->drbg);
	mbedtls_entropy_free(&config->entropy);
	free(config);
}

int tls_session_new(struct tls_config *config, int fd, const char *ip, struct tls_session **out)
{
	struct tls_session *session = xcalloc(1, sizeof(*session));

	session->fd = fd;
	if (inet_pton(AF_INET, ip, session->ip) == 1) {
		session->ip_len = 4;
	} else if (inet_pton(AF_INET6, ip, session->ip) == 1) {
		session->ip_len = 16;
	} else {
		free(session);
		return -EINVAL;
	}
	mbedtls_ssl_init(&session->ssl);
	if (mbedtls_ssl_setup(&session->ssl, &config->conf) != 0)
		abort(); /* fails only for want of memory */
	mbedtls_ssl_set_bio(&session->ssl, session, bio_send, bio_recv, NULL);
	mbedtls_ssl_set_verify(&session->ssl, verify_ip, session);
	*out = session;
	return 0;
}

/* Maps an mbedTLS result to -EAGAIN (remembering which event), or to a -errno. */
static int session_result(struct tls_session *session, int r)
{
	if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
		session->wants_write = r == MBEDTLS_ERR_SSL_WANT_WRITE;
		return -EAGAIN;
	}
	if (r == MBEDTLS_ERR_NET_CONN_RESET || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		return -ECONNRESET;
	return -EPROTO;
}

int tls_handshake(struct tls_session *session, struct error *err)
{
	char text[128];
	int r = mbedtls_ssl_handshake(&session->ssl);

	if (r == 0) {
		const char *alpn = mbedtls_ssl_get_alpn_protocol(&session->ssl);
		if (!alpn || strcmp(alpn, "h2") != 0)
			return error_set(err, -EPROTO,
					 "TLS server did not agree to HTTP/2 (ALPN h2)");
		return 0;
	}
	if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		char why[256];
		uint32_t flags = mbedtls_ssl_get_verify_result(&session->ssl);
		int n = mbedtls_x509_crt_verify_info(why, sizeof(why), "", flags);
		if (n > 0 && why[n - 1] == '\n')
			why[n - 1] = '\0';
		const char *reason = why + strspn(why, " ");
		return error_set(err, -EPERM, "TLS server not verified: %s", n > 0 ? reason : "?");
	}
	int code = session_result(session, r);
	if (code == -EAGAIN)
		return code;
	return error_set(err, code, "TLS handshake failed: %s",
			 mbedtls_text(r, text, sizeof(text)));
}

bool tls_wants_write(const struct tls_session *session)
{
	return session->wants_write;
}

ssize_t tls_recv(struct tls_session *session, uint8_t *buf, size_t len)
{
	size_t total = 0;

	while (total < len) {
		int r = mbedtls_ssl_read(&session->ssl, buf + total, len - total);
		if (r > 0) {
			total += (size_t)r;
			continue;
		}
		if (total > 0)
			break; /* report what we have; the error comes back next time */
		if (r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
			return 0;
		return session_result(session, r);
	}
	return (ssize_t)total;
}

int tls_send_pending(struct tls_session *session, const uint8_t *buf, size_t len, size_t *pos)
{
	while (*pos < len) {
		int r = mbedtls_ssl_write(&session->ssl, buf + *pos, len - *pos);
		if (r > 0) {
			*pos += (size_t)r;
			continue;
		}
		r = session_result(session, r);
		return r == -EAGAIN ? 0 : r;
	}
	return 1;
}

bool tls_pending(const struct tls_session *session)
{
	return mbedtls_ssl_get_bytes_avail(&session->ssl) > 0;
}

void tls_session_free(struct tls_session *session)
{
	if (!session)
		return;
	mbedtls_ssl_free(&session->ssl);
	free(session);
}
