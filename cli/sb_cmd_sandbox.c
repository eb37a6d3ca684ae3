/*  switchboard sandbox: run the provider sandbox, switchboard-sandbox (the
    fake Twilio and Meta APIs live in sandbox/, a binary of their own, so
    the shipped tool carries no fake provider).

    The binary is looked for next to this executable (/proc/self/exe: where
    `cmake --install` and the image put both), then on PATH; it replaces
    this process with the same arguments, so its output, signals and exit
    status are the sandbox's own. When it is in neither place, the error
    names both.
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_log.h"

#define S_BINARY "switchboard-sandbox"

int
sb_cmd_sandbox (int argc, char **argv)
{
    (void) argc;
    char ebuf[128];
    char self[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    char beside[PATH_MAX + sizeof S_BINARY] = "";
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr (self, '/');
        if (slash) {
            slash[1] = 0;
            snprintf (beside, sizeof beside, "%s%s", self, S_BINARY);
            argv[0] = beside;
            execv (beside, argv);
        }
    }
    char name[] = S_BINARY;
    argv[0] = name;
    execvp (name, argv);
    int error = errno;
    fprintf (stderr,
             "switchboard sandbox: cannot run %s: looked for %s and on PATH (%s): %s\n"
             "Build it (target switchboard-sandbox) or install it next to switchboard.\n",
             S_BINARY, *beside ? beside : "it next to switchboard", S_BINARY,
             sb_strerror (error, ebuf, sizeof ebuf));
    return SB_CLI_FAILED;
}
