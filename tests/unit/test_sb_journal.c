/*  test_sb_journal: the journal's contract, from use to damage.

    Usage first (append, commit, read back, reopen), then rotation and
    readers, then what the disk can do to it: torn tails, flipped bytes,
    a full disk (RLIMIT_FSIZE makes writes fail with EFBIG), garbage files,
    and random damage to a valid journal; retention; cut tails: a seq the
    cut bytes could have held is never given out again; and last, syncs
    that fail with EIO (this program's own fdatasync and fsync stand in for
    libc's, see s_sync_fault): the failed segment is never written again.
    Log lines go to a file so the test can check them; silent on success.
*/
#include "sb_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sb_log.h"

static int s_out = 2;             //  the real stderr, for failures
static char s_root[PATH_MAX];     //  the test's temporary folder
static char s_logpath[PATH_MAX];  //  where sb_log lines go

static void
s_dump_log (void)
{
    FILE *file = fopen (s_logpath, "r");
    if (!file)
        return;
    char line[4096];
    dprintf (s_out, "---- log ----\n");
    while (fgets (line, sizeof line, file))
        dprintf (s_out, "%s", line);
    fclose (file);
}

#define SB_CHECK_PRINT(...) dprintf (s_out, __VA_ARGS__)
#define SB_CHECK_FAILED()                                                                          \
    do {                                                                                           \
        s_dump_log ();                                                                             \
        dprintf (s_out, "test files left in %s\n", s_root);                                        \
        exit (1);                                                                                  \
    } while (0)
#include "sb_check.h"

// ---------------------------------------------------------------------------
//  Helpers

//  A path, checked for length.
static void s_pathf (char *path, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_pathf (char *path, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (path, PATH_MAX, fmt, args);
    va_end (args);
    CHECK (n > 0 && n < PATH_MAX);
}

static void
s_log_clear (void)
{
    CHECK (truncate (s_logpath, 0) == 0);
}

static bool
s_log_has (const char *text)
{
    FILE *file = fopen (s_logpath, "r");
    if (!file)
        return false;
    static char buf[1 << 20];
    size_t n = fread (buf, 1, sizeof buf - 1, file);
    fclose (file);
    buf[n] = '\0';
    return strstr (buf, text) != NULL;
}

//  A fresh journal directory under the test's folder (not created).
static void
s_dir (char *path, const char *name)
{
    s_pathf (path, "%s/%s", s_root, name);
}

static void
s_segment_path (char *path, const char *dir, uint64_t first)
{
    s_pathf (path, "%s/%020" PRIu64 ".sbj", dir, first);
}

static long long
s_file_size (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 ? (long long) st.st_size : -1;
}

static uint8_t *
s_file_read (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    CHECK (file);
    CHECK (fseek (file, 0, SEEK_END) == 0);
    long len = ftell (file);
    CHECK (len >= 0);
    rewind (file);
    uint8_t *data = malloc ((size_t) len + 1);
    CHECK (data);
    CHECK (fread (data, 1, (size_t) len, file) == (size_t) len);
    fclose (file);
    *size = (size_t) len;
    return data;
}

static void
s_file_write (const char *path, const uint8_t *data, size_t size)
{
    FILE *file = fopen (path, "wb");
    CHECK (file);
    CHECK (fwrite (data, 1, size, file) == size);
    CHECK (fclose (file) == 0);
}

static void
s_file_append (const char *path, const uint8_t *data, size_t size)
{
    FILE *file = fopen (path, "ab");
    CHECK (file);
    CHECK (fwrite (data, 1, size, file) == size);
    CHECK (fclose (file) == 0);
}

static size_t
s_count_segments (const char *dir)
{
    char path[PATH_MAX];
    size_t count = 0;
    //  Names are dense enough in these tests to probe them all.
    for (uint64_t seq = 1; seq <= 5000; seq++) {
        s_segment_path (path, dir, seq);
        if (access (path, F_OK) == 0)
            count++;
    }
    return count;
}

static int
s_rm_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove (path);
}

static void
s_rm_rf (const char *path)
{
    nftw (path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

//  The payload of record seq, generation gen: size and bytes both depend on
//  them, so a record read back proves which one it is.
static size_t
s_payload (uint64_t seq, unsigned gen, uint8_t *buf)
{
    size_t size = (size_t) ((seq * 7919 + gen * 31) % 300);
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t) (seq * 13 + i + gen * 101);
    return size;
}

static void
s_append (sb_journal_t *journal, uint64_t expect_seq, unsigned gen)
{
    uint8_t buf[300];
    size_t size = s_payload (expect_seq, gen, buf);
    uint64_t seq = 0;
    CHECK_EQ (sb_journal_append (journal, buf, size, &seq), SB_JOURNAL_STORED);
    CHECK_EQ (seq, expect_seq);
}

//  Appends records first..last (generation gen) and commits.
static void
s_fill (sb_journal_t *journal, uint64_t first, uint64_t last, unsigned gen)
{
    CHECK_EQ (sb_journal_next_seq (journal), first);
    for (uint64_t seq = first; seq <= last; seq++)
        s_append (journal, seq, gen);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);
    CHECK_EQ (sb_journal_next_seq (journal), last + 1);
}

//  Reads dir from from_seq to the end; each record must be the genuine one
//  of generation gen (or gen2 from seq switch_seq on). Returns how many,
//  with their seqs in seqs (capacity max).
static size_t
s_read_all (const char *dir, uint64_t from_seq, uint64_t *seqs, size_t max, unsigned gen,
            uint64_t switch_seq, unsigned gen2)
{
    sb_journal_reader_t *reader = sb_journal_reader_new (dir, from_seq);
    CHECK (reader);
    size_t count = 0;
    uint64_t seq, previous = 0;
    const uint8_t *data;
    size_t size;
    int rc;
    while ((rc = sb_journal_reader_next (reader, &seq, &data, &size)) == 1) {
        uint8_t expect[300];
        size_t expect_size = s_payload (seq, seq >= switch_seq ? gen2 : gen, expect);
        CHECK_EQ (size, expect_size);
        CHECK (size == 0 || memcmp (data, expect, size) == 0);
        CHECK (seq > previous);
        CHECK (seq >= from_seq);
        previous = seq;
        CHECK (count < max);
        seqs[count++] = seq;
    }
    CHECK_EQ (rc, 0);
    //  The end stays the end.
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 0);
    sb_journal_reader_destroy (&reader);
    CHECK (reader == NULL);
    return count;
}

//  dir holds exactly records first..last, in order.
static void
s_check_range (const char *dir, uint64_t from_seq, uint64_t first, uint64_t last)
{
    static uint64_t seqs[100000];
    size_t count = s_read_all (dir, from_seq, seqs, 100000, 0, UINT64_MAX, 0);
    CHECK_EQ (count, last + 1 - first);
    for (size_t i = 0; i < count; i++)
        CHECK_EQ (seqs[i], first + i);
}

//  Offset of record seq in a segment whose records start at first (gen 0).
static size_t
s_record_offset (uint64_t first, uint64_t seq)
{
    uint8_t buf[300];
    size_t offset = 52;
    for (uint64_t s = first; s < seq; s++)
        offset += 16 + s_payload (s, 0, buf);
    return offset;
}

// ---------------------------------------------------------------------------
//  Tests

static void
s_test_basic (void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "basic/nested/journal");  //  parents are created
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK (s_log_has ("journal created"));
    CHECK (sb_journal_healthy (journal));
    CHECK_EQ (sb_journal_next_seq (journal), 1);
    CHECK_EQ (sb_journal_segments (journal), 1);
    CHECK_EQ (sb_journal_size (journal), 52);

    //  The epoch: 32 lower-case hex digits, also in DIR/EPOCH.
    char epoch[33];
    const char *text = sb_journal_epoch (journal);
    CHECK_EQ (strlen (text), 32);
    CHECK (strspn (text, "0123456789abcdef") == 32);
    memcpy (epoch, text, 33);
    s_pathf (path, "%s/EPOCH", dir);
    size_t size;
    uint8_t *content = s_file_read (path, &size);
    CHECK_EQ (size, 33);
    CHECK (memcmp (content, epoch, 32) == 0 && content[32] == '\n');
    free (content);

    //  Empty payloads are records too; NULL data is fine with size 0.
    uint64_t seq = 0;
    CHECK_EQ (sb_journal_append (journal, NULL, 0, &seq), SB_JOURNAL_STORED);
    CHECK_EQ (seq, 1);
    CHECK_EQ (sb_journal_next_seq (journal), 2);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);

    //  Group commit: many appends, one commit. Nothing is on disk before it.
    uint64_t total = 52 + 16;
    uint8_t buf[300];
    s_segment_path (path, dir, 1);
    for (uint64_t s = 2; s <= 100; s++) {
        s_append (journal, s, 0);
        total += 16 + s_payload (s, 0, buf);
    }
    CHECK_EQ (s_file_size (path), 52 + 16);
    CHECK_EQ (sb_journal_size (journal), 52 + 16);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);
    CHECK_EQ (s_file_size (path), total);
    CHECK_EQ (sb_journal_size (journal), total);
    CHECK_EQ (sb_journal_next_seq (journal), 101);
    //  A commit with nothing new is a no-op.
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);

    //  Record 1 is empty; s_payload (1, 0) is not, so read 2.. with the helper.
    sb_journal_reader_t *reader = sb_journal_reader_new (dir, 0);
    CHECK (reader);
    const uint8_t *data;
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 1);
    CHECK_EQ (seq, 1);
    CHECK_EQ (size, 0);
    sb_journal_reader_destroy (&reader);
    s_check_range (dir, 2, 2, 100);
    s_check_range (dir, 50, 50, 100);
    s_check_range (dir, 101, 1, 0);  //  nothing from the end on

    //  One writer per directory.
    s_log_clear ();
    sb_journal_t *second = sb_journal_open (dir, 1 << 20);
    CHECK (second == NULL);
    CHECK (s_log_has ("in use by another writer"));

    //  Appends not committed are not kept.
    s_append (journal, 101, 0);
    s_append (journal, 102, 0);
    sb_journal_destroy (&journal);
    CHECK (journal == NULL);
    sb_journal_destroy (&journal);  //  a NULL journal is fine

    //  Reopen: same epoch, the sequence resumes, nothing truncated.
    s_log_clear ();
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK_EQ (strcmp (sb_journal_epoch (journal), epoch), 0);
    CHECK_EQ (sb_journal_next_seq (journal), 101);
    CHECK_EQ (sb_journal_size (journal), total);
    CHECK (!s_log_has ("truncated"));
    s_fill (journal, 101, 120, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir, 2, 2, 120);

    //  A missing or damaged EPOCH is restored from the segments' headers.
    s_pathf (path, "%s/EPOCH", dir);
    CHECK (unlink (path) == 0);
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK_EQ (strcmp (sb_journal_epoch (journal), epoch), 0);
    CHECK (s_log_has ("EPOCH restored"));
    sb_journal_destroy (&journal);
    s_file_write (path, (const uint8_t *) "not an epoch\n", 13);
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK_EQ (strcmp (sb_journal_epoch (journal), epoch), 0);
    sb_journal_destroy (&journal);
    content = s_file_read (path, &size);
    CHECK (size == 33 && memcmp (content, epoch, 32) == 0);
    free (content);

    //  An EPOCH that the segments do not carry: refused.
    s_file_write (path, (const uint8_t *) "0123456789abcdef0123456789abcdef\n", 33);
    s_log_clear ();
    CHECK (sb_journal_open (dir, 1 << 20) == NULL);
    CHECK (s_log_has ("another epoch"));
}

