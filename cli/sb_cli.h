/*  sb_cli: what the subcommands of `switchboard` share: start-up (settings
    and logging), flag errors, number parsing, the stop signal flag, and
    printing an event as one human line or one JSON line.

    Exit statuses of every subcommand: SB_CLI_OK, SB_CLI_FAILED when the
    operation did not succeed, SB_CLI_USAGE for bad flags or settings.
*/
#ifndef SB_CLI_H_INCLUDED
#define SB_CLI_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sb_config.h"
#include "sb_event.h"

#define SB_CLI_OK 0
#define SB_CLI_FAILED 1
#define SB_CLI_USAGE 2

//  Load the CLI's settings from the environment and start logging (service
//  "switchboard", level SB_LOG_LEVEL). On a bad setting prints
//  "switchboard CMD: <why>" to stderr and returns NULL (exit SB_CLI_USAGE).
//  Caller owns the return value.
sb_config_t *sb_cli_setup (const char *cmd);

//  Replace this process with binary (switchboard-sandbox, switchboard-
//  console) and argv (argv[0] is overwritten): the one next to this
//  executable (/proc/self/exe: where `cmake --install` and the image put
//  both), else the one on PATH. Its output, signals and exit status are
//  then its own. Returns SB_CLI_FAILED, after saying where it looked, only
//  when it is in neither place; cmd names the subcommand in the message.
int sb_cli_exec (const char *cmd, const char *binary, char **argv);

//  Print "switchboard CMD: <message>" and a hint to run --help on stderr.
//  Returns SB_CLI_USAGE.
int sb_cli_usage_error (const char *cmd, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Report what getopt_long returned for a bad flag (':' missing value, '?'
//  unknown flag), reading optind/optopt. Returns SB_CLI_USAGE.
int sb_cli_bad_flag (const char *cmd, int c, char **argv);

//  Catch SIGINT and SIGTERM: from now on they only set the flag that
//  sb_cli_interrupted reads. Without SA_RESTART, so a blocked poll or wait
//  returns EINTR and the loop looks at the flag at once. Call it after
//  zsys_init, whose own handlers it replaces.
void sb_cli_catch_signals (void);

//  True once SIGINT or SIGTERM arrived after sb_cli_catch_signals.
bool sb_cli_interrupted (void);

//  Parse a whole decimal integer within [min, max]. 0, or -1 when text is
//  not one (empty, trailing characters, sign where min is 0, out of range).
int sb_cli_parse_u64 (const char *text, uint64_t min, uint64_t max, uint64_t *out);

//  Parse seconds: a non-negative decimal number, fractions allowed, at most
//  max. 0 or -1.
int sb_cli_parse_seconds (const char *text, double max, double *out);

//  Write text between double quotes, escaping '"', '\\' and control bytes
//  (\n, \r, \t, \xNN), so one event stays on one line. NULL prints "".
void sb_cli_print_quoted (FILE *out, const char *text);

//  The topic without its "sb.v1." prefix (borrowed from topic).
const char *sb_cli_short_topic (const char *topic);

//  Print the interesting fields of an event as " key=value" pairs (leading
//  space included, no newline): id, addresses, text, media, status, ...
void sb_cli_print_summary (FILE *out, const sb_event_t *event);

//  Print the event as one line of JSON (sb_event_to_json) with "topic"
//  first when topic is not NULL, then a newline. 0, or -1 when the event
//  could not be rendered.
int sb_cli_print_json (FILE *out, const sb_event_t *event, const char *topic);

#endif
