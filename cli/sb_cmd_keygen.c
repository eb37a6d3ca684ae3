/*  switchboard keygen: write a CURVE key pair for ZeroMQ across hosts.

    czmq's zcert makes the pair and saves it as czmq does: DIR/NAME.key
    holds the public key only (copy it to a server's SB_CURVE_ALLOWED
    directory, or give a server's to its clients as SB_CURVE_SERVER_PUBLIC)
    and DIR/NAME.key_secret holds both keys (SB_CURVE_SERVER_SECRET or
    SB_CURVE_CLIENT_CERT of this host), created mode 0600. The public key
    is printed on stdout, so a script can capture it.

    It never overwrites a key: an existing NAME.key or NAME.key_secret is
    an error. It reads no settings.
*/
#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_log.h"

#define S_CMD "keygen"
#define S_NAME_MAX 64
#define S_DIR_MAX 200  //  czmq keeps certificate paths in 256 bytes

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: switchboard keygen [--name NAME] DIR\n"
             "\n"
             "Write a CURVE key pair for ZeroMQ between hosts (czmq certificates):\n"
             "  DIR/NAME.key         the public key: copy it to the server's SB_CURVE_ALLOWED\n"
             "                       directory (a client's), or set it as the clients'\n"
             "                       SB_CURVE_SERVER_PUBLIC (a server's)\n"
             "  DIR/NAME.key_secret  both keys, mode 0600: this host's SB_CURVE_SERVER_SECRET\n"
             "                       or SB_CURVE_CLIENT_CERT; it never leaves this host\n"
             "and print the public key (40 characters, Z85) on stdout.\n"
             "\n"
             "  DIR          where to write (created if missing, mode 0700)\n"
             "  --name NAME  file name without extension: letters, digits, '.', '_', '-'\n"
             "               (default: the host name)\n"
             "  -h, --help   this help\n"
             "\n"
             "Existing files are never overwritten.\n"
             "Exit status: 0 written, 1 could not write, 2 bad flags.\n");
}

static bool
s_valid_name (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > S_NAME_MAX || name[0] == '.' || name[0] == '-')
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
              || *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

int
sb_cmd_keygen (int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char name[S_NAME_MAX + 1] = "";
    optind = 0;  //  full re-initialisation of GNU getopt
    opterr = 0;
    int c;
    while ((c = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
            case 'n':
                if (!s_valid_name (optarg))
                    return sb_cli_usage_error (S_CMD,
                                               "--name %.100s: expected 1 to %d letters, digits, "
                                               "'.', '_' or '-', not starting with '.' or '-'",
                                               optarg, S_NAME_MAX);
                snprintf (name, sizeof name, "%s", optarg);
                break;
            case 'h': s_usage (stdout); return SB_CLI_OK;
            default: return sb_cli_bad_flag (S_CMD, c, argv);
        }
    }
    if (argc - optind != 1)
        return sb_cli_usage_error (S_CMD, "expected one directory");
    const char *dir = argv[optind];
    if (!*name) {
        char host[256] = "";
        if (gethostname (host, sizeof host - 1) == 0 && s_valid_name (host)
            && strlen (host) < sizeof name)
            memcpy (name, host, strlen (host) + 1);
        else
            snprintf (name, sizeof name, "switchboard");
    }
    if (strlen (dir) > S_DIR_MAX)
        return sb_cli_usage_error (S_CMD, "the directory name is longer than %d characters",
                                   S_DIR_MAX);
    //  Room for DIR, '/', NAME, ".key_secret" and the NUL.
    char public_path[S_DIR_MAX + S_NAME_MAX + 16], secret_path[S_DIR_MAX + S_NAME_MAX + 16];
    snprintf (public_path, sizeof public_path, "%.*s/%.*s.key", S_DIR_MAX, dir, S_NAME_MAX, name);
    snprintf (secret_path, sizeof secret_path, "%.*s/%.*s.key_secret", S_DIR_MAX, dir, S_NAME_MAX,
              name);

    char ebuf[128];
    if (mkdir (dir, 0700) != 0 && errno != EEXIST) {
        fprintf (stderr, "switchboard keygen: cannot create %s: %s\n", dir,
                 sb_strerror (errno, ebuf, sizeof ebuf));
        return SB_CLI_FAILED;
    }
    const char *paths[] = {public_path, secret_path};
    for (size_t i = 0; i < 2; i++)
        if (access (paths[i], F_OK) == 0) {
            fprintf (stderr,
                     "switchboard keygen: %s exists: keys are never overwritten (choose another "
                     "--name)\n",
                     paths[i]);
            return SB_CLI_FAILED;
        }

    zsys_init ();
    zsys_set_logstream (stderr);
    int rc = SB_CLI_FAILED;
    zcert_t *cert = zcert_new ();
    if (!cert) {
        fprintf (stderr, "switchboard keygen: cannot make a key pair (libzmq without CURVE?)\n");
        goto done;
    }
    zcert_set_meta (cert, "name", "%s", name);
    zcert_set_meta (cert, "created-by", "switchboard keygen");
    //  The secret file is private from its creation on.
    mode_t old_mask = umask (077);
    int saved = zcert_save_secret (cert, secret_path);
    umask (old_mask);
    if (saved != 0 || chmod (secret_path, 0600) != 0) {
        fprintf (stderr, "switchboard keygen: cannot write %s: %s\n", secret_path,
                 sb_strerror (errno, ebuf, sizeof ebuf));
        unlink (secret_path);
        goto done;
    }
    if (zcert_save_public (cert, public_path) != 0) {
        fprintf (stderr, "switchboard keygen: cannot write %s: %s\n", public_path,
                 sb_strerror (errno, ebuf, sizeof ebuf));
        unlink (secret_path);
        unlink (public_path);
        goto done;
    }
    printf ("%s\n", zcert_public_txt (cert));
    fflush (stdout);
    fprintf (stderr,
             "switchboard keygen: wrote %s (public: a server's SB_CURVE_ALLOWED directory, or its "
             "clients' SB_CURVE_SERVER_PUBLIC)\n"
             "switchboard keygen: wrote %s (secret, mode 0600: SB_CURVE_SERVER_SECRET or "
             "SB_CURVE_CLIENT_CERT on this host only)\n",
             public_path, secret_path);
    rc = SB_CLI_OK;
done:
    zcert_destroy (&cert);
    zsys_shutdown ();
    return rc;
}