static void
s_test_new_epoch (void)
{
    //  An EPOCH without segments (all removed): the sequence restarts at 1,
    //  so the journal gets a new epoch.
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "epoch");
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    char epoch[33];
    memcpy (epoch, sb_journal_epoch (journal), 33);
    s_fill (journal, 1, 5, 0);
    sb_journal_destroy (&journal);
    s_segment_path (path, dir, 1);
    CHECK (unlink (path) == 0);
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK (strcmp (sb_journal_epoch (journal), epoch) != 0);
    CHECK_EQ (sb_journal_next_seq (journal), 1);
    sb_journal_destroy (&journal);
}

static void
s_test_rotation (void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "rotation");
    sb_journal_t *journal = sb_journal_open (dir, 1024);
    CHECK (journal);
    //  Commits of 10 records: a segment rotates once it has >= 1024 bytes.
    for (uint64_t s = 1; s <= 300; s += 10)
        s_fill (journal, s, s + 9, 0);
    size_t segments = sb_journal_segments (journal);
    CHECK (segments > 10);
    CHECK_EQ (s_count_segments (dir), segments);
    //  Each file is named after its first record, and no segment was
    //  started before the one before it reached 1024 bytes.
    uint64_t total = 0;
    uint64_t first = 1;
    uint8_t buf[300];
    size_t seen = 0;
    for (uint64_t seq = 1; seq <= 300; seq++) {
        s_segment_path (path, dir, seq);
        if (access (path, F_OK) != 0)
            continue;
        seen++;
        if (seq > 1) {
            char previous[PATH_MAX];
            s_segment_path (previous, dir, first);
            CHECK (s_file_size (previous) >= 1024);
            CHECK_EQ (s_file_size (previous), s_record_offset (first, seq));
        }
        total += (uint64_t) s_file_size (path);
        first = seq;
    }
    CHECK_EQ (seen, segments);
    CHECK_EQ (sb_journal_size (journal), total);

    //  Readers cross segments, from anywhere.
    s_check_range (dir, 1, 1, 300);
    s_check_range (dir, 137, 137, 300);
    s_check_range (dir, first, first, 300);
    s_check_range (dir, 301, 1, 0);

    //  One commit that spans several new segments.
    for (uint64_t s = 301; s <= 400; s++)
        s_append (journal, s, 0);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);
    CHECK (sb_journal_segments (journal) >= segments + 5);
    CHECK_EQ (s_count_segments (dir), sb_journal_segments (journal));
    s_check_range (dir, 1, 1, 400);

    //  A reader at the end follows the writer into new segments.
    sb_journal_reader_t *reader = sb_journal_reader_new (dir, 395);
    CHECK (reader);
    uint64_t seq;
    const uint8_t *data;
    size_t size;
    for (uint64_t s = 395; s <= 400; s++) {
        CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 1);
        CHECK_EQ (seq, s);
    }
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 0);
    s_fill (journal, 401, 450, 0);
    for (uint64_t s = 401; s <= 450; s++) {
        CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 1);
        CHECK_EQ (seq, s);
        CHECK_EQ (size, s_payload (s, 0, buf));
    }
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 0);
    sb_journal_reader_destroy (&reader);

    //  Reopen: rotation and sequence resume.
    sb_journal_destroy (&journal);
    journal = sb_journal_open (dir, 1024);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), 451);
    CHECK_EQ (s_count_segments (dir), sb_journal_segments (journal));
    s_fill (journal, 451, 500, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, 1, 500);

    //  Segments trimmed from the front: a reader starts at what is left.
    s_segment_path (path, dir, 1);
    CHECK (unlink (path) == 0);
    static uint64_t seqs[1000];
    size_t count = s_read_all (dir, 1, seqs, 1000, 0, UINT64_MAX, 0);
    CHECK (count > 0 && seqs[0] > 1 && seqs[count - 1] == 500);
}

static void
s_test_tiny_segments (void)
{
    //  segment_bytes below a header: every record gets its own segment, and
    //  a segment is never left without one (no two segments share a name).
    char dir[PATH_MAX];
    s_dir (dir, "tiny");
    sb_journal_t *journal = sb_journal_open (dir, 1);
    CHECK (journal);
    sb_journal_destroy (&journal);
    journal = sb_journal_open (dir, 1);  //  the last segment is header-only
    CHECK (journal);
    s_fill (journal, 1, 5, 0);
    CHECK_EQ (sb_journal_segments (journal), 5);
    CHECK_EQ (s_count_segments (dir), 5);
    sb_journal_destroy (&journal);
    journal = sb_journal_open (dir, 1);
    CHECK (journal);
    s_fill (journal, 6, 6, 0);
    CHECK_EQ (sb_journal_segments (journal), 6);
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, 1, 6);
}

static void
s_test_replaced_segment (void)
{
    //  A failed commit removes the segment it made, and a later commit makes
    //  it again: a reader holding the old file moves to the new one.
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "replaced");
    s_segment_path (path, dir, 1);
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 5, 0);
    sb_journal_reader_t *reader = sb_journal_reader_new (dir, 1);
    CHECK (reader);
    uint64_t seq;
    const uint8_t *data;
    size_t size;
    for (uint64_t s = 1; s <= 5; s++) {
        CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 1);
        CHECK_EQ (seq, s);
    }
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 0);
    sb_journal_destroy (&journal);
    uint8_t *content = s_file_read (path, &size);
    CHECK (unlink (path) == 0);
    s_file_write (path, content, size);
    free (content);
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 6, 8, 0);
    sb_journal_destroy (&journal);
    for (uint64_t s = 6; s <= 8; s++) {
        CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 1);
        CHECK_EQ (seq, s);
    }
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &data, &size), 0);
    sb_journal_reader_destroy (&reader);
}

//  Seqs that open skips after cutting bytes from a tail: as many records
//  as they could hold (a record is at least its 16-byte header).
static uint64_t
s_skip (uint64_t bytes)
{
    return (bytes + 15) / 16;
}

//  Opens dir, whose last segment (named last_first, size bytes) has a
//  torn tail from offset on, where record seq should be. Checks the repair:
//  the tail cut with a warning, the sequence resumed past every seq the
//  cut bytes could hold, in a new segment named after it. Returns the
//  journal.
static sb_journal_t *
s_open_cut (const char *dir, uint64_t segment_bytes, uint64_t last_first, uint64_t seq,
            size_t offset, size_t size)
{
    char path[PATH_MAX], text[128];
    s_log_clear ();
    sb_journal_t *journal = sb_journal_open (dir, segment_bytes);
    CHECK (journal);
    uint64_t next = seq + s_skip (size - offset);
    CHECK (next > seq);
    CHECK_EQ (sb_journal_next_seq (journal), next);
    CHECK (s_log_has ("torn tail truncated"));
    snprintf (text, sizeof text,
              "seq=%" PRIu64 " offset=%zu bytes=%zu seqs_skipped=%" PRIu64 " next_seq=%" PRIu64,
              seq, offset, size - offset, next - seq, next);
    CHECK (s_log_has (text));
    CHECK (s_log_has (" warn test journal journal torn tail truncated"));
    s_segment_path (path, dir, last_first);
    CHECK_EQ (s_file_size (path), offset);
    s_segment_path (path, dir, next);
    CHECK_EQ (s_file_size (path), 52);
    return journal;
}

