/*  fuzz_journal: arbitrary bytes as journal segment files, read by
    sb_journal_reader, opened (and so repaired) by sb_journal_open, then
    written to and read back.

    Input: a 5-byte prefix, then the bytes of the segment file(s).
      byte 0     flags:
                 0x01  set each segment's header CRC right (so that mutations
                       get past it)
                 0x02  set each record's CRC right, following length fields
                 0x04  write DIR/EPOCH with the epoch of the first segment's
                       header (else no EPOCH: it is recovered from headers)
                 0x08  two segments: the bytes cut at the offset in bytes 3-4
                 0x10  open with segment_bytes 64, so the appends rotate
                 0x20  the first reader starts at seq 1 + byte 1 + byte 2
                 0x40  no segment at all: the bytes are DIR/EPOCH instead
      byte 1     the first segment's first seq, minus 1 (its file name)
      byte 2     the second segment's first seq, minus the first's, minus 1
      bytes 3-4  where to cut (little-endian), modulo the length + 1
    make_corpus.py writes valid, torn and damaged journals in this form.

    Each run works in a private directory (under /dev/shm when it exists:
    the journal fsyncs), emptied before and after. Invariants, beyond "no
    sanitizer finding":
    - a reader on the damaged directory ends (0 or -1), returns records
      with seq >= its start, never more records than the bytes allow.
    - when sb_journal_open accepts the directory: its epoch is 32 hex
      digits; with one segment a reader then sees strictly increasing seqs
      below next_seq and ends cleanly (0). Two appends (one empty) and a
      commit are STORED; a reader from the first one's seq returns exactly
      those two records, then ends; reopening gives the same epoch and the
      next seq after them (the repair left nothing that hides new records,
      as issue 4's torn-write test requires).
*/
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "sb_fuzz.h"
#include "sb_journal.h"

#define S_PREFIX 5
#define S_HEADER 52
#define S_RECORD_HEADER 16

static char s_dir[128];  //  the private journal directory

//  Removes every file in the directory.
static void
s_clean (void)
{
    DIR *dir = opendir (s_dir);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir (dir)))
        if (strcmp (entry->d_name, ".") != 0 && strcmp (entry->d_name, "..") != 0)
            unlinkat (dirfd (dir), entry->d_name, 0);
    closedir (dir);
}

static void
s_remove_dir (void)
{
    if (!s_dir[0])
        return;
    s_clean ();
    rmdir (s_dir);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_fuzz_quiet ();
    const char *base = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf (s_dir, sizeof s_dir, "%s/sb-fuzz-journal-XXXXXX", base);
    if (!mkdtemp (s_dir)) {
        fprintf (stderr, "fuzz_journal: cannot make a directory in %s\n", base);
        abort ();
    }
    atexit (s_remove_dir);
    return 0;
}

