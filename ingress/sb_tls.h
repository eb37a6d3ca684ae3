/*  sb_tls: HTTPS on the ingress itself (civetweb with OpenSSL), for
    deployments without a TLS-terminating proxy: SB_TLS_CERT (PEM: the
    certificate, then its chain) and SB_TLS_KEY (PEM: its private key,
    unencrypted), both or neither. TLS 1.2 and later only. With
    SB_TLS_CLIENT_CA (and optionally SB_TLS_CLIENT_CN) it also checks client
    certificates (mTLS, as Meta presents one): in the handshake for every
    client that sends one, and per route for the routes that require one
    (sb_tls_client_ok).
*/
#ifndef SB_TLS_H_INCLUDED
#define SB_TLS_H_INCLUDED

#include <stdbool.h>

#include "sb_config.h"
#include "sb_metrics.h"

typedef struct sb_tls_t sb_tls_t;

//  True when config asks for TLS (any SB_TLS_* is set: sb_tls_new then
//  checks that the set makes sense).
bool sb_tls_wanted (const sb_config_t *config);

//  Load and check the certificate and key (they must match) and the client
//  CAs, and make civetweb's TLS ready (mg_init_library with TLS). Call
//  before mg_start2 and destroy after mg_stop. NULL after logging why,
//  naming the variable. metrics (borrowed) gets the client certificate
//  refusals (sb_http_tls_refused_total) when SB_TLS_CLIENT_CA is set.
//  Caller owns the return value.
sb_tls_t *sb_tls_new (const sb_config_t *config, sb_metrics_t *metrics);

//  Free the certificate and key; mg_exit_library.
void sb_tls_destroy (sb_tls_t **self_p);

//  For civetweb's init_ssl callback: put the certificate, chain and key on
//  ssl_ctx (an SSL_CTX *) and refuse TLS below 1.2. Returns what init_ssl
//  must: 1 done, -1 failed.
//  With SB_TLS_CLIENT_CA, also: ask every client for a certificate, and
//  refuse the handshake of one whose certificate does not chain to the CAs
//  or (SB_TLS_CLIENT_CN) has another subject CN. A client without one
//  completes its handshake.
int sb_tls_setup_ctx (sb_tls_t *self, void *ssl_ctx);

//  True when SB_TLS_CLIENT_CA is set: the routes that require a client
//  certificate then call sb_tls_client_ok.
bool sb_tls_client_required (const sb_tls_t *self);

//  For a route that requires a client certificate: peer_cert is the
//  connection's (an X509 *, borrowed; NULL when the client sent none).
//  True when it is there, the handshake having verified its chain, and its
//  CN is SB_TLS_CLIENT_CN (checked again); else counts the refusal.
bool sb_tls_client_ok (sb_tls_t *self, const void *peer_cert);

#endif