static void
s_test_torn_tail (void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "torn");
    s_segment_path (path, dir, 1);
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 10, 0);
    sb_journal_destroy (&journal);
    size_t end10 = s_record_offset (1, 11);
    size_t start10 = s_record_offset (1, 10);
    CHECK_EQ (s_file_size (path), end10);

    //  Cut inside record 10's payload: a reader stops before it ...
    CHECK (truncate (path, (off_t) end10 - 5) == 0);
    s_check_range (dir, 1, 1, 9);
    //  ... and open truncates it, with a warning, and resumes past the
    //  seqs the cut bytes could hold (record 10 may have been acknowledged)
    //  in a new segment.
    journal = s_open_cut (dir, 1 << 20, 1, 10, start10, end10 - 5);
    uint64_t a = sb_journal_next_seq (journal);
    s_fill (journal, a, a + 2, 1);
    sb_journal_destroy (&journal);
    //  Readers go from the old segment to the new one, the gap a warning.
    s_log_clear ();
    static uint64_t seqs[100];
    CHECK_EQ (s_read_all (dir, 1, seqs, 100, 0, 10, 1), 12);
    CHECK (seqs[8] == 9 && seqs[9] == a && seqs[11] == a + 2);
    char text[128];
    snprintf (text, sizeof text,
              "records missing before a segment segment=%020" PRIu64 ".sbj from=10 count=%" PRIu64,
              a, a - 10);
    CHECK (s_log_has (text));
    CHECK (!s_log_has (" error "));

    //  Cut inside a record header (the last record, a + 2).
    char path_a[PATH_MAX];
    s_segment_path (path_a, dir, a);
    size_t start_a2 = 0;
    {
        uint8_t buf[300];
        start_a2 = 52 + 16 + s_payload (a, 1, buf) + 16 + s_payload (a + 1, 1, buf);
    }
    CHECK (truncate (path_a, (off_t) start_a2 + 7) == 0);
    journal = s_open_cut (dir, 1 << 20, a, a + 2, start_a2, start_a2 + 7);
    uint64_t b = sb_journal_next_seq (journal);
    CHECK_EQ (b, a + 3);
    s_fill (journal, b, b, 1);
    sb_journal_destroy (&journal);

    //  Garbage after the last record.
    char path_b[PATH_MAX];
    s_segment_path (path_b, dir, b);
    long long before = s_file_size (path_b);
    uint8_t garbage[37];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t) (i * 37 + 11);
    s_file_append (path_b, garbage, sizeof garbage);
    CHECK_EQ (s_read_all (dir, 1, seqs, 100, 0, 10, 1), 12);
    journal = s_open_cut (dir, 1 << 20, b, b + 1, (size_t) before, (size_t) before + 37);
    CHECK (s_log_has ("bytes=37"));
    uint64_t c = sb_journal_next_seq (journal);
    CHECK_EQ (c, b + 1 + 3);
    s_fill (journal, c, c + 7, 1);
    sb_journal_destroy (&journal);
    CHECK_EQ (s_read_all (dir, 1, seqs, 100, 0, 10, 1), 20);

    //  A length field over the cap at the end: torn too.
    char path_c[PATH_MAX];
    s_segment_path (path_c, dir, c);
    before = s_file_size (path_c);
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff};
    s_file_append (path_c, huge, sizeof huge);
    journal = s_open_cut (dir, 1 << 20, c, c + 8, (size_t) before, (size_t) before + 16);
    CHECK_EQ (sb_journal_next_seq (journal), c + 9);
    sb_journal_destroy (&journal);
    CHECK_EQ (s_read_all (dir, 1, seqs, 100, 0, 10, 1), 20);

    //  The last segment's header torn (crash right after creating it): no
    //  record can be in it, nothing is skipped.
    char dir2[PATH_MAX];
    s_dir (dir2, "torn-header");
    journal = sb_journal_open (dir2, 1 << 20);
    CHECK (journal);
    sb_journal_destroy (&journal);
    s_segment_path (path, dir2, 1);
    CHECK (truncate (path, 20) == 0);
    s_log_clear ();
    journal = sb_journal_open (dir2, 1 << 20);
    CHECK (journal);
    CHECK (s_log_has ("torn segment header rewritten"));
    CHECK (!s_log_has ("seqs_skipped"));
    CHECK_EQ (s_file_size (path), 52);
    CHECK_EQ (sb_journal_segments (journal), 1);
    s_fill (journal, 1, 3, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir2, 1, 1, 3);
}

static void
s_flip (const char *path, size_t offset)
{
    size_t size;
    uint8_t *data = s_file_read (path, &size);
    CHECK (offset < size);
    data[offset] ^= 0x5a;
    s_file_write (path, data, size);
    free (data);
}

static void
s_test_corrupt (void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "corrupt");
    s_segment_path (path, dir, 1);
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 10, 0);
    sb_journal_destroy (&journal);
    long long size = s_file_size (path);

    //  A byte flipped in record 5's payload: skipped, the rest kept.
    uint8_t buf[300];
    CHECK (s_payload (5, 0, buf) > 0);
    s_flip (path, s_record_offset (1, 5) + 16);
    s_log_clear ();
    static uint64_t seqs[100];
    size_t count = s_read_all (dir, 1, seqs, 100, 0, UINT64_MAX, 0);
    CHECK_EQ (count, 9);
    for (size_t i = 0; i < count; i++)
        CHECK_EQ (seqs[i], i < 4 ? i + 1 : i + 2);
    CHECK (s_log_has ("corrupt record skipped"));
    CHECK (s_log_has ("seq=5"));
    //  A reader from the corrupt record on starts after it.
    count = s_read_all (dir, 5, seqs, 100, 0, UINT64_MAX, 0);
    CHECK (count == 5 && seqs[0] == 6);

    s_log_clear ();
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK (s_log_has ("corrupt record skipped"));
    CHECK (!s_log_has ("truncated"));
    CHECK_EQ (s_file_size (path), size);
    CHECK_EQ (sb_journal_next_seq (journal), 11);
    s_fill (journal, 11, 12, 0);
    sb_journal_destroy (&journal);
    count = s_read_all (dir, 1, seqs, 100, 0, UINT64_MAX, 0);
    CHECK (count == 11 && seqs[10] == 12);

    //  Its seq field damaged instead (CRC covers it): same.
    s_flip (path, s_record_offset (1, 5) + 16);  //  undo
    s_flip (path, s_record_offset (1, 7) + 9);
    count = s_read_all (dir, 1, seqs, 100, 0, UINT64_MAX, 0);
    CHECK (count == 11 && seqs[6] == 8);
    s_flip (path, s_record_offset (1, 7) + 9);  //  undo

    //  A byte flipped in the last record: nothing good follows, so it is
    //  a torn tail, truncated. Record 12 was committed (it may have been
    //  acknowledged and published): its seq, and every one the cut bytes
    //  could hold, is skipped, as for any cut tail.
    size = s_file_size (path);
    size_t start12 = s_record_offset (1, 12);
    CHECK (s_payload (12, 0, buf) > 0);
    s_flip (path, (size_t) size - 1);
    s_check_range (dir, 1, 1, 11);
    journal = s_open_cut (dir, 1 << 20, 1, 12, start12, (size_t) size);
    uint64_t next = sb_journal_next_seq (journal);
    s_fill (journal, next, next + 3, 0);
    sb_journal_destroy (&journal);
    count = s_read_all (dir, 1, seqs, 100, 0, UINT64_MAX, 0);
    CHECK_EQ (count, 15);
    CHECK (seqs[10] == 11 && seqs[11] == next && seqs[14] == next + 3);

    //  The last segment's header damaged: rewritten, records kept.
    char path_next[PATH_MAX];
    s_segment_path (path_next, dir, next);
    s_flip (path_next, 3);
    s_log_clear ();
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK (s_log_has ("header damaged"));
    CHECK (!s_log_has ("truncated"));
    CHECK_EQ (sb_journal_next_seq (journal), next + 4);
    sb_journal_destroy (&journal);
    CHECK_EQ (s_read_all (dir, 1, seqs, 100, 0, UINT64_MAX, 0), 15);
}

//  Makes writes past limit bytes of any file fail with EFBIG.
static void
s_limit_file_size (rlim_t limit)
{
    struct rlimit rl;
    CHECK (getrlimit (RLIMIT_FSIZE, &rl) == 0);
    rl.rlim_cur = limit;
    CHECK (setrlimit (RLIMIT_FSIZE, &rl) == 0);
}

static void
s_test_disk_full (void)
{
    struct rlimit saved;
    CHECK (getrlimit (RLIMIT_FSIZE, &saved) == 0);
    signal (SIGXFSZ, SIG_IGN);

    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "full");
    s_segment_path (path, dir, 1);
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    //  Enough data that the log file stays under the limit below.
    s_fill (journal, 1, 400, 0);
    size_t size;
    uint8_t *before = s_file_read (path, &size);
    uint64_t journal_size = sb_journal_size (journal);

    //  Room for 20 more bytes only: the commit writes part, then fails.
    s_log_clear ();
    s_limit_file_size (size + 20);
    for (uint64_t s = 401; s <= 405; s++)
        s_append (journal, s, 0);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    //  Rolled back: same bytes on disk, sequence numbers given out again.
    CHECK (!sb_journal_healthy (journal));
    CHECK_EQ (sb_journal_next_seq (journal), 401);
    CHECK_EQ (sb_journal_size (journal), journal_size);
    size_t after_size;
    uint8_t *after = s_file_read (path, &after_size);
    CHECK_EQ (after_size, size);
    CHECK (memcmp (before, after, size) == 0);
    free (after);
    CHECK (s_log_has ("journal not writable"));
    CHECK (s_log_has ("errno=27"));  //  EFBIG
    s_check_range (dir, 1, 1, 400);

    //  Still full: fails again, logged once at error only.
    s_log_clear ();
    s_append (journal, 401, 1);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    CHECK (!s_log_has (" error test "));
    //  Nothing appended: commit probes the disk (a 4 KiB file), still full.
    s_limit_file_size (1000);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    CHECK (!sb_journal_healthy (journal));

    //  Space again: the probe sees it.
    s_limit_file_size (saved.rlim_cur);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);
    CHECK (sb_journal_healthy (journal));
    CHECK (s_log_has ("journal writable again"));

    //  And appends work again, with the seqs that were rolled back.
    s_fill (journal, 401, 410, 1);
    static uint64_t seqs[1000];
    CHECK_EQ (s_read_all (dir, 1, seqs, 1000, 0, 401, 1), 410);

    //  Failure while rotating: the new segment is removed again.
    sb_journal_destroy (&journal);
    journal = sb_journal_open (dir, 4096);  //  the segment is past it: next append rotates
    CHECK (journal);
    s_limit_file_size (30);
    s_log_clear ();
    s_append (journal, 411, 0);
    s_append (journal, 412, 0);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    s_limit_file_size (saved.rlim_cur);
    char path411[PATH_MAX];
    s_segment_path (path411, dir, 411);
    CHECK (access (path411, F_OK) != 0);
    CHECK_EQ (sb_journal_segments (journal), 1);
    CHECK_EQ (sb_journal_next_seq (journal), 411);
    s_fill (journal, 411, 420, 1);
    CHECK (access (path411, F_OK) == 0);
    CHECK_EQ (sb_journal_segments (journal), 2);
    sb_journal_destroy (&journal);
    CHECK_EQ (s_read_all (dir, 1, seqs, 1000, 0, 401, 1), 420);
    CHECK (setrlimit (RLIMIT_FSIZE, &saved) == 0);
    free (before);
}

