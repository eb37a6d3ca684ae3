/*  switchboard journal: print the records of an ingress journal directory.

    Reads the journal with sb_journal_reader, as the replay server does, so
    it shows exactly what a replay would send: one line per record, in
    sequence order, either human (seq, size, topic and the event's main
    fields) or one JSON object (sb_event_to_json with "topic" and "seq").
    It only reads: it is safe to run next to a live ingress, and then shows
    what was committed when each segment was read.

    A directory without the journal's EPOCH file is refused, so a typo does
    not quietly print nothing.
*/
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_event.h"
#include "sb_journal.h"
#include "sb_log.h"

#define S_CMD "journal"

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: switchboard journal [--from SEQ] [--json] [DIR]\n"
             "\n"
             "Print every record of an ingress journal, in sequence order.\n"
             "\n"
             "  DIR          the journal directory (default: SB_JOURNAL_DIR, var/journal)\n"
             "  --from SEQ   start at sequence number SEQ (default 1)\n"
             "  --json       one JSON object per line: the event with \"topic\" and \"seq\"\n"
             "  -h, --help   this help\n"
             "\n"
             "Human lines look like:\n"
             "  seq=3 size=912 twilio.sms.message sid=SM... from=+14155550100 text=\"hello\"\n"
             "Records that are not Events are reported on stderr (and shown as\n"
             "\"seq=N size=B (not an Event)\" in the human form).\n"
             "Exit status: 0 done, 1 DIR is not a readable journal, 2 bad flags or settings.\n");
}

//  Options as parsed from the command line.
typedef struct {
    bool json;        //  --json
    uint64_t from;    //  --from, first sequence number
    const char *dir;  //  DIR, or NULL for SB_JOURNAL_DIR (borrowed)
} s_opts_t;

static int
s_parse (int argc, char **argv, s_opts_t *opts)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"from", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset (opts, 0, sizeof *opts);
    opts->from = 1;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
            case 'j': opts->json = true; break;
            case 'f':
                if (sb_cli_parse_u64 (optarg, 1, UINT64_MAX, &opts->from))
                    return sb_cli_usage_error (S_CMD, "--from %s: expected a sequence number >= 1",
                                               optarg);
                break;
            case 'h': s_usage (stdout); return -1;
            default: return sb_cli_bad_flag (S_CMD, c, argv);
        }
    }
    if (argc - optind > 1)
        return sb_cli_usage_error (S_CMD, "expected one journal directory, got %d arguments",
                                   argc - optind);
    if (argc - optind == 1)
        opts->dir = argv[optind];
    return SB_CLI_OK;
}

//  0 when dir looks like a journal, else -1 after saying why.
static int
s_check_dir (const char *dir)
{
    struct stat st;
    char ebuf[128];
    if (stat (dir, &st)) {
        fprintf (stderr, "switchboard journal: %s: %s\n", dir,
                 sb_strerror (errno, ebuf, sizeof ebuf));
        return -1;
    }
    if (!S_ISDIR (st.st_mode)) {
        fprintf (stderr, "switchboard journal: %s is not a directory\n", dir);
        return -1;
    }
    char epoch[4096];
    if ((size_t) snprintf (epoch, sizeof epoch, "%s/EPOCH", dir) >= sizeof epoch) {
        fprintf (stderr, "switchboard journal: %s: path too long\n", dir);
        return -1;
    }
    if (stat (epoch, &st) || !S_ISREG (st.st_mode)) {
        fprintf (stderr, "switchboard journal: %s is not a switchboard journal (no EPOCH file)\n",
                 dir);
        return -1;
    }
    return 0;
}

//  Print one record; 0, or -1 when it is not an event.
static int
s_print (const s_opts_t *opts, uint64_t seq, const uint8_t *data, size_t size)
{
    sb_event_t *event = sb_event_decode (data, size);
    if (!event) {
        sb_warn ("journal", "record is not an Event seq=%llu size=%zu", (unsigned long long) seq,
                 size);
        if (!opts->json)
            printf ("seq=%llu size=%zu (not an Event)\n", (unsigned long long) seq, size);
        return -1;
    }
    if (event->seq == 0)
        event->seq = seq;  //  a record written before stamping: say where it is
    else if (event->seq != seq)
        sb_warn ("journal", "record holds another sequence number seq=%llu event_seq=%llu",
                 (unsigned long long) seq, (unsigned long long) event->seq);
    char topic[256];
    if (sb_event_topic (event, topic, sizeof topic) < 0)
        snprintf (topic, sizeof topic, "sb.v1.unknown");
    int rc = 0;
    if (opts->json) {
        if (sb_cli_print_json (stdout, event, topic)) {
            sb_warn ("journal", "cannot render record as JSON seq=%llu", (unsigned long long) seq);
            rc = -1;
        }
    }
    else {
        printf ("seq=%llu size=%zu %s", (unsigned long long) seq, size, sb_cli_short_topic (topic));
        sb_cli_print_summary (stdout, event);
        fputc ('\n', stdout);
    }
    sb_event_destroy (&event);
    return rc;
}

int
sb_cmd_journal (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, &opts);
    if (rc != SB_CLI_OK)
        return rc < 0 ? SB_CLI_OK : rc;
    sb_config_t *config = sb_cli_setup (S_CMD);
    if (!config)
        return SB_CLI_USAGE;
    const char *dir = opts.dir ? opts.dir : sb_config_str (config, SB_CFG_SB_JOURNAL_DIR);
    sb_journal_reader_t *reader = NULL;
    rc = SB_CLI_FAILED;
    if (s_check_dir (dir))
        goto done;
    reader = sb_journal_reader_new (dir, opts.from);
    if (!reader) {
        fprintf (stderr, "switchboard journal: cannot read the journal in %s\n", dir);
        goto done;
    }
    for (;;) {
        uint64_t seq;
        const uint8_t *data;
        size_t size;
        int got = sb_journal_reader_next (reader, &seq, &data, &size);
        if (got == 0)
            break;
        if (got < 0) {
            fflush (stdout);
            fprintf (stderr, "switchboard journal: a segment of %s is unreadable\n", dir);
            goto done;
        }
        s_print (&opts, seq, data, size);
    }
    rc = SB_CLI_OK;
done:
    fflush (stdout);
    sb_journal_reader_destroy (&reader);
    sb_config_destroy (&config);
    return rc;
}
