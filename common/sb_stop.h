/*  sb_stop: SIGINT and SIGTERM, the services' request to stop, taken by
    the main thread alone.

    sb_stop_init, first thing in main and before any thread starts, blocks
    both signals; every thread started afterwards (civetweb's workers,
    ZeroMQ's I/O threads, the actors, the log thread) inherits the block,
    so a signal stays pending for the process until the main thread takes
    it with sb_stop_wait. No handler runs: nothing can set a flag on a
    thread nobody watches, and no signal can slip between a check and a
    wait (the lost wake-up of `while (!stop) pause ();`).
*/
#ifndef SB_STOP_H_INCLUDED
#define SB_STOP_H_INCLUDED

#include <stdbool.h>

//  Block SIGINT and SIGTERM in the calling thread (main, before any other
//  thread exists). 0, or -1 when the mask could not be set.
int sb_stop_init (void);

//  Wait up to timeout_ms (-1: until asked; 0: just look) for SIGINT or
//  SIGTERM. True once a stop was asked, now or before. Main thread only.
bool sb_stop_wait (int timeout_ms);

#endif