static void
s_test_limits (void)
{
    char dir[PATH_MAX];
    s_dir (dir, "limits");
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    size_t big = SB_JOURNAL_MAX_RECORD;
    uint8_t *data = calloc (1, big + 1);
    CHECK (data);
    data[0] = 1;
    data[big - 1] = 2;
    uint64_t seq = 0;
    s_log_clear ();
    CHECK_EQ (sb_journal_append (journal, data, big + 1, &seq), SB_JOURNAL_NOT_STORED);
    CHECK (s_log_has ("too large"));
    CHECK_EQ (sb_journal_next_seq (journal), 1);
    CHECK (sb_journal_healthy (journal));
    //  The largest record goes, with a small one either side.
    CHECK_EQ (sb_journal_append (journal, "a", 1, &seq), SB_JOURNAL_STORED);
    CHECK_EQ (sb_journal_append (journal, data, big, &seq), SB_JOURNAL_STORED);
    CHECK_EQ (seq, 2);
    CHECK_EQ (sb_journal_append (journal, "b", 1, &seq), SB_JOURNAL_STORED);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);
    sb_journal_destroy (&journal);
    sb_journal_reader_t *reader = sb_journal_reader_new (dir, 1);
    CHECK (reader);
    const uint8_t *got;
    size_t size;
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &got, &size), 1);
    CHECK (seq == 1 && size == 1 && got[0] == 'a');
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &got, &size), 1);
    CHECK (seq == 2 && size == big && memcmp (got, data, big) == 0);
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &got, &size), 1);
    CHECK (seq == 3 && size == 1 && got[0] == 'b');
    CHECK_EQ (sb_journal_reader_next (reader, &seq, &got, &size), 0);
    sb_journal_reader_destroy (&reader);
    free (data);
    //  A reader of a directory that is not there.
    char missing[PATH_MAX];
    s_dir (missing, "no-such-dir");
    CHECK (sb_journal_reader_new (missing, 1) == NULL);
    //  A journal where a file is in the way.
    char file[PATH_MAX];
    s_dir (file, "limits/EPOCH/sub");
    CHECK (sb_journal_open (file, 1 << 20) == NULL);
    s_rm_rf (dir);
}

//  xorshift: repeatable random bytes.
static uint64_t s_rand_state = 88172645463325252ull;
static uint64_t
s_rand (void)
{
    s_rand_state ^= s_rand_state << 13;
    s_rand_state ^= s_rand_state >> 7;
    s_rand_state ^= s_rand_state << 17;
    return s_rand_state;
}

static void
s_test_hostile (void)
{
    char dir[PATH_MAX], path[PATH_MAX], epoch_path[PATH_MAX];
    const char *epoch = "00112233445566778899aabbccddeeff\n";

    //  A segment of random bytes and no EPOCH: refused, nothing names an epoch.
    s_dir (dir, "garbage");
    CHECK (mkdir (dir, 0750) == 0);
    s_segment_path (path, dir, 1);
    uint8_t garbage[5000];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t) s_rand ();
    s_file_write (path, garbage, sizeof garbage);
    CHECK (sb_journal_open (dir, 1 << 20) == NULL);
    //  A reader of it finds nothing and no error.
    s_check_range (dir, 1, 1, 0);
    //  With an EPOCH: the header is rewritten, the rest is a torn tail,
    //  and the sequence resumes past all the records it could hold.
    s_pathf (epoch_path, "%s/EPOCH", dir);
    s_file_write (epoch_path, (const uint8_t *) epoch, 33);
    sb_journal_t *journal = s_open_cut (dir, 1 << 20, 1, 1, 52, sizeof garbage);
    CHECK (s_log_has ("header damaged"));
    uint64_t g = sb_journal_next_seq (journal);
    CHECK_EQ (g, 1 + s_skip (sizeof garbage - 52));
    s_fill (journal, g, g + 9, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, g, g + 9);

    //  A garbage file after good segments: it is the last, repaired.
    s_segment_path (path, dir, g + 10);
    s_file_write (path, garbage, sizeof garbage);
    s_check_range (dir, 1, g, g + 9);
    journal = s_open_cut (dir, 1 << 20, g + 10, g + 10, 52, sizeof garbage);
    uint64_t h = sb_journal_next_seq (journal);
    CHECK_EQ (h, g + 10 + s_skip (sizeof garbage - 52));
    CHECK_EQ (sb_journal_segments (journal), 4);
    s_fill (journal, h, h + 9, 0);
    sb_journal_destroy (&journal);
    static uint64_t seqs[1000];
    size_t count = s_read_all (dir, 1, seqs, 1000, 0, UINT64_MAX, 0);
    CHECK_EQ (count, 20);
    for (size_t i = 0; i < count; i++)
        CHECK_EQ (seqs[i], i < 10 ? g + i : h + i - 10);

    //  A middle segment overwritten with garbage: readers skip it, loudly.
    s_dir (dir, "garbage-middle");
    journal = sb_journal_open (dir, 1024);
    CHECK (journal);
    for (uint64_t s = 1; s <= 100; s += 5)
        s_fill (journal, s, s + 4, 0);
    sb_journal_destroy (&journal);
    uint64_t victim = 0, after = 0;
    for (uint64_t s = 2; s <= 100 && !after; s++) {
        s_segment_path (path, dir, s);
        if (access (path, F_OK) == 0) {
            if (!victim)
                victim = s;
            else
                after = s;
        }
    }
    CHECK (victim && after);
    s_segment_path (path, dir, victim);
    size_t size;
    uint8_t *data = s_file_read (path, &size);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t) s_rand ();
    s_file_write (path, data, size);
    free (data);
    s_log_clear ();
    count = s_read_all (dir, 1, seqs, 1000, 0, UINT64_MAX, 0);
    CHECK_EQ (count, 100 - (after - victim));
    CHECK_EQ (seqs[victim - 1], after);
    CHECK (s_log_has ("damaged tail"));
    CHECK (s_log_has ("header damaged"));

    //  Random damage to a valid journal, many times over: open never fails
    //  or crashes, never gives out again the seq of a record whose bytes
    //  are still in the file, readers return only genuine records in
    //  order, and the journal takes appends afterwards.
    s_dir (dir, "fuzz");
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 40, 0);
    sb_journal_destroy (&journal);
    s_segment_path (path, dir, 1);
    s_pathf (epoch_path, "%s/EPOCH", dir);
    uint8_t *pristine = s_file_read (path, &size);
    size_t epoch_size;
    uint8_t *pristine_epoch = s_file_read (epoch_path, &epoch_size);
    for (int round = 0; round < 300; round++) {
        //  Just the one segment again (the last round may have added one).
        s_rm_rf (dir);
        CHECK (mkdir (dir, 0750) == 0);
        s_file_write (epoch_path, pristine_epoch, epoch_size);
        uint8_t *copy = malloc (size + 64);
        CHECK (copy);
        memcpy (copy, pristine, size);
        size_t len = size;
        int damages = 1 + (int) (s_rand () % 4);
        for (int d = 0; d < damages; d++) {
            switch (s_rand () % 4) {
                case 0:  //  flip a byte after the header
                    copy[52 + s_rand () % (len - 52)] ^= (uint8_t) (1 + s_rand () % 255);
                    break;
                case 1:  //  cut
                    len = 52 + (size_t) (s_rand () % (len - 52 + 1));
                    break;
                case 2:  //  garbage at the end
                    for (int i = 0; i < 32 && len < size + 64; i++)
                        copy[len++] = (uint8_t) s_rand ();
                    break;
                default:  //  a length field set to a random value
                {
                    uint64_t seq = 1 + s_rand () % 40;
                    size_t at = s_record_offset (1, seq);
                    if (at + 4 <= len)
                        for (int i = 0; i < 4; i++)
                            copy[at + (size_t) i] = (uint8_t) s_rand ();
                }
            }
            if (len <= 52)
                break;
        }
        s_file_write (path, copy, len);
        free (copy);
        s_log_clear ();
        //  Read before repair (a reader tolerates anything) ...
        s_read_all (dir, 1, seqs, 1000, 0, UINT64_MAX, 0);
        //  ... then open repairs it.
        journal = sb_journal_open (dir, 1 << 20);
        CHECK (journal);
        uint64_t next = sb_journal_next_seq (journal);
        CHECK (next >= 1 && next <= 41 + s_skip (size + 64 - 52));
        //  Every record that starts in what is left of the file (damaged
        //  or not) keeps its seq to itself.
        for (uint64_t seq = 1; seq <= 40; seq++)
            if (s_record_offset (1, seq) < len)
                CHECK (seq < next);
        uint8_t buf[300];
        size_t n = s_payload (next, 7, buf);
        uint64_t seq;
        CHECK_EQ (sb_journal_append (journal, buf, n, &seq), SB_JOURNAL_STORED);
        CHECK_EQ (seq, next);
        CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);
        sb_journal_destroy (&journal);
        count = s_read_all (dir, 1, seqs, 1000, 0, next, 7);
        CHECK (count >= 1 && seqs[count - 1] == next);
        //  Open again: nothing more to repair.
        s_log_clear ();
        journal = sb_journal_open (dir, 1 << 20);
        CHECK (journal);
        CHECK_EQ (sb_journal_next_seq (journal), next + 1);
        CHECK (!s_log_has ("truncated"));
        sb_journal_destroy (&journal);
    }
    free (pristine);
    free (pristine_epoch);
}

//  A reader thread tails the journal while the writer appends.
typedef struct {
    const char *dir;  //  the journal
    uint64_t last;    //  read up to this seq
    int failed;       //  line of the failed check, 0 when fine
} s_tail_t;

