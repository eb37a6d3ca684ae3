/*  sb_cmd: the subcommands of the `switchboard` command-line tool.

    Each subcommand is one file, cli/sb_cmd_<name>.c, with one entry point
    taking the arguments after the subcommand's name (argv[0] is the name
    itself). It parses its own flags, answers --help, and returns the exit
    status: 0 success, 1 the operation failed, 2 bad usage or configuration.
*/
#ifndef SB_CMD_H_INCLUDED
#define SB_CMD_H_INCLUDED

//  switchboard tap: print live events from ingress or dispatcher PUB sockets.
int sb_cmd_tap (int argc, char **argv);

//  switchboard send: build, sign and post a realistic provider webhook.
int sb_cmd_send (int argc, char **argv);

//  switchboard journal: print the records of an ingress journal directory.
int sb_cmd_journal (int argc, char **argv);

//  switchboard replay: ask an ingress (SB_REPLAY) to replay its journal.
int sb_cmd_replay (int argc, char **argv);

//  switchboard keygen: write a CURVE key pair (czmq certificates).
int sb_cmd_keygen (int argc, char **argv);

//  switchboard sandbox: run switchboard-sandbox (sandbox/), the fake
//  provider APIs, with these arguments. Returns only when it cannot be run.
int sb_cmd_sandbox (int argc, char **argv);

//  switchboard console: run switchboard-console (console/), the live web
//  console, with these arguments. Returns only when it cannot be run.
int sb_cmd_console (int argc, char **argv);

//  switchboard doctor: check the settings and what they reach, one line
//  per check (cli/sb_cmd_doctor.c).
int sb_cmd_doctor (int argc, char **argv);

//  switchboard connect: give a Twilio number or a Meta app this install's
//  webhook URLs through the provider's API (cli/sb_cmd_connect.c).
int sb_cmd_connect (int argc, char **argv);

#endif
