#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>

// OpenSSL spells these as macros over SSL_CTX_ctrl and friends, which Swift cannot call: thin functions instead.

static inline int CSSL_CTX_set_protocol_range(SSL_CTX *context, int minimum, int maximum) {
    return SSL_CTX_set_min_proto_version(context, minimum) && SSL_CTX_set_max_proto_version(context, maximum);
}

static inline void CSSL_CTX_set_modes(SSL_CTX *context) {
    // Partial writes: a large response goes out record by record as the socket takes it; moving buffer:
    // a retried write may come from a reallocated array; release buffers: idle connections hold no 32 KiB.
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}

static inline void CSSL_CTX_set_server_options(SSL_CTX *context) {
    // No renegotiation (TLS 1.2); an EOF without close_notify is a plain end of stream (HTTP frames its own messages).
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
}

static inline int CSSL_CTX_set_groups(SSL_CTX *context, const char *groups) {
    return (int)SSL_CTX_set1_groups_list(context, groups);
}

static inline int CSSL_CTX_set_dh_auto(SSL_CTX *context) {
    return (int)SSL_CTX_set_dh_auto(context, 1);
}

/// The name in RFC 2253 form ("CN=client,O=Hospital"), written into `buffer` (NUL-terminated, cut to fit);
/// its full length, or -1.
static inline int CX509_NAME_rfc2253(const X509_NAME *name, char *buffer, int capacity) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return -1;
    int length = X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    if (length >= 0 && capacity > 0) {
        int read = BIO_read(bio, buffer, capacity - 1);
        buffer[read > 0 ? read : 0] = 0;
    }
    BIO_free(bio);
    return length;
}