static void *
s_tail (void *arg)
{
    s_tail_t *tail = arg;
    sb_journal_reader_t *reader = sb_journal_reader_new (tail->dir, 1);
    if (!reader) {
        tail->failed = __LINE__;
        return NULL;
    }
    uint64_t expect = 1;
    int idle = 0;
    while (expect <= tail->last && idle < 200000) {
        uint64_t seq;
        const uint8_t *data;
        size_t size;
        int rc = sb_journal_reader_next (reader, &seq, &data, &size);
        if (rc < 0) {
            tail->failed = __LINE__;
            break;
        }
        if (rc == 0) {
            idle++;
            usleep (50);
            continue;
        }
        idle = 0;
        uint8_t buf[300];
        size_t want = s_payload (seq, 0, buf);
        if (seq != expect || size != want || (size && memcmp (data, buf, size) != 0)) {
            tail->failed = __LINE__;
            break;
        }
        expect++;
    }
    if (expect <= tail->last && !tail->failed)
        tail->failed = __LINE__;
    sb_journal_reader_destroy (&reader);
    return NULL;
}

static void
s_test_concurrent_reader (void)
{
    char dir[PATH_MAX];
    s_dir (dir, "tail");
    sb_journal_t *journal = sb_journal_open (dir, 8192);
    CHECK (journal);
    s_tail_t tail = {.dir = dir, .last = 3000};
    pthread_t thread;
    CHECK (pthread_create (&thread, NULL, s_tail, &tail) == 0);
    uint64_t seq = 1;
    while (seq <= 3000) {
        uint64_t batch = 1 + s_rand () % 20;
        for (uint64_t i = 0; i < batch && seq <= 3000; i++, seq++)
            s_append (journal, seq, 0);
        CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);
    }
    CHECK (pthread_join (thread, NULL) == 0);
    if (tail.failed)
        dprintf (s_out, "%s:%d: the tailing reader failed\n", __FILE__, tail.failed);
    CHECK (tail.failed == 0);
    CHECK (sb_journal_segments (journal) > 10);
    sb_journal_destroy (&journal);
}

// ---------------------------------------------------------------------------
//  Retention: sb_journal_trim

//  The first seqs of dir's segments, ascending; returns how many.
static size_t
s_list_segments (const char *dir, uint64_t *firsts, size_t max)
{
    char path[PATH_MAX];
    size_t count = 0;
    for (uint64_t seq = 1; seq <= 5000; seq++) {
        s_segment_path (path, dir, seq);
        if (access (path, F_OK) == 0) {
            CHECK (count < max);
            firsts[count++] = seq;
        }
    }
    return count;
}

static long long
s_segment_size (const char *dir, uint64_t first)
{
    char path[PATH_MAX];
    s_segment_path (path, dir, first);
    return s_file_size (path);
}

static bool
s_segment_exists (const char *dir, uint64_t first)
{
    return s_segment_size (dir, first) >= 0;
}

//  Sets a segment file's mtime (and atime) to when.
static void
s_segment_touch (const char *dir, uint64_t first, time_t when)
{
    char path[PATH_MAX];
    s_segment_path (path, dir, first);
    struct timespec times[2] = {{.tv_sec = when}, {.tv_sec = when}};
    CHECK (utimensat (AT_FDCWD, path, times, 0) == 0);
}

//  A journal of records 1..300 in segments of about 1 KiB; their first
//  seqs go to firsts (capacity 400), their count to *count.
static sb_journal_t *
s_trim_journal (char *dir, const char *name, uint64_t *firsts, size_t *count)
{
    s_dir (dir, name);
    sb_journal_t *journal = sb_journal_open (dir, 1024);
    CHECK (journal);
    for (uint64_t s = 1; s <= 300; s += 10)
        s_fill (journal, s, s + 9, 0);
    *count = s_list_segments (dir, firsts, 400);
    CHECK (*count > 12);
    CHECK_EQ (*count, sb_journal_segments (journal));
    CHECK_EQ (firsts[0], 1);
    CHECK_EQ (sb_journal_first_seq (journal), 1);
    return journal;
}

static void
s_test_trim_age (void)
{
    char dir[PATH_MAX];
    uint64_t firsts[400];
    size_t n;
    sb_journal_t *journal = s_trim_journal (dir, "trim-age", firsts, &n);
    s_log_clear ();

    //  Nothing is old yet: nothing goes, whatever the age limit.
    sb_journal_trim_t policy = {.max_age_seconds = 72 * 3600, .acked_seq = SB_JOURNAL_NO_HOLD};
    sb_journal_trim_stats_t stats;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 0);
    CHECK_EQ (stats.segments, 0);

    //  The first four segments were last written 100 hours ago: they go,
    //  oldest first, with their bytes accounted for.
    time_t now = time (NULL);
    uint64_t old_bytes = 0;
    for (size_t i = 0; i < 4; i++) {
        s_segment_touch (dir, firsts[i], now - 100 * 3600);
        old_bytes += (uint64_t) s_segment_size (dir, firsts[i]);
    }
    uint64_t total = sb_journal_size (journal);
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 4);
    CHECK_EQ (stats.segments, 4);
    CHECK_EQ (stats.bytes, old_bytes);
    CHECK_EQ (stats.dropped_unacked, 0);
    CHECK_EQ (stats.held_bytes, 0);
    for (size_t i = 0; i < n; i++)
        CHECK (s_segment_exists (dir, firsts[i]) == (i >= 4));
    CHECK_EQ (sb_journal_segments (journal), n - 4);
    CHECK_EQ (sb_journal_size (journal), total - old_bytes);
    CHECK_EQ (sb_journal_first_seq (journal), firsts[4]);
    CHECK (s_log_has ("journal segments removed by retention segments=4"));
    CHECK (s_log_has ("reason=age"));
    //  A reader from seq 1 starts at the first seq kept.
    s_check_range (dir, 1, firsts[4], 300);
    s_check_range (dir, firsts[4] + 1, firsts[4] + 1, 300);
    //  Once is enough.
    CHECK_EQ (sb_journal_trim (journal, &policy, NULL), 0);

    //  An old segment behind a young one stays: only the front is trimmed.
    s_segment_touch (dir, firsts[6], now - 100 * 3600);
    CHECK_EQ (sb_journal_trim (journal, &policy, NULL), 0);

    //  100 hours later everything is old: all segments but the one being
    //  written go.
    policy.now = (int64_t) now + 100 * 3600;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), (int) (n - 5));
    CHECK_EQ (sb_journal_segments (journal), 1);
    CHECK (s_segment_exists (dir, firsts[n - 1]));
    CHECK_EQ (sb_journal_first_seq (journal), firsts[n - 1]);
    CHECK_EQ (sb_journal_size (journal), (uint64_t) s_segment_size (dir, firsts[n - 1]));
    s_check_range (dir, 1, firsts[n - 1], 300);

    //  The journal goes on, and reopens where it was.
    s_fill (journal, 301, 310, 0);
    sb_journal_destroy (&journal);
    journal = sb_journal_open (dir, 1024);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), 311);
    CHECK_EQ (sb_journal_first_seq (journal), firsts[n - 1]);
    s_fill (journal, 311, 320, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, firsts[n - 1], 320);
    CHECK (!s_log_has (" error "));
}

static void
s_test_trim_size (void)
{
    char dir[PATH_MAX];
    uint64_t firsts[400];
    size_t n;
    sb_journal_t *journal = s_trim_journal (dir, "trim-size", firsts, &n);
    s_log_clear ();
    uint64_t total = sb_journal_size (journal);
    uint64_t max = total / 3;
    //  The oldest go while the journal is over max.
    size_t expect = 0;
    uint64_t left = total, removed_bytes = 0;
    while (left > max && expect + 1 < n) {
        uint64_t size = (uint64_t) s_segment_size (dir, firsts[expect]);
        left -= size;
        removed_bytes += size;
        expect++;
    }
    CHECK (expect > 0 && expect + 1 < n);
    sb_journal_trim_t policy = {.max_bytes = max, .acked_seq = SB_JOURNAL_NO_HOLD};
    sb_journal_trim_stats_t stats;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), (int) expect);
    CHECK_EQ (stats.bytes, removed_bytes);
    CHECK_EQ (sb_journal_size (journal), total - removed_bytes);
    CHECK (sb_journal_size (journal) <= max);
    CHECK_EQ (sb_journal_first_seq (journal), firsts[expect]);
    CHECK (s_log_has ("reason=size"));
    s_check_range (dir, 1, firsts[expect], 300);
    CHECK_EQ (sb_journal_trim (journal, &policy, NULL), 0);

    //  The smallest limit leaves the segment being written, even when that
    //  segment alone is over it.
    policy.max_bytes = 1;
    CHECK_EQ (sb_journal_trim (journal, &policy, NULL), (int) (n - 1 - expect));
    CHECK_EQ (sb_journal_segments (journal), 1);
    CHECK (sb_journal_size (journal) > 1);
    CHECK_EQ (sb_journal_trim (journal, &policy, NULL), 0);
    s_fill (journal, 301, 302, 0);
    s_check_range (dir, 1, firsts[n - 1], 302);
    sb_journal_destroy (&journal);
    CHECK (!s_log_has (" error "));
}

static void
s_test_trim_current (void)
{
    //  One segment: never removed, whatever the policy.
    char dir[PATH_MAX];
    s_dir (dir, "trim-current");
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    sb_journal_trim_t policy = {.max_age_seconds = 1,
                                .max_bytes = 1,
                                .hard_max_bytes = 1,
                                .acked_seq = 0,
                                .now = (int64_t) time (NULL) + 1000000};
    sb_journal_trim_stats_t stats;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 0);  //  empty
    s_fill (journal, 1, 5, 0);
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 0);
    CHECK_EQ (stats.segments + stats.dropped_unacked + stats.held_bytes, 0);
    CHECK_EQ (sb_journal_segments (journal), 1);
    CHECK_EQ (sb_journal_first_seq (journal), 1);
    s_fill (journal, 6, 7, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, 1, 7);
}

