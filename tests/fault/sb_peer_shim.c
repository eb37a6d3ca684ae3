/*  sb_peer_shim: a failure injector for getpeername, loaded with LD_PRELOAD
    into a real ingress (test_fault_watchdog_search). The ingress finds the
    socket of a connection it must cut among its descriptors by their
    addresses (getpeername); this makes that search miss or stall for one
    client's connection, as it would if the kernel were slow or the socket
    in an odd state.

    The control file SB_PEER_SHIM_FILE, read on every call, holds one line:
    - "fail PORT": a call whose descriptor's peer port is PORT fails with
      ENOTCONN (the search does not find that connection);
    - "sleep MS PORT": the first such call after the line was written sleeps
      MS milliseconds, then answers truly (the search stalls once);
    no file, or another word: every call answers truly.
    Every call is counted; each injection appends to SB_PEER_SHIM_LOG, when
    set, "<fail|sleep> port=<PORT> calls=<calls so far>", so a test sees how
    many getpeername calls a search made between two injections.
    Test use only.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

typedef int (*s_getpeername_fn) (int, struct sockaddr *, socklen_t *);

static atomic_ulong s_calls;
static atomic_long s_slept_mtime;  //  the control file's mtime (ns) a sleep was done for

static int
s_port_of (const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs (((const struct sockaddr_in *) (const void *) sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs (((const struct sockaddr_in6 *) (const void *) sa)->sin6_port);
    return -1;
}

static void
s_log (const char *what, int port, unsigned long calls)
{
    const char *path = getenv ("SB_PEER_SHIM_LOG");
    FILE *f = path ? fopen (path, "a") : NULL;
    if (!f)
        return;
    fprintf (f, "%s port=%d calls=%lu\n", what, port, calls);
    fclose (f);
}

int
getpeername (int fd, struct sockaddr *addr, socklen_t *len)
{
    static s_getpeername_fn real;
    if (!real)
        real = (s_getpeername_fn) dlsym (RTLD_NEXT, "getpeername");
    unsigned long calls = atomic_fetch_add (&s_calls, 1) + 1;
    int rc = real (fd, addr, len);
    const char *path = getenv ("SB_PEER_SHIM_FILE");
    if (rc != 0 || !path)
        return rc;
    struct stat st;
    FILE *f = stat (path, &st) == 0 ? fopen (path, "r") : NULL;
    if (!f)
        return rc;
    char word[16] = "";
    long a = 0, b = 0;
    int n = fscanf (f, "%15s %ld %ld", word, &a, &b);
    fclose (f);
    int port = s_port_of (addr);
    if (n >= 2 && strcmp (word, "fail") == 0 && port == a) {
        s_log ("fail", port, calls);
        errno = ENOTCONN;
        return -1;
    }
    long mtime = (long) st.st_mtim.tv_sec * 1000000000L + st.st_mtim.tv_nsec;
    if (n == 3 && strcmp (word, "sleep") == 0 && port == b
        && atomic_exchange (&s_slept_mtime, mtime) != mtime) {
        s_log ("sleep", port, calls);
        struct timespec ts = {a / 1000, (a % 1000) * 1000000L};
        nanosleep (&ts, NULL);
    }
    return rc;
}
