/*  switchboard sandbox: run the provider sandbox, switchboard-sandbox (the
    fake Twilio and Meta APIs live in sandbox/, a binary of their own, so
    the shipped tool carries no fake provider).

    The binary is looked for next to this executable, then on PATH
    (sb_cli_exec); it replaces this process with the same arguments, so its
    output, signals and exit status are the sandbox's own. When it is in
    neither place, the error names both.
*/
#include "sb_cli.h"
#include "sb_cmd.h"

int
sb_cmd_sandbox (int argc, char **argv)
{
    (void) argc;
    return sb_cli_exec ("sandbox", "switchboard-sandbox", argv);
}