static void
s_test_trim_held (void)
{
    char dir[PATH_MAX];
    uint64_t firsts[400];
    size_t n;
    sb_journal_t *journal = s_trim_journal (dir, "trim-held", firsts, &n);
    s_log_clear ();
    uint64_t sizes[400];
    for (size_t i = 0; i < n; i++)
        sizes[i] = (uint64_t) s_segment_size (dir, firsts[i]);

    //  Size and age would remove everything but the current segment; a
    //  consumer acknowledged up to the middle of segment 5: segments 0-4
    //  go, 5 onwards stay, and their bytes are reported as held.
    sb_journal_trim_t policy = {.max_age_seconds = 3600,
                                .max_bytes = 1,
                                .hard_max_bytes = 0,
                                .acked_seq = firsts[5] + 2,
                                .now = (int64_t) time (NULL) + 7200};
    sb_journal_trim_stats_t stats;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 5);
    CHECK_EQ (sb_journal_first_seq (journal), firsts[5]);
    uint64_t held = 0;
    for (size_t i = 5; i + 1 < n; i++)
        held += sizes[i];
    CHECK_EQ (stats.held_bytes, held);
    CHECK_EQ (stats.dropped_unacked, 0);
    s_check_range (dir, 1, firsts[5], 300);
    //  An ack at the exact last seq of a segment releases it.
    policy.acked_seq = firsts[8] - 1;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 3);
    CHECK_EQ (sb_journal_first_seq (journal), firsts[8]);
    CHECK_EQ (stats.held_bytes, held - sizes[5] - sizes[6] - sizes[7]);
    //  Held by age alone (no size limit): the same.
    policy.max_bytes = 0;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 0);
    CHECK_EQ (stats.held_bytes, held - sizes[5] - sizes[6] - sizes[7]);
    //  Not old and not too big: nothing is held, there is nothing to hold.
    policy.now = 0;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 0);
    CHECK_EQ (stats.held_bytes, 0);
    //  The consumer stopped counting (not heard from within its TTL): what
    //  it held goes.
    policy.now = (int64_t) time (NULL) + 7200;
    policy.acked_seq = SB_JOURNAL_NO_HOLD;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), (int) (n - 9));
    CHECK_EQ (stats.held_bytes, 0);
    CHECK_EQ (sb_journal_segments (journal), 1);
    sb_journal_destroy (&journal);
    CHECK (!s_log_has (" error "));
}

static void
s_test_trim_hard_cap (void)
{
    char dir[PATH_MAX];
    uint64_t firsts[400];
    size_t n;
    sb_journal_t *journal = s_trim_journal (dir, "trim-hard", firsts, &n);
    s_log_clear ();
    uint64_t sizes[400];
    for (size_t i = 0; i < n; i++)
        sizes[i] = (uint64_t) s_segment_size (dir, firsts[i]);
    uint64_t total = sb_journal_size (journal);

    //  Nothing acknowledged past seq 20, the journal over its hard cap: the
    //  oldest segments go anyway until it is under the cap; the records
    //  above 20 among them are counted as dropped, and each removal logged
    //  at error. The rest, over max_bytes, is held.
    uint64_t hard = total / 2, max = total / 4;
    size_t expect = 0;
    uint64_t left = total, dropped = 0, held = 0;
    while (left > max) {
        uint64_t last = firsts[expect + 1] - 1;
        if (last > 20 && left <= hard) {
            for (size_t i = expect; left > max; i++) {
                held += sizes[i];
                left -= sizes[i];
            }
            break;
        }
        if (last > 20)
            dropped += last - (firsts[expect] > 21 ? firsts[expect] : 21) + 1;
        left -= sizes[expect++];
    }
    CHECK (expect > 0 && dropped > 0 && held > 0);
    sb_journal_trim_t policy = {.max_bytes = max, .hard_max_bytes = hard, .acked_seq = 20};
    sb_journal_trim_stats_t stats;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), (int) expect);
    CHECK_EQ (stats.dropped_unacked, dropped);
    CHECK_EQ (stats.held_bytes, held);
    CHECK (sb_journal_size (journal) <= hard);
    CHECK_EQ (sb_journal_first_seq (journal), firsts[expect]);
    CHECK (s_log_has ("journal over its hard size cap"));
    CHECK (s_log_has (" error "));
    //  Under the cap now: what is held stays.
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 0);
    CHECK_EQ (stats.dropped_unacked, 0);
    CHECK_EQ (stats.held_bytes, held);
    s_check_range (dir, 1, firsts[expect], 300);
    //  A hard cap below one segment leaves the current one.
    policy.hard_max_bytes = 1;
    policy.max_bytes = 1;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), (int) (n - 1 - expect));
    CHECK_EQ (stats.dropped_unacked, firsts[n - 1] - firsts[expect]);
    CHECK_EQ (sb_journal_segments (journal), 1);
    sb_journal_destroy (&journal);
}

static void
s_test_trim_reader (void)
{
    char dir[PATH_MAX];
    uint64_t firsts[400];
    size_t n;
    sb_journal_t *journal = s_trim_journal (dir, "trim-reader", firsts, &n);
    s_log_clear ();
    //  A reader in the first segment, one at the start of the fourth, and
    //  one not started yet.
    sb_journal_reader_t *early = sb_journal_reader_new (dir, 1);
    sb_journal_reader_t *middle = sb_journal_reader_new (dir, firsts[3]);
    sb_journal_reader_t *fresh = sb_journal_reader_new (dir, 2);
    CHECK (early && middle && fresh);
    uint64_t seq;
    const uint8_t *data;
    size_t size;
    for (uint64_t s = 1; s <= 3; s++) {
        CHECK_EQ (sb_journal_reader_next (early, &seq, &data, &size), 1);
        CHECK_EQ (seq, s);
    }
    CHECK_EQ (sb_journal_reader_next (middle, &seq, &data, &size), 1);
    CHECK_EQ (seq, firsts[3]);

    //  Every segment but the last goes under them.
    sb_journal_trim_t policy = {.max_bytes = 1, .acked_seq = SB_JOURNAL_NO_HOLD};
    CHECK_EQ (sb_journal_trim (journal, &policy, NULL), (int) (n - 1));
    uint64_t kept = firsts[n - 1];

    //  Each reader finishes the segment it has open (the file lives on
    //  while open), then carries on at the first seq still there.
    sb_journal_reader_t *readers[3] = {early, middle, fresh};
    uint64_t starts[3] = {4, firsts[3] + 1, kept};
    uint64_t ends[3] = {firsts[1] - 1, firsts[4] - 1, 0};
    for (int r = 0; r < 3; r++) {
        uint64_t expect = starts[r];
        int rc;
        while ((rc = sb_journal_reader_next (readers[r], &seq, &data, &size)) == 1) {
            if (expect == ends[r] + 1)
                expect = kept;
            CHECK_EQ (seq, expect);
            uint8_t want[300];
            CHECK_EQ (size, s_payload (seq, 0, want));
            CHECK (size == 0 || memcmp (data, want, size) == 0);
            expect++;
        }
        CHECK_EQ (rc, 0);
        CHECK_EQ (expect, 301);
    }
    //  And they follow what comes next.
    s_fill (journal, 301, 305, 0);
    for (int r = 0; r < 3; r++) {
        for (uint64_t s = 301; s <= 305; s++) {
            CHECK_EQ (sb_journal_reader_next (readers[r], &seq, &data, &size), 1);
            CHECK_EQ (seq, s);
        }
        CHECK_EQ (sb_journal_reader_next (readers[r], &seq, &data, &size), 0);
        sb_journal_reader_destroy (&readers[r]);
    }
    CHECK (s_log_has ("removed by retention before the reader"));
    CHECK (!s_log_has (" error "));
    sb_journal_destroy (&journal);
}

// ---------------------------------------------------------------------------
//  Cut tails: seqs are never given out twice

//  Reads dir from from_seq to the end, each record genuine (gen 0 below
//  switch_seq, gen2 from it on): they must be seqs first..gap_from - 1 and
//  gap_to..last, in order.
static void
s_check_gap (const char *dir, uint64_t from_seq, uint64_t first, uint64_t gap_from, uint64_t gap_to,
             uint64_t last, uint64_t switch_seq, unsigned gen2)
{
    static uint64_t seqs[1000];
    size_t count = s_read_all (dir, from_seq, seqs, 1000, 0, switch_seq, gen2);
    size_t i = 0;
    for (uint64_t seq = first; seq <= last; seq++) {
        if (seq >= gap_from && seq < gap_to)
            continue;
        CHECK (i < count);
        CHECK_EQ (seqs[i], seq);
        i++;
    }
    CHECK_EQ (count, i);
}

