/*  sb_config: every setting of every switchboard binary, read once at start
    from the environment (NAME, or NAME_FILE naming a file that holds the
    value, for secrets), checked, and then immutable.

    The table in sb_config_table.h is the one list of settings: each binary's
    --help and the README's configuration table (`switchboard-ingress
    --help-markdown`) come from it.
*/
#ifndef SB_CONFIG_H_INCLUDED
#define SB_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

//  Which binary reads a setting (a bit mask).
#define SB_SVC_INGRESS 1u
#define SB_SVC_DISPATCHER 2u
#define SB_SVC_CLI 4u
#define SB_SVC_SANDBOX 8u
#define SB_SVC_CONSOLE 16u

typedef struct sb_config_t sb_config_t;

//  A setting: SB_CFG_ and the variable's name (SB_CFG_SB_LISTEN,
//  SB_CFG_DATABASE_URL), so a misspelt name does not compile.
typedef enum {
#define SB_SETTING(name, ...) SB_CFG_##name,
#include "sb_config_table.h"
#undef SB_SETTING
    SB_CFG_COUNT
} sb_setting_t;

//  Read and check the settings of the given services from the environment.
//  On a bad value returns NULL and writes one line naming the variable and
//  what was expected into err. Caller owns the return value.
sb_config_t *sb_config_load (unsigned services, char *err, size_t err_size);

//  Like sb_config_load, but takes values from a NULL-terminated array of
//  "NAME=value" strings instead of the environment (for tests).
sb_config_t *sb_config_load_from (unsigned services, char *const *env, char *err, size_t err_size);

void sb_config_destroy (sb_config_t **self_p);

//  The value of a setting, borrowed from the config; "" when unset and
//  without a default.
const char *sb_config_str (const sb_config_t *self, sb_setting_t setting);
//  True when the setting was given (or has a non-empty default).
bool sb_config_has (const sb_config_t *self, sb_setting_t setting);
//  A copy of the value when the setting was given (sb_config_has), else
//  NULL (also when out of memory). Caller owns the return value.
char *sb_config_dup (const sb_config_t *self, sb_setting_t setting);
//  Integers, sizes (bytes) and durations (seconds).
int64_t sb_config_int (const sb_config_t *self, sb_setting_t setting);
bool sb_config_bool (const sb_config_t *self, sb_setting_t setting);
//  The setting's variable name, "SB_LISTEN" (static), for messages.
const char *sb_config_name (sb_setting_t setting);

//  Print the settings of these services, with defaults and help, as --help does.
void sb_config_print_help (unsigned services, FILE *out);
//  Print the settings as a Markdown table (for README.md).
void sb_config_print_markdown (FILE *out);

#endif
