/*  sb_zmq: ZeroMQ security for every switchboard binary: CURVE encryption
    and client authentication (czmq zcert and zauth), and the rule that a
    non-loopback endpoint is never bound in plaintext unless allowed.

    Settings (see README.md "Running the services on separate hosts"):
      SB_CURVE_SERVER_SECRET  servers (ingress, dispatcher): their key pair,
                              the secret certificate file `switchboard keygen`
                              wrote (NAME.key_secret), or the Z85 secret key
      SB_CURVE_ALLOWED        servers: directory of the clients' public
                              certificates (NAME.key), or * for any client key
      SB_CURVE_SERVER_PUBLIC  clients (dispatcher, tap, replay): the server's
                              public key, Z85 or its NAME.key file
      SB_CURVE_CLIENT_CERT    clients: their key pair (NAME.key_secret, or
                              the Z85 secret key)
      SB_ZMQ_ALLOW_PLAINTEXT  1: bind non-loopback endpoints without CURVE

    With a server key pair, every socket bound through sb_zmq_bind is a
    CURVE server and one zauth actor (there can be only one per process)
    admits the clients whose public key is in SB_CURVE_ALLOWED. zauth
    rereads that directory when it changes: keys added or removed apply to
    new connections without a restart. With a server public key, every
    socket connected through sb_zmq_connect is a CURVE client.
*/
#ifndef SB_ZMQ_H_INCLUDED
#define SB_ZMQ_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

#include "sb_config.h"

typedef struct sb_zmq_security_t sb_zmq_security_t;

//  Read and check the CURVE settings of config: load the key files, check
//  that each secret key matches its public key, check the allowed
//  directory, and start the zauth actor when config holds a server key
//  pair. Create it before binding any socket and destroy it after closing
//  them. On a bad setting returns NULL and writes one line naming the
//  variable into err. Caller owns the return value.
sb_zmq_security_t *sb_zmq_security_new (const sb_config_t *config, char *err, size_t err_size);

//  Stop zauth and wipe the keys.
void sb_zmq_security_destroy (sb_zmq_security_t **self_p);

//  Bind sock to each endpoint of the comma-separated list endpoints (the
//  value of setting, for messages; setting may be NULL). what names the
//  socket in log lines ("PUB", "replay"). Makes sock a CURVE server first
//  when there is a server key pair; without one, refuses a non-loopback
//  endpoint unless SB_ZMQ_ALLOW_PLAINTEXT=1. 0, or -1 after logging why.
int sb_zmq_bind (const sb_zmq_security_t *self, zsock_t *sock, const char *what,
                 const char *setting, const char *endpoints);

//  Connect sock to each endpoint of endpoints, as a CURVE client of
//  SB_CURVE_SERVER_PUBLIC when that is set. A plaintext connection to a
//  non-loopback endpoint is logged as a warning (unless allowed). 0, or -1
//  after logging why.
int sb_zmq_connect (const sb_zmq_security_t *self, zsock_t *sock, const char *what,
                    const char *setting, const char *endpoints);

//  ---- For tests: public so the unit tests reach them; no other module
//  calls them. They are the decisions sb_zmq_bind and sb_zmq_connect take,
//  which the tests check without binding.

//  True when sockets bound through this object are CURVE servers.
bool sb_zmq_security_server (const sb_zmq_security_t *self);
//  True when sockets connected through this object are CURVE clients.
bool sb_zmq_security_client (const sb_zmq_security_t *self);

//  True when endpoint never leaves this host: inproc://, ipc://, and tcp://
//  to 127.0.0.0/8, [::1] or localhost. Anything else, or anything that does
//  not parse as exactly that (an interface name, "*", a hostname, a source
//  address with ';'), is not local.
bool sb_zmq_endpoint_is_local (const char *endpoint);

#endif