static void
s_test_cut_committed_tail (void)
{
    //  Storage lost the end of a synced segment: record 20 was committed,
    //  acknowledged and published (consumers have stored seq 20), and now
    //  the file ends in the middle of it. Open cannot tell that from a
    //  crash mid-write, so it never gives out again any seq that the cut
    //  bytes could have held.
    char dir[PATH_MAX], path[PATH_MAX], text[160];
    s_dir (dir, "cut-committed");
    s_segment_path (path, dir, 1);
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 20, 0);
    sb_journal_destroy (&journal);
    //  A reader that has read everything, record 20 included.
    sb_journal_reader_t *early = sb_journal_reader_new (dir, 1);
    CHECK (early);
    uint64_t seq;
    const uint8_t *data;
    size_t size;
    for (uint64_t s = 1; s <= 20; s++) {
        CHECK_EQ (sb_journal_reader_next (early, &seq, &data, &size), 1);
        CHECK_EQ (seq, s);
    }
    CHECK_EQ (sb_journal_reader_next (early, &seq, &data, &size), 0);

    size_t start20 = s_record_offset (1, 20), end20 = s_record_offset (1, 21);
    uint8_t buf[300];
    CHECK (s_payload (20, 0, buf) >= 2);
    size_t cut_at = start20 + 16 + s_payload (20, 0, buf) / 2;
    CHECK (truncate (path, (off_t) cut_at) == 0);
    CHECK (end20 > cut_at);

    //  Open: the sequence resumes past the cut, in a new segment.
    journal = s_open_cut (dir, 1 << 20, 1, 20, start20, cut_at);
    uint64_t next = sb_journal_next_seq (journal);
    CHECK_EQ (next, 20 + s_skip (cut_at - start20));
    CHECK (next > 21);
    CHECK_EQ (sb_journal_segments (journal), 2);
    CHECK_EQ (sb_journal_first_seq (journal), 1);
    CHECK_EQ (sb_journal_size (journal), start20 + 52);
    //  Appends go to the new segment; the old one stays as it was cut.
    s_fill (journal, next, next + 9, 1);
    char path_next[PATH_MAX];
    s_segment_path (path_next, dir, next);
    CHECK_EQ (s_file_size (path), start20);
    CHECK (s_file_size (path_next) > 52);
    CHECK_EQ (sb_journal_size (journal), start20 + (uint64_t) s_file_size (path_next));

    //  Readers see the gap and carry on; it is a warning, not corruption.
    s_log_clear ();
    s_check_gap (dir, 1, 1, 20, next, next + 9, next, 1);
    snprintf (text, sizeof text,
              "records missing before a segment segment=%020" PRIu64 ".sbj from=20 count=%" PRIu64,
              next, next - 20);
    CHECK (s_log_has (text));
    //  From inside the gap: the seqs asked for that are missing, then on.
    s_log_clear ();
    s_check_gap (dir, 21, 21, 21, next, next + 9, next, 1);
    snprintf (text, sizeof text, "from=21 count=%" PRIu64, next - 21);
    CHECK (s_log_has (text));
    s_check_gap (dir, next, next, 0, 0, next + 9, next, 1);
    //  The reader that had read record 20 before the cut follows into the
    //  new segment too.
    for (uint64_t s = next; s <= next + 9; s++) {
        CHECK_EQ (sb_journal_reader_next (early, &seq, &data, &size), 1);
        CHECK_EQ (seq, s);
        CHECK_EQ (size, s_payload (s, 1, buf));
    }
    CHECK_EQ (sb_journal_reader_next (early, &seq, &data, &size), 0);
    sb_journal_reader_destroy (&early);
    CHECK (!s_log_has (" error "));
    CHECK (!s_log_has ("damaged"));

    //  Reopen: stable, nothing more is cut or skipped.
    sb_journal_destroy (&journal);
    s_log_clear ();
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), next + 10);
    CHECK_EQ (sb_journal_segments (journal), 2);
    CHECK (!s_log_has ("truncated"));
    CHECK (!s_log_has ("skipped"));
    s_fill (journal, next + 10, next + 12, 1);
    sb_journal_destroy (&journal);
    s_check_gap (dir, 1, 1, 20, next, next + 12, next, 1);

    //  Cut right after the skip, before anything was appended: reopening
    //  twice changes nothing (the new segment's name keeps the skip).
    char dir2[PATH_MAX];
    s_dir (dir2, "cut-committed-idle");
    journal = sb_journal_open (dir2, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 20, 0);
    sb_journal_destroy (&journal);
    s_segment_path (path, dir2, 1);
    CHECK (truncate (path, (off_t) cut_at) == 0);
    journal = s_open_cut (dir2, 1 << 20, 1, 20, start20, cut_at);
    CHECK_EQ (sb_journal_next_seq (journal), next);
    sb_journal_destroy (&journal);
    for (int i = 0; i < 2; i++) {
        s_log_clear ();
        journal = sb_journal_open (dir2, 1 << 20);
        CHECK (journal);
        CHECK_EQ (sb_journal_next_seq (journal), next);
        CHECK_EQ (sb_journal_segments (journal), 2);
        CHECK (!s_log_has ("truncated"));
        sb_journal_destroy (&journal);
    }
    //  A reader reaches the end cleanly across the empty new segment.
    s_check_range (dir2, 1, 1, 19);
    s_check_range (dir2, 20, 1, 0);

    //  Retention over the gap: the old segment is held while a consumer
    //  has not acked past the gap, and goes once it has.
    journal = sb_journal_open (dir2, 1 << 20);
    CHECK (journal);
    s_fill (journal, next, next + 1, 0);
    sb_journal_trim_t policy = {.max_bytes = 1, .acked_seq = 19};
    sb_journal_trim_stats_t stats;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 0);
    CHECK_EQ (stats.held_bytes, start20);
    policy.acked_seq = next;
    CHECK_EQ (sb_journal_trim (journal, &policy, &stats), 1);
    CHECK_EQ (sb_journal_first_seq (journal), next);
    sb_journal_destroy (&journal);
    s_check_range (dir2, 1, next, next + 1);
}

static void
s_test_crash_torn_tail (void)
{
    //  A crash in the middle of a write leaves part of a record that was
    //  never committed, so never acknowledged. The journal cannot tell it
    //  from a committed record cut by the disk: the same rule applies, and
    //  a few seqs are skipped. That is harmless: nobody ever saw them;
    //  consumers only count a gap.
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "crash-torn");
    s_segment_path (path, dir, 1);
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 30, 0);
    sb_journal_destroy (&journal);
    size_t end30 = s_record_offset (1, 31);
    CHECK_EQ (s_file_size (path), end30);

    //  Record 31's header and half of its 200-byte payload.
    uint8_t torn[16 + 100];
    memset (torn, 0x0a, sizeof torn);
    torn[0] = 200;
    torn[1] = torn[2] = torn[3] = 0;
    for (int i = 0; i < 8; i++)
        torn[8 + i] = (uint8_t) ((uint64_t) 31 >> (8 * i));
    s_file_append (path, torn, sizeof torn);
    s_check_range (dir, 1, 1, 30);

    journal = s_open_cut (dir, 1 << 20, 1, 31, end30, end30 + sizeof torn);
    uint64_t next = sb_journal_next_seq (journal);
    CHECK_EQ (next, 31 + s_skip (sizeof torn));  //  8 seqs: 31..38 skipped
    CHECK_EQ (next, 39);
    s_fill (journal, next, next + 4, 1);
    sb_journal_destroy (&journal);
    s_check_gap (dir, 1, 1, 31, next, next + 4, next, 1);
    s_log_clear ();
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), next + 5);
    CHECK (!s_log_has ("truncated"));
    sb_journal_destroy (&journal);

    //  A tail of one byte still moves the sequence on by one.
    s_segment_path (path, dir, next);
    long long before = s_file_size (path);
    s_file_append (path, torn, 1);
    journal = s_open_cut (dir, 1 << 20, next, next + 5, (size_t) before, (size_t) before + 1);
    CHECK_EQ (sb_journal_next_seq (journal), next + 6);
    sb_journal_destroy (&journal);
}

static void
s_test_interrupted_cut (void)
{
    //  Open makes the new segment durable before it cuts the old tail. A
    //  crash between the two leaves the tail in a segment that is no
    //  longer the last: the next open cuts it then, and the sequence stays
    //  where the first open put it.
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "interrupted");
    s_segment_path (path, dir, 1);
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 10, 0);
    sb_journal_destroy (&journal);
    size_t start10 = s_record_offset (1, 10), end10 = s_record_offset (1, 11);
    CHECK (truncate (path, (off_t) end10 - 3) == 0);
    size_t damaged_size;
    uint8_t *damaged = s_file_read (path, &damaged_size);
    journal = s_open_cut (dir, 1 << 20, 1, 10, start10, damaged_size);
    uint64_t next = sb_journal_next_seq (journal);
    sb_journal_destroy (&journal);

    //  As if the cut never happened.
    s_file_write (path, damaged, damaged_size);
    s_log_clear ();
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), next);
    CHECK (s_log_has ("torn tail truncated before an empty last segment"));
    CHECK (!s_log_has ("seqs_skipped"));
    CHECK_EQ (s_file_size (path), start10);
    CHECK_EQ (sb_journal_size (journal), start10 + 52);
    s_fill (journal, next, next + 2, 0);
    sb_journal_destroy (&journal);
    s_log_clear ();
    s_check_gap (dir, 1, 1, 10, next, next + 2, UINT64_MAX, 0);
    CHECK (!s_log_has ("damaged tail"));

    //  A crash while making the new segment: its file is there, but empty
    //  (or its header torn), and the old tail not cut yet.
    s_file_write (path, damaged, damaged_size);
    char path_next[PATH_MAX];
    s_segment_path (path_next, dir, next);
    CHECK (unlink (path_next) == 0);
    s_file_write (path_next, (const uint8_t *) "", 0);
    s_log_clear ();
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK (s_log_has ("torn segment header rewritten"));
    CHECK (s_log_has ("torn tail truncated before an empty last segment"));
    CHECK_EQ (sb_journal_next_seq (journal), next);
    CHECK_EQ (s_file_size (path), start10);
    CHECK_EQ (s_file_size (path_next), 52);
    s_fill (journal, next, next + 1, 0);
    sb_journal_destroy (&journal);
    s_check_gap (dir, 1, 1, 10, next, next + 1, UINT64_MAX, 0);

    //  An empty last segment after a complete one is normal (a rotation):
    //  the one before is only read.
    char dir2[PATH_MAX];
    s_dir (dir2, "interrupted-normal");
    journal = sb_journal_open (dir2, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 10, 0);
    sb_journal_destroy (&journal);
    s_segment_path (path, dir2, 11);
    s_file_write (path, (const uint8_t *) "", 0);
    s_log_clear ();
    journal = sb_journal_open (dir2, 1 << 20);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), 11);
    CHECK (!s_log_has ("truncated"));
    s_fill (journal, 11, 12, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir2, 1, 1, 12);
    free (damaged);
}

// ---------------------------------------------------------------------------
//  Syncs that fail. The journal is linked into this program, so these two
//  definitions come before libc's: the journal's syncs go through them.

static int s_sync_fail_in;        //  0: no fault; N: the Nth sync from now fails
static int s_sync_fail_count;     //  how many in a row fail from there
static bool s_sync_fail_dir;      //  only syncs of directories count
static uint8_t *s_sync_saved;     //  a failed file's bytes at its failure
static size_t s_sync_saved_size;  //  their size

static bool
s_sync_fault (int fd)
{
    if (s_sync_fail_in == 0)
        return false;
    struct stat st;
    bool dir = fstat (fd, &st) == 0 && S_ISDIR (st.st_mode);
    if (s_sync_fail_dir && !dir)
        return false;
    if (--s_sync_fail_in > 0)
        return false;
    if (--s_sync_fail_count > 0)
        s_sync_fail_in = 1;
    if (!dir && !s_sync_saved) {
        //  What the page cache held: storage may get it after all.
        s_sync_saved_size = (size_t) st.st_size;
        s_sync_saved = malloc (s_sync_saved_size + 1);
        CHECK (s_sync_saved);
        CHECK (pread (fd, s_sync_saved, s_sync_saved_size, 0) == (ssize_t) s_sync_saved_size);
    }
    errno = EIO;
    return true;
}