static uint32_t
s_get32 (const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static void
s_put32 (uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

static uint32_t
s_crc (const uint8_t *p, size_t n)
{
    return (uint32_t) crc32 (0L, p, (uInt) n);
}

//  Sets the CRCs of one segment's bytes right, as flags ask.
static void
s_fix_crcs (uint8_t *bytes, size_t size, unsigned flags)
{
    if ((flags & 0x01) && size >= S_HEADER)
        s_put32 (bytes + 48, s_crc (bytes, 48));
    if (!(flags & 0x02))
        return;
    size_t offset = S_HEADER;
    while (offset + S_RECORD_HEADER <= size) {
        uint32_t length = s_get32 (bytes + offset);
        if (length > size - offset - S_RECORD_HEADER)
            break;
        s_put32 (bytes + offset + 4, s_crc (bytes + offset + 8, 8 + (size_t) length));
        offset += S_RECORD_HEADER + length;
    }
}

static void
s_write_file (const char *name, const uint8_t *bytes, size_t size)
{
    char path[256];
    snprintf (path, sizeof path, "%s/%s", s_dir, name);
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    SB_FUZZ_CHECK (fd >= 0);
    SB_FUZZ_CHECK (size == 0 || write (fd, bytes, size) == (ssize_t) size);
    close (fd);
}

static void
s_write_segment (uint64_t first, uint8_t *bytes, size_t size, unsigned flags)
{
    char name[32];
    snprintf (name, sizeof name, "%020llu.sbj", (unsigned long long) first);
    s_fix_crcs (bytes, size, flags);
    s_write_file (name, bytes, size);
}

//  Reads the directory from from_seq to its end. strict: records come in
//  strictly increasing seq and the read ends cleanly. Returns the last seq
//  read (0 when none).
static uint64_t
s_read (uint64_t from_seq, size_t bytes, int strict)
{
    sb_journal_reader_t *reader = sb_journal_reader_new (s_dir, from_seq);
    SB_FUZZ_CHECK (reader);
    uint64_t last = 0, seq = 0;
    size_t count = 0, size = 0;
    const uint8_t *data = NULL;
    int rc;
    while ((rc = sb_journal_reader_next (reader, &seq, &data, &size)) == 1) {
        SB_FUZZ_CHECK (seq >= from_seq);
        SB_FUZZ_CHECK (size == 0 || data);
        SB_FUZZ_CHECK (size <= bytes);
        if (strict)
            SB_FUZZ_CHECK (seq > last);
        last = seq;
        count++;
        SB_FUZZ_CHECK (count <= bytes / S_RECORD_HEADER + 1);
    }
    SB_FUZZ_CHECK (rc == 0 || rc == -1);
    if (strict)
        SB_FUZZ_CHECK (rc == 0);
    sb_journal_reader_destroy (&reader);
    SB_FUZZ_CHECK (reader == NULL);
    return last;
}

static int
s_epoch_valid (const char *epoch)
{
    if (!epoch || strlen (epoch) != 32)
        return 0;
    return strspn (epoch, "0123456789abcdef") == 32;
}

//  Open, check, append, read back, reopen. bytes: what the files hold.
static void
s_open_and_write (const uint8_t *payload, size_t payload_size, size_t bytes, unsigned flags,
                  int segments)
{
    uint64_t segment_bytes = (flags & 0x10) ? 64 : 1024 * 1024;
    sb_journal_t *journal = sb_journal_open (s_dir, segment_bytes);
    if (!journal)
        return;
    const char *epoch = sb_journal_epoch (journal);
    SB_FUZZ_CHECK (s_epoch_valid (epoch));
    char epoch_copy[33];
    memcpy (epoch_copy, epoch, sizeof epoch_copy);
    uint64_t next = sb_journal_next_seq (journal);
    SB_FUZZ_CHECK (next >= 1);
    SB_FUZZ_CHECK (sb_journal_healthy (journal));
    SB_FUZZ_CHECK (sb_journal_segments (journal) >= 1);
    if (segments <= 1) {
        uint64_t last = s_read (1, bytes + S_HEADER, 1);
        SB_FUZZ_CHECK (last < next);
    }

    uint64_t seq1 = 0, seq2 = 0;
    SB_FUZZ_CHECK (sb_journal_append (journal, payload, payload_size, &seq1) == SB_JOURNAL_STORED);
    SB_FUZZ_CHECK (seq1 == next);
    SB_FUZZ_CHECK (sb_journal_append (journal, "", 0, &seq2) == SB_JOURNAL_STORED);
    SB_FUZZ_CHECK (seq2 == seq1 + 1);
    SB_FUZZ_CHECK (sb_journal_commit (journal) == SB_JOURNAL_STORED);
    SB_FUZZ_CHECK (sb_journal_healthy (journal));
    SB_FUZZ_CHECK (sb_journal_next_seq (journal) == seq2 + 1);

    //  The records just committed read back, and nothing after them
    sb_journal_reader_t *reader = sb_journal_reader_new (s_dir, seq1);
    SB_FUZZ_CHECK (reader);
    uint64_t seq = 0;
    const uint8_t *data = NULL;
    size_t size = 0;
    SB_FUZZ_CHECK (sb_journal_reader_next (reader, &seq, &data, &size) == 1);
    SB_FUZZ_CHECK (seq == seq1 && size == payload_size);
    SB_FUZZ_CHECK (size == 0 || memcmp (data, payload, size) == 0);
    SB_FUZZ_CHECK (sb_journal_reader_next (reader, &seq, &data, &size) == 1);
    SB_FUZZ_CHECK (seq == seq2 && size == 0);
    SB_FUZZ_CHECK (sb_journal_reader_next (reader, &seq, &data, &size) == 0);
    sb_journal_reader_destroy (&reader);
    sb_journal_destroy (&journal);
    SB_FUZZ_CHECK (journal == NULL);

    //  Reopened, the journal carries on after them
    journal = sb_journal_open (s_dir, segment_bytes);
    SB_FUZZ_CHECK (journal);
    SB_FUZZ_CHECK (strcmp (sb_journal_epoch (journal), epoch_copy) == 0);
    SB_FUZZ_CHECK (sb_journal_next_seq (journal) == seq2 + 1);
    sb_journal_destroy (&journal);
    if (segments <= 1) {
        //  The repaired segment, then any the appends rotated to
        size_t most = bytes + 3 * S_HEADER + 2 * S_RECORD_HEADER + payload_size;
        SB_FUZZ_CHECK (s_read (1, most, 1) == seq2);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < S_PREFIX)
        return 0;
    unsigned flags = data[0];
    uint64_t first = 1 + (uint64_t) data[1];
    uint64_t second = first + 1 + (uint64_t) data[2];
    size_t bytes = size - S_PREFIX;
    size_t cut = (size_t) (data[3] | data[4] << 8) % (bytes + 1);
    uint8_t *copy = malloc (bytes ? bytes : 1);
    SB_FUZZ_CHECK (copy);
    if (bytes)
        memcpy (copy, data + S_PREFIX, bytes);

    s_clean ();
    int segments = 0;
    if (flags & 0x40)
        s_write_file ("EPOCH", copy, bytes);
    else if (flags & 0x08) {
        s_write_segment (first, copy, cut, flags);
        s_write_segment (second, copy + cut, bytes - cut, flags);
        segments = 2;
    }
    else {
        s_write_segment (first, copy, bytes, flags);
        segments = 1;
    }
    if ((flags & 0x04) && !(flags & 0x40)) {
        char epoch[33];
        memset (epoch, '0', 32);
        if (bytes >= 40)
            memcpy (epoch, copy + 8, 32);
        epoch[32] = '\n';
        s_write_file ("EPOCH", (const uint8_t *) epoch, sizeof epoch);
    }

    uint64_t from = (flags & 0x20) ? 1 + (uint64_t) data[1] + data[2] : 1;
    s_read (from, bytes, 0);

    //  What the ingress journals is an encoded event; any bytes will do
    size_t payload_size = bytes < 300 ? bytes : 300;
    s_open_and_write (data + S_PREFIX, payload_size, bytes, flags, segments);

    s_clean ();
    free (copy);
    return 0;
}
