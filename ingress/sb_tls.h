/*  sb_tls: HTTPS on the ingress itself (civetweb with OpenSSL), for
    deployments without a TLS-terminating proxy: SB_TLS_CERT (PEM: the
    certificate, then its chain) and SB_TLS_KEY (PEM: its private key,
    unencrypted), both or neither. TLS 1.2 and later only.
*/
#ifndef SB_TLS_H_INCLUDED
#define SB_TLS_H_INCLUDED

#include <stdbool.h>

#include "sb_config.h"

typedef struct sb_tls_t sb_tls_t;

//  True when config asks for TLS (SB_TLS_CERT or SB_TLS_KEY is set).
bool sb_tls_wanted (const sb_config_t *config);

//  Load and check the certificate and key (they must match), and make
//  civetweb's TLS ready (mg_init_library with TLS). Call before mg_start2
//  and destroy after mg_stop. NULL after logging why, naming the variable.
//  Caller owns the return value.
sb_tls_t *sb_tls_new (const sb_config_t *config);

//  Free the certificate and key; mg_exit_library.
void sb_tls_destroy (sb_tls_t **self_p);

//  For civetweb's init_ssl callback: put the certificate, chain and key on
//  ssl_ctx (an SSL_CTX *) and refuse TLS below 1.2. Returns what init_ssl
//  must: 1 done, -1 failed.
int sb_tls_setup_ctx (sb_tls_t *self, void *ssl_ctx);

#endif
