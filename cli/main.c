/*  switchboard: the command-line tool. Dispatches to one subcommand.

        switchboard tap       print live events from an ingress or dispatcher
        switchboard send      post a realistic, correctly signed webhook
        switchboard journal   print the records of an ingress journal
        switchboard replay    ask an ingress to replay its journal from a seq
        switchboard keygen    write a CURVE key pair for ZeroMQ between hosts
        switchboard sandbox   fake Twilio and Meta APIs (runs switchboard-sandbox)
        switchboard console   the live web console (runs switchboard-console)
        switchboard doctor    check the settings and what they reach, before going live
        switchboard connect   give a Twilio number or a Meta app the ingress's webhook URLs

    main only picks the subcommand; each parses its own flags, loads the
    settings it needs and returns the exit status (0 ok, 1 failed, 2 usage).
*/
#include <stdio.h>
#include <string.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_config.h"


typedef int (s_cmd_fn) (int argc, char **argv);

typedef struct {
    const char *name;  //  as typed after "switchboard"
    s_cmd_fn *fn;      //  entry point
    const char *help;  //  one line for the overview
} s_cmd_t;

static void
s_print_help (FILE *out, const s_cmd_t *cmds, size_t count)
{
    fprintf (out, "Usage: switchboard COMMAND [FLAGS]...\n"
                  "\n"
                  "Command-line companion of switchboard-ingress and switchboard-dispatcher.\n"
                  "\n"
                  "Commands:\n");
    for (size_t i = 0; i < count; i++)
        fprintf (out, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    fprintf (out,
             "  %-10s print the version\n"
             "  %-10s describe a command (same as COMMAND --help)\n"
             "\n"
             "Run 'switchboard COMMAND --help' for the flags of each command.\n"
             "Exit status: 0 success, 1 the operation failed, 2 bad flags or settings.\n"
             "\n",
             "version", "help");
    sb_config_print_help (SB_SVC_CLI, out);
}

int
main (int argc, char **argv)
{
    const s_cmd_t cmds[] = {
        {"tap", sb_cmd_tap, "print live events from ingress or dispatcher PUB sockets"},
        {"send", sb_cmd_send, "post a realistic, correctly signed Twilio or Meta webhook"},
        {"journal", sb_cmd_journal, "print the records of an ingress journal directory"},
        {"replay", sb_cmd_replay, "ask an ingress to replay its journal from a sequence number"},
        {"keygen", sb_cmd_keygen, "write a CURVE key pair for ZeroMQ between hosts"},
        {"sandbox", sb_cmd_sandbox, "fake Twilio and Meta APIs for local tests"},
        {"console", sb_cmd_console, "the live web console: conversations, statuses, dead letters"},
        {"doctor", sb_cmd_doctor, "check settings, secrets, URLs, PostgreSQL and services"},
        {"connect", sb_cmd_connect,
         "give a Twilio number or a Meta app the ingress's webhook URLs"},
    };
    const size_t count = sizeof cmds / sizeof cmds[0];

    if (argc < 2) {
        s_print_help (stderr, cmds, count);
        return SB_CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp (name, "--help") == 0 || strcmp (name, "-h") == 0) {
        s_print_help (stdout, cmds, count);
        return SB_CLI_OK;
    }
    if (strcmp (name, "--version") == 0 || strcmp (name, "version") == 0) {
        printf ("switchboard %s\n", SB_VERSION);
        return SB_CLI_OK;
    }
    //  "switchboard help CMD" is "switchboard CMD --help".
    char help_flag[] = "--help";
    char *help_argv[3] = {NULL, help_flag, NULL};
    int cmd_argc = argc - 1;
    char **cmd_argv = argv + 1;
    if (strcmp (name, "help") == 0) {
        if (argc < 3) {
            s_print_help (stdout, cmds, count);
            return SB_CLI_OK;
        }
        name = argv[2];
        help_argv[0] = argv[2];
        cmd_argc = 2;
        cmd_argv = help_argv;
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp (name, cmds[i].name) != 0)
            continue;
        return cmds[i].fn (cmd_argc, cmd_argv);
    }
    fprintf (stderr, "switchboard: unknown command '%s'\nTry 'switchboard --help'.\n", name);
    return SB_CLI_USAGE;
}
