/*  replay_main: runs a fuzz target over its corpus without libFuzzer.

    Usage: fuzz_<name> PATH...  Each PATH is a corpus directory (every
    regular file in it, in name order, hidden files skipped) or one file.
    Each input is handed to LLVMFuzzerTestOneInput in a buffer of exactly
    its size, so a sanitizer build catches a read past its end. Silent on
    success; exits non-zero when a path cannot be read or a directory is
    empty. When an input crashes the target (failed invariant, sanitizer
    report, signal), the name of that input is printed before the process
    dies, so the failing corpus file is named in the test's output.
*/
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_fuzz.h"

//  Sanitizer runtimes call this back before they exit on a finding; weak so
//  that a build without sanitizers links too.
void __sanitizer_set_death_callback (void (*callback) (void)) __attribute__ ((weak));

static const char *s_current;  //  path of the input being run, for crash reports

static void
s_say_current (void)
{
    if (!s_current)
        return;
    //  write(2) only: this runs from a signal handler too
    static const char prefix[] = "replay: crashed on input ";
    if (write (STDERR_FILENO, prefix, sizeof prefix - 1) < 0
        || write (STDERR_FILENO, s_current, strlen (s_current)) < 0
        || write (STDERR_FILENO, "\n", 1) < 0)
        return;
}

static void
s_on_signal (int signum)
{
    s_say_current ();
    signal (signum, SIG_DFL);
    raise (signum);
}

//  Runs the target over one file. 0, or -1 when it cannot be read.
static int
s_run_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        fprintf (stderr, "replay: cannot open %s (errno %d)\n", path, errno);
        return -1;
    }
    size_t capacity = 4096, size = 0;
    uint8_t *data = malloc (capacity);
    while (data) {
        size += fread (data + size, 1, capacity - size, file);
        if (size < capacity)
            break;
        uint8_t *bigger = realloc (data, capacity * 2);
        if (!bigger) {
            free (data);
            data = NULL;
            break;
        }
        data = bigger;
        capacity *= 2;
    }
    int failed = ferror (file);
    fclose (file);
    if (!data || failed) {
        fprintf (stderr, "replay: cannot read %s\n", path);
        free (data);
        return -1;
    }
    //  Exactly size bytes, so that ASan sees a read past the end
    uint8_t *input = malloc (size ? size : 1);
    if (!input) {
        free (data);
        return -1;
    }
    memcpy (input, data, size);
    free (data);
    s_current = path;
    LLVMFuzzerTestOneInput (input, size);
    s_current = NULL;
    free (input);
    return 0;
}

static int
s_skip (const struct dirent *entry)
{
    return entry->d_name[0] != '.';
}

//  Runs the target over every regular file of dir. Returns how many ran,
//  or -1 when dir cannot be listed or a file cannot be read.
static int
s_run_dir (const char *dir)
{
    struct dirent **entries;
    int count = scandir (dir, &entries, s_skip, alphasort);
    if (count < 0) {
        fprintf (stderr, "replay: cannot list %s (errno %d)\n", dir, errno);
        return -1;
    }
    int ran = 0;
    for (int i = 0; i < count; i++) {
        char path[4096];
        int n = snprintf (path, sizeof path, "%s/%s", dir, entries[i]->d_name);
        struct stat st;
        if (n > 0 && (size_t) n < sizeof path && stat (path, &st) == 0 && S_ISREG (st.st_mode)) {
            if (s_run_file (path) != 0)
                ran = -1;
            else if (ran >= 0)
                ran++;
        }
        free (entries[i]);
    }
    free (entries);
    return ran;
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    LLVMFuzzerInitialize (&argc, &argv);
    signal (SIGABRT, s_on_signal);
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback (s_say_current);
    else {
        //  Without a sanitizer; with one, its own handlers print the stack
        signal (SIGSEGV, s_on_signal);
        signal (SIGBUS, s_on_signal);
        signal (SIGFPE, s_on_signal);
        signal (SIGILL, s_on_signal);
    }

    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat (argv[i], &st) != 0) {
            fprintf (stderr, "replay: no such corpus %s\n", argv[i]);
            rc = 1;
        }
        else if (S_ISDIR (st.st_mode)) {
            int ran = s_run_dir (argv[i]);
            if (ran <= 0) {
                fprintf (stderr, "replay: %s: %s\n", argv[i],
                         ran == 0 ? "no inputs" : "unreadable inputs");
                rc = 1;
            }
        }
        else if (s_run_file (argv[i]) != 0)
            rc = 1;
    }
    return rc;
}