int
fdatasync (int fd)
{
    return s_sync_fault (fd) ? -1 : (int) syscall (SYS_fdatasync, fd);
}

int
fsync (int fd)
{
    return s_sync_fault (fd) ? -1 : (int) syscall (SYS_fsync, fd);
}

static void
s_sync_fail (int in, int count, bool dir_only)
{
    s_sync_fail_in = in;
    s_sync_fail_count = count;
    s_sync_fail_dir = dir_only;
    free (s_sync_saved);
    s_sync_saved = NULL;
}

//  A journal in dir (created) with records 1..3 committed in segment 1,
//  whose commit of records 4 and 5 (generation 1) then failed its
//  fdatasync; *committed gets segment 1's size (path) before that commit.
static sb_journal_t *
s_failed_commit (const char *dir, char *path, long long *committed)
{
    sb_journal_t *journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_fill (journal, 1, 3, 0);
    s_segment_path (path, dir, 1);
    *committed = s_file_size (path);
    s_append (journal, 4, 1);
    s_append (journal, 5, 1);
    s_sync_fail (1, 1, false);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    return journal;
}

//  An fdatasync fails: that batch is not stored, its seqs are given out
//  again in a fresh segment, and the failed one is never written again.
//  Its records that storage gets after all (the saved bytes written back,
//  as after a power cut that kept them) are never read.
static void
s_test_sync_eio (void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "sync_eio");
    long long committed;
    sb_journal_t *journal = s_failed_commit (dir, path, &committed);
    CHECK (s_sync_saved && (long long) s_sync_saved_size > committed);
    CHECK (!sb_journal_healthy (journal));
    CHECK_EQ (sb_journal_next_seq (journal), 4);
    CHECK (s_log_has ("segment abandoned after a failed sync"));
    //  Appends go to segment 4 from now on; segment 1 keeps its size.
    s_segment_path (path, dir, 4);
    CHECK_EQ (s_file_size (path), 52);
    CHECK_EQ (sb_journal_segments (journal), 2);
    s_fill (journal, 4, 6, 0);
    CHECK (sb_journal_healthy (journal));
    s_segment_path (path, dir, 1);
    CHECK_EQ (s_file_size (path), committed);
    s_check_range (dir, 1, 1, 6);
    sb_journal_destroy (&journal);
    //  The failed bytes reach segment 1 after all: readers and open stop
    //  it at segment 4's name.
    s_file_write (path, s_sync_saved, s_sync_saved_size);
    s_log_clear ();
    s_check_range (dir, 1, 1, 6);
    CHECK (s_log_has ("records past the next segment's first seq ignored"));
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), 7);
    s_fill (journal, 7, 7, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, 1, 7);

    //  The last segment holds no committed record: the fresh one replaces it.
    s_dir (dir, "sync_eio_empty");
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    s_append (journal, 1, 1);
    s_sync_fail (1, 1, false);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    CHECK_EQ (sb_journal_segments (journal), 1);
    s_fill (journal, 1, 2, 0);
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, 1, 2);
    CHECK_EQ (s_count_segments (dir), 1);
    s_sync_fail (0, 0, false);
}

//  The failed commit's bytes may reach storage partly: a damaged record
//  at the successor's name, then a whole one. Both are past the limit, so
//  they are the failed commit's, not corruption: a reader stops there
//  without a word at error, and open (the fresh segment still empty) cuts
//  the old segment back to its committed size, damaged record included.
static void
s_test_sync_eio_damaged (void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "sync_eio_damaged");
    long long committed;
    sb_journal_t *journal = s_failed_commit (dir, path, &committed);
    sb_journal_destroy (&journal);  //  segment 4 stays empty
    //  Record 4 (207 bytes of payload) loses a byte, record 5 arrives whole.
    CHECK (s_sync_saved && (long long) s_sync_saved_size == committed + 16 + 207 + 16 + 26);
    s_sync_saved[committed + 16 + 100] ^= 0xff;
    s_file_write (path, s_sync_saved, s_sync_saved_size);
    s_log_clear ();
    s_check_range (dir, 1, 1, 3);
    CHECK (!s_log_has ("corrupt record skipped"));
    CHECK (!s_log_has (" error "));
    journal = sb_journal_open (dir, 1 << 20);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), 4);
    CHECK_EQ (s_file_size (path), committed);
    CHECK (!s_log_has (" error "));
    s_fill (journal, 4, 6, 0);
    sb_journal_destroy (&journal);
    s_log_clear ();
    s_check_range (dir, 1, 1, 6);
    CHECK (!s_log_has (" error "));
    CHECK (!s_log_has ("past the next segment"));
    s_sync_fail (0, 0, false);
}

//  The directory fsync of a rotating commit fails: the segments it made
//  go, and so do the records it had put in the last one; nothing of the
//  batch is read. Then the fresh segment cannot be made either (its own
//  syncs fail): the journal refuses commits until it can, even with
//  nothing to commit, then goes on gap-free. Retention copes with the
//  abandoned segments.
static void
s_test_sync_eio_rotation (void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    s_dir (dir, "sync_eio_rotation");
    sb_journal_t *journal = sb_journal_open (dir, 1024);
    CHECK (journal);
    s_fill (journal, 1, 3, 0);
    uint64_t next = 4;
    for (; next < 40; next++)
        s_append (journal, next, 1);
    s_sync_fail (1, 1, true);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    CHECK_EQ (sb_journal_next_seq (journal), 4);
    s_segment_path (path, dir, 4);
    CHECK_EQ (s_file_size (path), 52);
    CHECK_EQ (s_count_segments (dir), 2);
    s_check_range (dir, 1, 1, 3);

    //  The commit's sync fails, then the fresh segment's file and directory
    //  syncs (three in a row): not stored, and the next commits retry.
    s_append (journal, 4, 1);
    s_sync_fail (1, 3, false);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    CHECK_EQ (sb_journal_commit (journal),
              SB_JOURNAL_NOT_STORED);  //  nothing pending, still broken
    CHECK (!sb_journal_healthy (journal));
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);  //  the fresh segment made
    CHECK (sb_journal_healthy (journal));
    s_fill (journal, 4, 60, 0);
    s_check_range (dir, 1, 1, 60);
    CHECK_EQ (sb_journal_first_seq (journal), 1);
    //  Retention takes the abandoned segments like any other.
    sb_journal_trim_t policy = {.max_bytes = 1, .acked_seq = SB_JOURNAL_NO_HOLD};
    CHECK (sb_journal_trim (journal, &policy, NULL) > 0);
    CHECK_EQ (sb_journal_segments (journal), 1);
    uint64_t first = sb_journal_first_seq (journal);
    CHECK (first > 4 && first <= 60);
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, first, 60);

    //  The last segment is full, so the failed batch began a segment; the
    //  fresh one cannot be made (the directory sync fails too), and the
    //  next batch, appended meanwhile, must start in the fresh segment,
    //  not begin another one of the same name.
    s_dir (dir, "sync_eio_full");
    journal = sb_journal_open (dir, 1024);
    CHECK (journal);
    //  Fill until the newest segment (named after the seq that began it)
    //  is past 1024 bytes: the next append begins a segment.
    uint64_t newest = 1, segments = 1;
    next = 1;
    do {
        s_fill (journal, next, next, 0);
        if (sb_journal_segments (journal) > segments) {
            segments = sb_journal_segments (journal);
            newest = next;
        }
        next++;
        s_segment_path (path, dir, newest);
    } while (s_file_size (path) < 1024);
    s_append (journal, next, 1);  //  begins a segment: the last one is full
    s_sync_fail (1, 2, false);    //  its fdatasync, then the directory sync
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_NOT_STORED);
    CHECK_EQ (sb_journal_next_seq (journal), next);
    s_append (journal, next, 0);
    s_append (journal, next + 1, 0);
    CHECK_EQ (sb_journal_commit (journal), SB_JOURNAL_STORED);
    CHECK_EQ (sb_journal_segments (journal), s_count_segments (dir));
    s_fill (journal, next + 2, next + 30, 0);
    CHECK_EQ (sb_journal_segments (journal), s_count_segments (dir));
    sb_journal_destroy (&journal);
    s_check_range (dir, 1, 1, next + 30);
    journal = sb_journal_open (dir, 1024);
    CHECK (journal);
    CHECK_EQ (sb_journal_next_seq (journal), next + 31);
    sb_journal_destroy (&journal);
    s_sync_fail (0, 0, false);
}

int
main (void)
{
    snprintf (s_root, sizeof s_root, "/tmp/test_sb_journal.XXXXXX");
    if (!mkdtemp (s_root)) {
        perror ("mkdtemp");
        return 1;
    }
    //  sb_log writes to stderr: send it to a file the checks can read.
    s_pathf (s_logpath, "%s/log", s_root);
    s_out = dup (2);
    int log = open (s_logpath, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
    if (s_out < 0 || log < 0 || dup2 (log, 2) < 0) {
        perror ("log file");
        return 1;
    }
    close (log);
    sb_log_init ("test", SB_LOG_DEBUG);

    s_test_basic ();
    s_test_new_epoch ();
    s_test_rotation ();
    s_test_tiny_segments ();
    s_test_replaced_segment ();
    s_test_torn_tail ();
    s_test_corrupt ();
    s_test_disk_full ();
    s_test_limits ();
    s_test_hostile ();
    s_test_concurrent_reader ();
    s_test_trim_age ();
    s_test_trim_size ();
    s_test_trim_current ();
    s_test_trim_held ();
    s_test_trim_hard_cap ();
    s_test_trim_reader ();
    s_test_cut_committed_tail ();
    s_test_crash_torn_tail ();
    s_test_interrupted_cut ();
    s_test_sync_eio ();
    s_test_sync_eio_damaged ();
    s_test_sync_eio_rotation ();

    dup2 (s_out, 2);
    close (s_out);
    s_rm_rf (s_root);
    return 0;
}
