/*  sb_fuzz: what the libFuzzer targets under tests/fuzz/ share.

    Each fuzz_<name>.c defines LLVMFuzzerInitialize (logging off) and
    LLVMFuzzerTestOneInput. Built with -DSB_FUZZ=ON (clang) they link
    libFuzzer; otherwise replay_main.c runs them over the committed corpus,
    so the corpus is an ordinary test wherever clang is absent.

    A target asserts invariants with SB_FUZZ_CHECK: a failed one prints
    file:line and the condition and aborts, which libFuzzer reports as a
    crash and the replay as a failed test, like a sanitizer finding.
*/
#ifndef SB_FUZZ_H_INCLUDED
#define SB_FUZZ_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sb_event.h"

//  The libFuzzer entry points (declared here for -Wmissing-prototypes).
int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define SB_FUZZ_CHECK(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf (stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort ();                                                                              \
        }                                                                                          \
    } while (0)

//  Logging off, once, for every target's LLVMFuzzerInitialize.
void sb_fuzz_quiet (void);

//  The checks every event must pass, whoever made it: it encodes, decodes
//  back to the same JSON (compared as JSON values), encodes again to the
//  same bytes, has a topic, and its JSON parses as an object.
void sb_fuzz_event_check (const sb_event_t *event);

#endif
