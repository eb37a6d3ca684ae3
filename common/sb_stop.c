/*  sb_stop: SIGINT and SIGTERM taken by the main thread alone (see the
    header). The one piece of global state is the flag that a stop was
    asked, written and read by the main thread only.
*/
#include "sb_stop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

//  A stop was asked (main thread only; see STYLE.md on the signal flag).
static volatile sig_atomic_t s_asked = 0;

static void
s_set (sigset_t *set)
{
    sigemptyset (set);
    sigaddset (set, SIGINT);
    sigaddset (set, SIGTERM);
}

int
sb_stop_init (void)
{
    sigset_t set;
    s_set (&set);
    return pthread_sigmask (SIG_BLOCK, &set, NULL) == 0 ? 0 : -1;
}

bool
sb_stop_wait (int timeout_ms)
{
    if (s_asked)
        return true;
    sigset_t set;
    s_set (&set);
    int sig;
    if (timeout_ms < 0) {
        do
            sig = sigwaitinfo (&set, NULL);
        while (sig < 0 && errno == EINTR);
    }
    else {
        struct timespec wait = {timeout_ms / 1000, (long) (timeout_ms % 1000) * 1000000L};
        do
            sig = sigtimedwait (&set, NULL, &wait);
        while (sig < 0 && errno == EINTR && timeout_ms == 0);
    }
    if (sig == SIGINT || sig == SIGTERM)
        s_asked = 1;
    return s_asked;
}
