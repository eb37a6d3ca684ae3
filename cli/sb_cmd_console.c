/*  switchboard console: run the live web console, switchboard-console
    (console/: a subscriber with a page, a binary of its own because it
    serves HTTP with civetweb and reads PostgreSQL).

    Found and run as `switchboard sandbox` runs its binary (sb_cli_exec):
    next to this executable, then on PATH, with the same arguments; its
    output, signals and exit status are the console's own.
*/
#include "sb_cli.h"
#include "sb_cmd.h"

int
sb_cmd_console (int argc, char **argv)
{
    (void) argc;
    return sb_cli_exec ("console", "switchboard-console", argv);
}
