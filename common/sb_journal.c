/*  sb_journal: the ingress's durable log, append-only segment files of
    CRC-checked records, each with its sequence number.

    Layout. DIR/EPOCH holds 32 lower-case hex digits (16 random bytes) and a
    newline, made when the journal is created. DIR/<first seq, 20 digits>.sbj
    are the segments: a 52-byte header ("SBJ1", u32 version 1, the epoch's 32
    digits, u64 first seq, u32 CRC-32 of the 48 bytes before it), then
    records: u32 payload length, u32 CRC-32 (zlib) of the seq and payload
    bytes, u64 seq, payload. Integers are little-endian, encoded byte by byte.

    Writing. An append only encodes the record into a memory buffer (and,
    when the current segment has reached segment_bytes, the header of a new
    one), so it does no I/O and cannot fail on the disk. The commit writes
    the buffer with one pwrite per segment touched and syncs each with one
    fdatasync: a group commit costs two system calls. When a commit rotates,
    the old segment is written and synced before the next file is created,
    so a segment that has a successor is complete; the directory is synced
    before the commit returns. When a write fails, the commit rolls back in
    place: the last segment is truncated to its committed size, segments
    made by this commit are removed, and their sequence numbers are given
    out again. If that clean-up fails too, the next commit retries it first
    and fails until it succeeds. When a sync fails (fdatasync of a segment,
    or fsync of the directory), the page cache of what the commit wrote is
    not trusted any more (after a failed writeback the kernel may drop the
    dirty pages and clear the error, so a second sync "succeeds"): the
    segment is never written again. The commit fails; segments it made are
    removed; the last segment is cut back to its committed size and kept,
    complete; and a fresh segment named after the first uncommitted seq
    (made under a temporary name, synced, renamed in, directory synced)
    takes the appends from then on, so the failed records' seqs are given
    out again and the sequence stays gap-free. Records at or past a
    segment's successor's name (the failed commit's, should storage get
    them after all, whole or partly written) are not read, nor reported as
    corruption: open and readers stop an older segment there. Until the fresh segment is made, every commit fails (503). A
    commit with nothing to write returns at once when healthy; when
    unhealthy it writes and syncs a scratch file (PROBE) so that a caller
    calling commit on a timer sees the disk recover.

    Opening. flock(DIR) admits one writer per directory. The last segment is
    scanned: a damaged header is rewritten (the name gives the first seq),
    and the sequence resumes after the last good record, unless a tail had
    to be cut. A cut tail (a crash in the middle of a write, or a flipped
    byte in the last record) may have held records already acknowledged
    and published when storage lost synced data: the journal cannot tell
    the two apart, and consumers drop a reused (epoch, seq) as a duplicate.
    So no seq that the cut bytes could have held is given out again: N
    bytes hold at most ceil (N / 16) records (a record is at least its
    header), the sequence resumes past them in a new segment named after
    its first seq, made durable before the tail is cut, and the gap
    between the two segments is "records missing" to readers. Logged at
    warn with the bytes cut and the seqs skipped. After a crash those seqs
    were never acknowledged, so skipping them only costs a gap. Nothing
    new is stored: the segment's name carries the skip to later opens.
    Earlier segments are complete by construction and only listed (except
    the one before an empty last segment, whose tail is cut if an open was
    interrupted between making the new segment and cutting the tail).
    Records lost past the end of the file, or a tail lost at a record
    boundary, leave nothing to see: their seqs are given out again.
    A directory without segments gets a new epoch, even if EPOCH exists (the
    sequence restarts at 1, so consumers must see a new journal); a missing
    or damaged EPOCH with segments present is restored from their headers.

    Corruption. A record with a bad CRC or an unexpected seq is skipped
    (logged at error) only when its length field leads to a good record with
    the next seq; otherwise it starts the torn tail. There is deliberately no
    byte-by-byte resynchronisation: payloads are request bodies from the
    internet, and a crafted body may contain bytes that parse as a record.
    Following length fields lands inside a payload only if a length was
    itself damaged.

    Retention. sb_journal_trim removes segments from the front only, so
    what is left is one run of seqs, consecutive but for the gaps that
    opening left after a cut tail. A segment's last seq is taken to be the
    one before the next segment's name: across a gap that counts the
    skipped seqs too, which holds a segment until the consumers acked past
    the gap and over-counts records dropped by the hard cap. A segment's age is
    its file's mtime: a segment with a successor is complete (see Writing)
    and never written again, so its mtime is the time its newest record was
    committed; a copy that does not keep mtimes makes segments look newer,
    which only keeps them longer. Age and size are weighed first; a segment
    they would remove but that holds a record above the consumers' acked
    seq stays (its bytes are reported as held), unless the journal is past
    the hard cap: then it goes too, with an error line and the number of
    records dropped unacknowledged. The writer calls trim between commits;
    the segment being written is never removed, whatever the policy.

    Readers share no state with the writer. They see bytes as soon as commit
    writes them, a moment before its fdatasync: a reader that must never see
    a record that a failed commit rolls back should stop at the writer's
    last committed seq (sb_journal_next_seq - 1 after a STORED commit).

    A reader whose segment is removed under it (retention) reads on from
    its open file, then lists the directory again and carries on at the
    first segment still there: the records removed are skipped, logged at
    info. A gap between two segments (seqs skipped after a cut tail, or a
    segment removed by hand) is logged at warn and read past: consumers
    see the seq jump and count the records as missing.

    Threads: one thread uses the writer; sb_journal_healthy, _next_seq,
    _first_seq, _size, _segments and _epoch may be called from any thread.
    A reader belongs to one thread.
*/
#include "sb_journal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "sb_log.h"
#include "sb_text.h"
#include "sb_time.h"

#define S_MAGIC "SBJ1"
#define S_VERSION 1u
#define S_HEADER_SIZE 52u           //  segment header bytes
#define S_RECORD_HEADER 16u         //  length, CRC, seq
#define S_EPOCH_LEN 32              //  hex digits
#define S_NAME_SIZE 25              //  20 digits, ".sbj", NUL
#define S_READ_CHUNK (256u * 1024)  //  read-ahead of scans and readers
#define S_BUF_KEEP (256u * 1024)    //  pending buffer kept between commits
#define S_FILE_MODE 0640            //  payloads are personal data
#define S_DIR_MODE 0750

// ---------------------------------------------------------------------------
//  Encoding

static void
s_put32 (uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

static void
s_put64 (uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

static uint32_t
s_get32 (const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t
s_get64 (const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

//  Lengths here are at most SB_JOURNAL_MAX_RECORD + 8, which fits uInt.
static uint32_t
s_crc (const uint8_t *p, size_t n)
{
    return (uint32_t) crc32 (0L, p, (uInt) n);
}

static void
s_segment_name (char name[S_NAME_SIZE], uint64_t first)
{
    snprintf (name, S_NAME_SIZE, "%020" PRIu64 ".sbj", first);
}

//  True when name is a segment's, with *first its first seq (>= 1).
static bool
s_segment_parse (const char *name, uint64_t *first)
{
    if (strlen (name) != 24 || strcmp (name + 20, ".sbj") != 0)
        return false;
    uint64_t value = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        unsigned digit = (unsigned) (name[i] - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    if (value == 0)
        return false;
    *first = value;
    return true;
}

static bool
s_epoch_valid (const char *text)
{
    for (int i = 0; i < S_EPOCH_LEN; i++)
        if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')))
            return false;
    return true;
}

static void
s_header_encode (uint8_t header[S_HEADER_SIZE], const char *epoch, uint64_t first)
{
    memcpy (header, S_MAGIC, 4);
    s_put32 (header + 4, S_VERSION);
    memcpy (header + 8, epoch, S_EPOCH_LEN);
    s_put64 (header + 40, first);
    s_put32 (header + 48, s_crc (header, 48));
}

typedef enum {
    S_HEADER_OK,       //  valid, epoch copied out
    S_HEADER_BAD,      //  damaged or not ours
    S_HEADER_VERSION,  //  valid, but a version we cannot read
} s_header_t;

static s_header_t
s_header_check (const uint8_t *header, uint64_t first, char epoch[S_EPOCH_LEN + 1])
{
    if (memcmp (header, S_MAGIC, 4) != 0 || s_get32 (header + 48) != s_crc (header, 48))
        return S_HEADER_BAD;
    if (s_get32 (header + 4) != S_VERSION)
        return S_HEADER_VERSION;
    if (s_get64 (header + 40) != first || !s_epoch_valid ((const char *) header + 8))
        return S_HEADER_BAD;
    memcpy (epoch, header + 8, S_EPOCH_LEN);
    epoch[S_EPOCH_LEN] = '\0';
    return S_HEADER_OK;
}

// ---------------------------------------------------------------------------
//  Files and directories

static int
s_write_all (int fd, const uint8_t *data, size_t size, uint64_t offset)
{
    while (size > 0) {
        ssize_t n = pwrite (fd, data, size, (off_t) offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        size -= (size_t) n;
        offset += (uint64_t) n;
    }
    return 0;
}

//  Bytes read (short only at the end of the file), or -1.
static ssize_t
s_read_all (int fd, uint8_t *data, size_t size, uint64_t offset)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread (fd, data + done, size - done, (off_t) (offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        done += (size_t) n;
    }
    return (ssize_t) done;
}

static int
s_mkdir_p (const char *dir)
{
    char *path = strdup (dir);
    if (!path)
        return -1;
    int rc = 0;
    for (char *slash = strchr (path + 1, '/'); slash && rc == 0; slash = strchr (slash + 1, '/')) {
        *slash = '\0';
        if (mkdir (path, S_DIR_MODE) != 0 && errno != EEXIST)
            rc = -1;
        *slash = '/';
    }
    if (rc == 0 && mkdir (path, S_DIR_MODE) != 0 && errno != EEXIST)
        rc = -1;
    int saved = errno;
    free (path);
    errno = saved;
    return rc;
}

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

//  The first seqs of the segments in dirfd, ascending: 0, or -1 with errno.
//  Caller owns *firsts_p.
static int
s_list (int dirfd, uint64_t **firsts_p, size_t *count_p)
{
    int fd = openat (dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *dir = fdopendir (fd);
    if (!dir) {
        int saved = errno;
        close (fd);
        errno = saved;
        return -1;
    }
    uint64_t *firsts = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    while (true) {
        errno = 0;
        struct dirent *entry = readdir (dir);
        if (!entry) {
            if (errno != 0)
                rc = -1;
            break;
        }
        uint64_t first;
        if (!s_segment_parse (entry->d_name, &first))
            continue;
        if (count == cap) {
            size_t new_cap = cap ? cap * 2 : 16;
            uint64_t *grown = realloc (firsts, new_cap * sizeof *grown);
            if (!grown) {
                errno = ENOMEM;
                rc = -1;
                break;
            }
            firsts = grown;
            cap = new_cap;
        }
        firsts[count++] = first;
    }
    int saved = errno;
    closedir (dir);
    if (rc != 0) {
        free (firsts);
        errno = saved;
        return -1;
    }
    if (count > 1)
        qsort (firsts, count, sizeof *firsts, s_cmp_u64);
    *firsts_p = firsts;
    *count_p = count;
    return 0;
}

// ---------------------------------------------------------------------------
//  Scanning records, shared by open and readers

typedef struct {
    int fd;            //  the segment file, -1 when none
    uint8_t *buf;      //  read-ahead of the file
    size_t cap;        //  bytes allocated at buf
    uint64_t buf_off;  //  file offset of buf[0]
    size_t buf_len;    //  bytes valid at buf
} s_cursor_t;

//  Forget what was read ahead: the file may have changed since.
static void
s_cursor_drop (s_cursor_t *cursor)
{
    cursor->buf_len = 0;
}

static void
s_cursor_close (s_cursor_t *cursor)
{
    if (cursor->fd >= 0)
        close (cursor->fd);
    cursor->fd = -1;
    free (cursor->buf);
    cursor->buf = NULL;
    cursor->cap = 0;
    cursor->buf_len = 0;
}

//  Makes the file's bytes [offset, offset + size) available at *data: returns
//  how many are (fewer at the end of the file), or -1 with errno. Pointers
//  from an earlier peek are invalid afterwards.
static ssize_t
s_cursor_peek (s_cursor_t *cursor, uint64_t offset, size_t size, const uint8_t **data)
{
    if (offset >= cursor->buf_off && offset - cursor->buf_off <= cursor->buf_len
        && size <= cursor->buf_len - (offset - cursor->buf_off)) {
        *data = cursor->buf + (offset - cursor->buf_off);
        return (ssize_t) size;
    }
    size_t want = size > S_READ_CHUNK ? size : S_READ_CHUNK;
    if (want > cursor->cap || cursor->cap > 4 * want) {
        uint8_t *buf = realloc (cursor->buf, want);
        if (!buf) {
            errno = ENOMEM;
            return -1;
        }
        cursor->buf = buf;
        cursor->cap = want;
    }
    cursor->buf_off = offset;
    cursor->buf_len = 0;
    ssize_t got = s_read_all (cursor->fd, cursor->buf, want, offset);
    if (got < 0)
        return -1;
    cursor->buf_len = (size_t) got;
    *data = cursor->buf;
    return (size_t) got < size ? got : (ssize_t) size;
}

typedef struct {
    uint32_t size;           //  payload bytes
    uint64_t seq;            //  as written in the record
    const uint8_t *payload;  //  in the cursor's buffer, when the record is good
} s_record_t;

typedef enum {
    S_REC_OK,     //  complete, CRC good
    S_REC_END,    //  no byte at offset
    S_REC_SHORT,  //  the file ends inside the record
    S_REC_BAD,    //  length over the cap, or CRC mismatch
    S_REC_ERROR,  //  read error, errno set
} s_rec_t;

static s_rec_t
s_record_read (s_cursor_t *cursor, uint64_t offset, s_record_t *record)
{
    const uint8_t *p;
    ssize_t got = s_cursor_peek (cursor, offset, S_RECORD_HEADER, &p);
    if (got < 0)
        return S_REC_ERROR;
    if (got == 0)
        return S_REC_END;
    if (got < (ssize_t) S_RECORD_HEADER)
        return S_REC_SHORT;
    record->size = s_get32 (p);
    uint32_t crc = s_get32 (p + 4);
    record->seq = s_get64 (p + 8);
    record->payload = NULL;
    if (record->size > SB_JOURNAL_MAX_RECORD)
        return S_REC_BAD;
    size_t total = S_RECORD_HEADER + record->size;
    got = s_cursor_peek (cursor, offset, total, &p);
    if (got < 0)
        return S_REC_ERROR;
    if ((size_t) got < total)
        return S_REC_SHORT;
    if (s_crc (p + 8, 8 + (size_t) record->size) != crc)
        return S_REC_BAD;
    record->payload = p + S_RECORD_HEADER;
    return S_REC_OK;
}

typedef enum {
    S_STEP_RECORD,  //  a good record with the expected seq
    S_STEP_SKIP,    //  a corrupt record followed by a good one with the next seq
    S_STEP_END,     //  the file ends cleanly here
    S_STEP_TORN,    //  an incomplete or bad record with nothing good after it
    S_STEP_ERROR,   //  the file cannot be read, errno set
} s_step_t;

//  Looks at the record at offset, which should have seq expect; *next gets
//  the offset of the record after it (RECORD) or of the good one (SKIP).
static s_step_t
s_step (s_cursor_t *cursor, uint64_t offset, uint64_t expect, s_record_t *record, uint64_t *next)
{
    s_rec_t rc = s_record_read (cursor, offset, record);
    if (rc == S_REC_ERROR)
        return S_STEP_ERROR;
    if (rc == S_REC_END)
        return S_STEP_END;
    if (rc == S_REC_OK && record->seq == expect) {
        *next = offset + S_RECORD_HEADER + record->size;
        return S_STEP_RECORD;
    }
    if (rc == S_REC_SHORT || record->size > SB_JOURNAL_MAX_RECORD)
        return S_STEP_TORN;
    uint64_t after = offset + S_RECORD_HEADER + record->size;
    s_record_t follow;
    rc = s_record_read (cursor, after, &follow);
    if (rc == S_REC_ERROR)
        return S_STEP_ERROR;
    if (rc == S_REC_OK && follow.seq == expect + 1) {
        *next = after;
        return S_STEP_SKIP;
    }
    return S_STEP_TORN;
}

// ---------------------------------------------------------------------------
//  The writer

typedef struct {
    uint64_t first;  //  seq of its first record, as in its name
    uint64_t size;   //  bytes committed
} s_segment_t;

typedef struct {
    uint64_t first;  //  seq of its first record
    size_t start;    //  where its bytes (header first) begin in the buffer
} s_pending_t;

struct sb_journal_t {
    char *dir;                     //  the directory, for log lines
    int dirfd;                     //  the directory, open and flock'ed
    uint64_t segment_bytes;        //  rotate once a segment has this many bytes
    char epoch[S_EPOCH_LEN + 1];   //  32 hex digits
    s_segment_t *segs;             //  committed segments, ascending
    size_t nsegs;                  //  entries in segs
    size_t segs_cap;               //  entries allocated in segs
    int fd;                        //  the last committed segment, read-write
    uint64_t committed_seq;        //  next_seq as of the last commit
    _Atomic uint64_t next_seq;     //  seq of the next append
    uint8_t *buf;                  //  appended records not yet written
    size_t buf_len;                //  bytes used in buf
    size_t buf_cap;                //  bytes allocated in buf
    s_pending_t *pend;             //  segments begun since the last commit
    size_t npend;                  //  entries in pend
    size_t pend_cap;               //  entries allocated in pend
    uint64_t tail_first;           //  first seq of the segment appends go to
    uint64_t tail_size;            //  its size, pending bytes included
    bool dirty;                    //  last segment may hold bytes past its size
    bool orphans;                  //  a failed commit left segment files behind
    bool abandon;                  //  a sync failed: start a fresh segment (s_fresh_segment)
    uint64_t failures;             //  failed commits since last healthy
    atomic_bool healthy;           //  last commit succeeded
    _Atomic uint64_t total_bytes;  //  committed bytes in all segments
    _Atomic size_t segment_count;  //  committed segment files
    _Atomic uint64_t first_seq;    //  first seq of the oldest segment
};

static uint64_t
s_next (const sb_journal_t *self)
{
    return atomic_load_explicit (&self->next_seq, memory_order_relaxed);
}

static void
s_set_next (sb_journal_t *self, uint64_t seq)
{
    atomic_store_explicit (&self->next_seq, seq, memory_order_relaxed);
}

static void
s_publish_size (sb_journal_t *self)
{
    uint64_t total = 0;
    for (size_t i = 0; i < self->nsegs; i++)
        total += self->segs[i].size;
    atomic_store_explicit (&self->total_bytes, total, memory_order_relaxed);
    atomic_store_explicit (&self->segment_count, self->nsegs, memory_order_relaxed);
    atomic_store_explicit (&self->first_seq, self->nsegs ? self->segs[0].first : s_next (self),
                           memory_order_relaxed);
}

static int
s_random (uint8_t *data, size_t size)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = getrandom (data + done, size - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        done += (size_t) n;
    }
    if (done == size)
        return 0;
    //  No getrandom (old kernel, seccomp): the device does the same.
    int fd = open ("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t got = s_read_all (fd, data, size, 0);
    close (fd);
    return got == (ssize_t) size ? 0 : -1;
}

//  Writes self->epoch to DIR/EPOCH atomically: temp file, fsync, rename, fsync
//  of the directory.
static int
s_epoch_write (sb_journal_t *self)
{
    char text[S_EPOCH_LEN + 1];
    memcpy (text, self->epoch, S_EPOCH_LEN);
    text[S_EPOCH_LEN] = '\n';
    const char *op = "create EPOCH.tmp";
    int fd =
        openat (self->dirfd, "EPOCH.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, S_FILE_MODE);
    if (fd < 0)
        goto fail;
    op = "write EPOCH.tmp";
    if (s_write_all (fd, (const uint8_t *) text, sizeof text, 0) != 0)
        goto fail;
    op = "fsync EPOCH.tmp";
    if (fsync (fd) != 0)
        goto fail;
    close (fd);
    fd = -1;
    op = "rename EPOCH.tmp";
    if (renameat (self->dirfd, "EPOCH.tmp", self->dirfd, "EPOCH") != 0)
        goto fail;
    op = "fsync directory";
    if (fsync (self->dirfd) != 0)
        goto fail;
    return 0;
fail:;
    int saved = errno;
    char ebuf[128];
    sb_error ("journal", "cannot write the journal epoch op=\"%s\" dir=%s errno=%d error=\"%s\"",
              op, self->dir, saved, sb_strerror (saved, ebuf, sizeof ebuf));
    if (fd >= 0)
        close (fd);
    return -1;
}

//  1: self->epoch read from DIR/EPOCH; 0: no EPOCH; -1: EPOCH damaged
//  (logged); -2: cannot read it (logged).
static int
s_epoch_read (sb_journal_t *self)
{
    char ebuf[128];
    int fd = openat (self->dirfd, "EPOCH", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        sb_error ("journal", "cannot open the journal epoch dir=%s errno=%d error=\"%s\"",
                  self->dir, errno, sb_strerror (errno, ebuf, sizeof ebuf));
        return -2;
    }
    uint8_t text[S_EPOCH_LEN + 2];
    ssize_t got = s_read_all (fd, text, sizeof text, 0);
    int saved = errno;
    close (fd);
    if (got < 0) {
        sb_error ("journal", "cannot read the journal epoch dir=%s errno=%d error=\"%s\"",
                  self->dir, saved, sb_strerror (saved, ebuf, sizeof ebuf));
        return -2;
    }
    if (!(got == S_EPOCH_LEN || (got == S_EPOCH_LEN + 1 && text[S_EPOCH_LEN] == '\n'))
        || !s_epoch_valid ((const char *) text)) {
        sb_warn ("journal", "journal EPOCH file is damaged dir=%s bytes=%zd", self->dir, got);
        return -1;
    }
    memcpy (self->epoch, text, S_EPOCH_LEN);
    self->epoch[S_EPOCH_LEN] = '\0';
    return 1;
}

//  Takes the epoch from the newest segment with a good header. 0 or -1.
static int
s_epoch_recover (sb_journal_t *self, const uint64_t *firsts, size_t count)
{
    for (size_t i = count; i-- > 0;) {
        char name[S_NAME_SIZE];
        s_segment_name (name, firsts[i]);
        int fd = openat (self->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        uint8_t header[S_HEADER_SIZE];
        ssize_t got = s_read_all (fd, header, sizeof header, 0);
        close (fd);
        if (got == (ssize_t) sizeof header
            && s_header_check (header, firsts[i], self->epoch) == S_HEADER_OK)
            return 0;
    }
    return -1;
}

//  Opens a new empty segment file for writing: fd, or -1 with errno.
static int
s_segment_open_new (sb_journal_t *self, uint64_t first)
{
    char name[S_NAME_SIZE];
    s_segment_name (name, first);
    return openat (self->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, S_FILE_MODE);
}

static int
s_segs_reserve (sb_journal_t *self, size_t count)
{
    if (count <= self->segs_cap)
        return 0;
    size_t cap = self->segs_cap ? self->segs_cap : 16;
    while (cap < count)
        cap *= 2;
    s_segment_t *segs = realloc (self->segs, cap * sizeof *segs);
    if (!segs)
        return -1;
    self->segs = segs;
    self->segs_cap = cap;
    return 0;
}

//  The first segment of a new journal, durable with its directory entry.
static int
s_create_first (sb_journal_t *self)
{
    uint8_t header[S_HEADER_SIZE];
    s_header_encode (header, self->epoch, 1);
    const char *op = "create segment";
    self->fd = s_segment_open_new (self, 1);
    if (self->fd < 0)
        goto fail;
    op = "write segment";
    if (s_write_all (self->fd, header, sizeof header, 0) != 0)
        goto fail;
    op = "fdatasync segment";
    if (fdatasync (self->fd) != 0)
        goto fail;
    op = "fsync directory";
    if (fsync (self->dirfd) != 0)
        goto fail;
    self->segs[0].first = 1;
    self->segs[0].size = S_HEADER_SIZE;
    self->nsegs = 1;
    s_set_next (self, 1);
    return 0;
fail:;
    char ebuf[128];
    sb_error ("journal", "cannot create the journal op=\"%s\" dir=%s errno=%d error=\"%s\"", op,
              self->dir, errno, sb_strerror (errno, ebuf, sizeof ebuf));
    return -1;
}

//  Scans a segment's records from its header on. A corrupt record that a
//  good one with the next seq follows is skipped (logged at error). *offset
//  gets the end of the last good record, *expect the seq after it, *torn
//  whether bytes that are no good record follow it. Records from seq limit
//  on (the next segment's name), good or damaged, count as such bytes: a
//  failed commit's, superseded by a fresh segment (s_fresh_segment). 0, or -1 with errno
//  when the file cannot be read.
static int
s_scan (s_cursor_t *cursor, const char *name, uint64_t first, uint64_t limit, uint64_t *offset_p,
        uint64_t *expect_p, bool *torn_p)
{
    uint64_t offset = S_HEADER_SIZE;
    uint64_t expect = first;
    while (true) {
        s_record_t record;
        uint64_t next = 0;
        s_step_t step = s_step (cursor, offset, expect, &record, &next);
        //  Before the switch: a damaged record past the limit is the
        //  failed commit's too, not corruption to skip and report.
        if ((step == S_STEP_RECORD || step == S_STEP_SKIP) && expect >= limit)
            step = S_STEP_TORN;
        if (step == S_STEP_RECORD) {
            offset = next;
            expect++;
            continue;
        }
        if (step == S_STEP_SKIP) {
            sb_error ("journal",
                      "journal corrupt record skipped segment=%s seq=%" PRIu64 " offset=%" PRIu64
                      " bytes=%" PRIu64,
                      name, expect, offset, next - offset);
            offset = next;
            expect++;
            continue;
        }
        if (step == S_STEP_ERROR)
            return -1;
        *offset_p = offset;
        *expect_p = expect;
        *torn_p = step == S_STEP_TORN;
        return 0;
    }
}

//  The last segment holds no record. If an open was interrupted between
//  making it (after a torn tail, see s_open_last) and cutting that tail,
//  the segment before still has the tail: cut it now. Its records' seqs
//  are all below the last segment's name, so none is given out again.
//  Normally the segment before is complete and this only reads it. A
//  header we cannot vouch for is left to the readers, which report it.
//  0, or -1 (logged).
static int
s_repair_previous (sb_journal_t *self)
{
    s_segment_t *previous = &self->segs[self->nsegs - 2];
    char name[S_NAME_SIZE], ebuf[128];
    s_segment_name (name, previous->first);
    s_cursor_t cursor = {.fd = -1};
    const char *op = "open segment";
    cursor.fd = openat (self->dirfd, name, O_RDWR | O_CLOEXEC);
    if (cursor.fd < 0)
        goto fail;
    op = "stat segment";
    struct stat st;
    if (fstat (cursor.fd, &st) != 0)
        goto fail;
    op = "read segment";
    const uint8_t *header;
    ssize_t got = s_cursor_peek (&cursor, 0, S_HEADER_SIZE, &header);
    if (got < 0)
        goto fail;
    char epoch[S_EPOCH_LEN + 1];
    if (got < (ssize_t) S_HEADER_SIZE
        || s_header_check (header, previous->first, epoch) != S_HEADER_OK
        || strcmp (epoch, self->epoch) != 0) {
        s_cursor_close (&cursor);
        return 0;
    }
    uint64_t offset, expect;
    bool torn;
    if (s_scan (&cursor, name, previous->first, self->segs[self->nsegs - 1].first, &offset, &expect,
                &torn)
        != 0)
        goto fail;
    if (torn) {
        op = "truncate segment";
        if (ftruncate (cursor.fd, (off_t) offset) != 0)
            goto fail;
        op = "fdatasync segment";
        if (fdatasync (cursor.fd) != 0)
            goto fail;
        previous->size = offset;
        sb_warn ("journal",
                 "journal torn tail truncated before an empty last segment segment=%s "
                 "seq=%" PRIu64 " offset=%" PRIu64 " bytes=%" PRIu64 " next_segment_seq=%" PRIu64,
                 name, expect, offset, (uint64_t) st.st_size - offset,
                 self->segs[self->nsegs - 1].first);
    }
    s_cursor_close (&cursor);
    return 0;
fail:;
    int saved = errno;
    sb_error ("journal",
              "cannot open the journal op=\"%s\" segment=%s dir=%s errno=%d "
              "error=\"%s\"",
              op, name, self->dir, saved, sb_strerror (saved, ebuf, sizeof ebuf));
    s_cursor_close (&cursor);
    return -1;
}

//  Opens the last segment (segs[nsegs - 1]), repairs its header and tail,
//  and sets the sequence from its records.
//
//  A tail that must be cut may have held records that were acknowledged
//  and published: storage that lost synced data looks just like a crash
//  in the middle of a write, and consumers have stored those seqs. So the
//  seqs the cut bytes could have held are never given out again: each
//  record is at least a record header, so N bytes hold at most
//  ceil (N / S_RECORD_HEADER) records, the first of them with the seq
//  after the last good record. The sequence resumes past them, in a new
//  segment named after its first seq (every segment stays consecutive
//  inside; readers see the gap between segments as records missing). The
//  new segment is made durable before the tail is cut, so a crash in
//  between cannot give the old seqs back; the tail it leaves is cut by
//  the next open (s_repair_previous). A torn write from a crash was never
//  acknowledged, so its skipped seqs were never seen by anyone: harmless.
static int
s_open_last (sb_journal_t *self)
{
    s_segment_t *last = &self->segs[self->nsegs - 1];
    uint64_t first = last->first;
    char name[S_NAME_SIZE], ebuf[128];
    s_segment_name (name, first);
    s_cursor_t cursor = {.fd = -1};
    int new_fd = -1;
    const char *op = "open segment";
    cursor.fd = openat (self->dirfd, name, O_RDWR | O_CLOEXEC);
    if (cursor.fd < 0)
        goto fail;
    op = "stat segment";
    struct stat st;
    if (fstat (cursor.fd, &st) != 0)
        goto fail;
    uint64_t file_size = (uint64_t) st.st_size;
    bool sync = false;
    uint8_t fresh[S_HEADER_SIZE];
    s_header_encode (fresh, self->epoch, first);
    const uint8_t *header;
    op = "read segment";
    ssize_t got = s_cursor_peek (&cursor, 0, S_HEADER_SIZE, &header);
    if (got < 0)
        goto fail;
    uint64_t offset = S_HEADER_SIZE;
    uint64_t expect = first;
    bool torn = false;
    if (got < (ssize_t) S_HEADER_SIZE) {
        //  No record can start before the header's end: nothing to skip.
        sb_warn ("journal", "journal torn segment header rewritten segment=%s bytes=%" PRIu64, name,
                 file_size);
        op = "rewrite segment header";
        if (ftruncate (cursor.fd, 0) != 0 || s_write_all (cursor.fd, fresh, sizeof fresh, 0) != 0)
            goto fail;
        sync = true;
    }
    else {
        char epoch[S_EPOCH_LEN + 1];
        s_header_t check = s_header_check (header, first, epoch);
        if (check == S_HEADER_VERSION) {
            sb_error ("journal",
                      "journal segment has an unsupported version segment=%s "
                      "version=%" PRIu32 " dir=%s",
                      name, s_get32 (header + 4), self->dir);
            s_cursor_close (&cursor);
            return -1;
        }
        if (check == S_HEADER_OK && strcmp (epoch, self->epoch) != 0) {
            sb_error ("journal",
                      "journal segment belongs to another epoch segment=%s epoch=%s "
                      "expected=%s dir=%s",
                      name, epoch, self->epoch, self->dir);
            s_cursor_close (&cursor);
            return -1;
        }
        if (check == S_HEADER_BAD) {
            sb_error ("journal", "journal segment header damaged, rewritten segment=%s dir=%s",
                      name, self->dir);
            op = "rewrite segment header";
            if (s_write_all (cursor.fd, fresh, sizeof fresh, 0) != 0)
                goto fail;
            s_cursor_drop (&cursor);
            sync = true;
        }
        op = "read segment";
        if (s_scan (&cursor, name, first, UINT64_MAX, &offset, &expect, &torn) != 0)
            goto fail;
    }
    uint64_t next_seq = expect;
    if (torn) {
        uint64_t cut = file_size - offset;
        uint64_t skipped = cut / S_RECORD_HEADER + (cut % S_RECORD_HEADER != 0);
        if (skipped > UINT64_MAX - expect) {
            sb_error ("journal", "journal sequence exhausted segment=%s seq=%" PRIu64 " dir=%s",
                      name, expect, self->dir);
            s_cursor_close (&cursor);
            return -1;
        }
        next_seq = expect + skipped;
        uint8_t next_header[S_HEADER_SIZE];
        s_header_encode (next_header, self->epoch, next_seq);
        op = "create segment";
        new_fd = s_segment_open_new (self, next_seq);
        if (new_fd < 0)
            goto fail;
        op = "write segment";
        if (s_write_all (new_fd, next_header, sizeof next_header, 0) != 0)
            goto fail;
        op = "fdatasync segment";
        if (fdatasync (new_fd) != 0)
            goto fail;
        op = "fsync directory";
        if (fsync (self->dirfd) != 0)
            goto fail;
        op = "truncate segment";
        if (ftruncate (cursor.fd, (off_t) offset) != 0)
            goto fail;
        sync = true;
        char next_name[S_NAME_SIZE];
        s_segment_name (next_name, next_seq);
        sb_warn ("journal",
                 "journal torn tail truncated, the seqs it could hold skipped "
                 "segment=%s seq=%" PRIu64 " offset=%" PRIu64 " bytes=%" PRIu64
                 " seqs_skipped=%" PRIu64 " next_seq=%" PRIu64 " new_segment=%s",
                 name, expect, offset, cut, skipped, next_seq, next_name);
    }
    op = "fdatasync segment";
    if (sync && fdatasync (cursor.fd) != 0)
        goto fail;
    last->size = offset;
    if (new_fd >= 0) {
        s_cursor_close (&cursor);
        self->fd = new_fd;
        self->segs[self->nsegs].first = next_seq;
        self->segs[self->nsegs].size = S_HEADER_SIZE;
        self->nsegs++;
    }
    else {
        self->fd = cursor.fd;
        cursor.fd = -1;
        s_cursor_close (&cursor);
        if (expect == first && self->nsegs > 1 && s_repair_previous (self) != 0)
            return -1;
    }
    s_set_next (self, next_seq);
    return 0;
fail:;
    int saved = errno;
    sb_error ("journal",
              "cannot open the journal op=\"%s\" segment=%s dir=%s errno=%d "
              "error=\"%s\"",
              op, name, self->dir, saved, sb_strerror (saved, ebuf, sizeof ebuf));
    if (new_fd >= 0)
        close (new_fd);  //  the segment stays: it carries the skip to the next open
    s_cursor_close (&cursor);
    return -1;
}

sb_journal_t *
sb_journal_open (const char *dir, uint64_t segment_bytes)
{
    char ebuf[128];
    uint64_t *firsts = NULL;
    size_t count = 0;
    sb_journal_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error ("journal", "cannot open the journal: out of memory dir=%s", dir);
        return NULL;
    }
    self->dirfd = -1;
    self->fd = -1;
    self->segment_bytes = segment_bytes;
    atomic_init (&self->next_seq, 1);
    atomic_init (&self->healthy, true);
    atomic_init (&self->total_bytes, 0);
    atomic_init (&self->segment_count, 0);
    atomic_init (&self->first_seq, 1);
    self->dir = strdup (dir);
    const char *op = "allocate";
    if (!self->dir)
        goto fail_errno;
    op = "create directory";
    if (s_mkdir_p (dir) != 0)
        goto fail_errno;
    op = "open directory";
    self->dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->dirfd < 0)
        goto fail_errno;
    if (flock (self->dirfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            sb_error ("journal", "journal is in use by another writer dir=%s", dir);
            goto fail;
        }
        op = "lock directory";
        goto fail_errno;
    }
    op = "list directory";
    if (s_list (self->dirfd, &firsts, &count) != 0)
        goto fail_errno;
    op = "allocate";
    //  One more than listed: opening may start a segment (s_open_last).
    if (s_segs_reserve (self, count + 1) != 0)
        goto fail_errno;
    int epoch = s_epoch_read (self);
    if (epoch == -2)
        goto fail;
    if (count == 0) {
        if (epoch != 0)
            sb_warn ("journal", "journal has an EPOCH but no segments: new epoch dir=%s", dir);
        uint8_t raw[S_EPOCH_LEN / 2];
        if (s_random (raw, sizeof raw) != 0) {
            op = "read random bytes";
            goto fail_errno;
        }
        sb_text_hex (raw, sizeof raw, self->epoch);
        if (s_epoch_write (self) != 0 || s_create_first (self) != 0)
            goto fail;
        sb_info ("journal", "journal created dir=%s epoch=%s", dir, self->epoch);
    }
    else {
        if (epoch != 1) {
            if (s_epoch_recover (self, firsts, count) != 0) {
                sb_error ("journal",
                          "journal has segments but no usable EPOCH, and no segment "
                          "header names one dir=%s",
                          dir);
                goto fail;
            }
            sb_warn ("journal", "journal EPOCH restored from a segment header dir=%s epoch=%s", dir,
                     self->epoch);
            if (s_epoch_write (self) != 0)
                goto fail;
        }
        for (size_t i = 0; i < count; i++) {
            self->segs[i].first = firsts[i];
            self->segs[i].size = 0;
            if (i + 1 < count) {
                char name[S_NAME_SIZE];
                s_segment_name (name, firsts[i]);
                struct stat st;
                op = "stat segment";
                if (fstatat (self->dirfd, name, &st, 0) != 0)
                    goto fail_errno;
                self->segs[i].size = (uint64_t) st.st_size;
            }
        }
        self->nsegs = count;
        if (s_open_last (self) != 0)
            goto fail;
        sb_info ("journal", "journal opened dir=%s epoch=%s segments=%zu next_seq=%" PRIu64, dir,
                 self->epoch, self->nsegs, s_next (self));
    }
    free (firsts);
    self->committed_seq = s_next (self);
    self->tail_first = self->segs[self->nsegs - 1].first;
    self->tail_size = self->segs[self->nsegs - 1].size;
    s_publish_size (self);
    return self;
fail_errno:;
    int saved = errno;
    sb_error ("journal", "cannot open the journal op=\"%s\" dir=%s errno=%d error=\"%s\"", op, dir,
              saved, sb_strerror (saved, ebuf, sizeof ebuf));
fail:
    free (firsts);
    sb_journal_destroy (&self);
    return NULL;
}

void
sb_journal_destroy (sb_journal_t **self_p)
{
    sb_journal_t *self = *self_p;
    if (!self)
        return;
    if (self->buf_len > 0)
        sb_debug ("journal", "journal closed with uncommitted records dropped count=%" PRIu64,
                  s_next (self) - self->committed_seq);
    if (self->fd >= 0)
        close (self->fd);
    if (self->dirfd >= 0)
        close (self->dirfd);  //  releases the flock
    free (self->dir);
    free (self->segs);
    free (self->buf);
    free (self->pend);
    free (self);
    *self_p = NULL;
}

//  Room for one more record of size bytes, and a segment header if rotate.
static int
s_reserve (sb_journal_t *self, size_t size, bool rotate)
{
    size_t need = self->buf_len + S_RECORD_HEADER + size + (rotate ? S_HEADER_SIZE : 0);
    if (need > self->buf_cap) {
        size_t cap = self->buf_cap ? self->buf_cap : 64 * 1024;
        while (cap < need)
            cap *= 2;
        uint8_t *buf = realloc (self->buf, cap);
        if (!buf)
            return -1;
        self->buf = buf;
        self->buf_cap = cap;
    }
    if (rotate) {
        if (self->npend == self->pend_cap) {
            size_t cap = self->pend_cap ? self->pend_cap * 2 : 4;
            s_pending_t *pend = realloc (self->pend, cap * sizeof *pend);
            if (!pend)
                return -1;
            self->pend = pend;
            self->pend_cap = cap;
        }
        //  So that a successful commit cannot fail to record its segments.
        if (s_segs_reserve (self, self->nsegs + self->npend + 1) != 0)
            return -1;
    }
    return 0;
}

sb_journal_result_t
sb_journal_append (sb_journal_t *self, const void *data, size_t size, uint64_t *seq)
{
    assert (self);
    assert (data || size == 0);
    if (size > SB_JOURNAL_MAX_RECORD) {
        sb_warn ("journal", "journal record refused: too large size=%zu max=%u", size,
                 SB_JOURNAL_MAX_RECORD);
        return SB_JOURNAL_NOT_STORED;
    }
    uint64_t next = s_next (self);
    //  A segment gets at least one record, so no two share a name.
    bool rotate = self->tail_size >= self->segment_bytes && next > self->tail_first;
    if (s_reserve (self, size, rotate) != 0) {
        sb_error ("journal", "journal record refused: out of memory size=%zu", size);
        return SB_JOURNAL_NOT_STORED;
    }
    if (rotate) {
        self->pend[self->npend].first = next;
        self->pend[self->npend].start = self->buf_len;
        self->npend++;
        s_header_encode (self->buf + self->buf_len, self->epoch, next);
        self->buf_len += S_HEADER_SIZE;
        self->tail_first = next;
        self->tail_size = S_HEADER_SIZE;
    }
    uint8_t *p = self->buf + self->buf_len;
    s_put32 (p, (uint32_t) size);
    s_put64 (p + 8, next);
    if (size > 0)
        memcpy (p + S_RECORD_HEADER, data, size);
    s_put32 (p + 4, s_crc (p + 8, 8 + size));
    self->buf_len += S_RECORD_HEADER + size;
    self->tail_size += S_RECORD_HEADER + size;
    s_set_next (self, next + 1);
    if (seq)
        *seq = next;
    return SB_JOURNAL_STORED;
}

uint64_t
sb_journal_next_seq (const sb_journal_t *self)
{
    return s_next (self);
}

static void
s_forget_pending (sb_journal_t *self)
{
    const s_segment_t *last = &self->segs[self->nsegs - 1];
    s_set_next (self, self->committed_seq);
    self->tail_first = last->first;
    self->tail_size = last->size;
    if (self->abandon) {
        //  Appends go to the fresh segment the next commit makes first.
        self->tail_first = self->committed_seq;
        self->tail_size = S_HEADER_SIZE;
    }
    self->buf_len = 0;
    self->npend = 0;
}

//  Removes segment files beyond the last committed one: 0 or -1 (errno).
static int
s_remove_orphans (sb_journal_t *self)
{
    uint64_t *firsts;
    size_t count;
    if (s_list (self->dirfd, &firsts, &count) != 0)
        return -1;
    int rc = 0;
    uint64_t last = self->segs[self->nsegs - 1].first;
    for (size_t i = 0; i < count; i++) {
        if (firsts[i] <= last)
            continue;
        char name[S_NAME_SIZE];
        s_segment_name (name, firsts[i]);
        if (unlinkat (self->dirfd, name, 0) != 0 && errno != ENOENT)
            rc = -1;
    }
    int saved = errno;
    free (firsts);
    if (rc == 0 && fsync (self->dirfd) != 0)
        return -1;
    errno = saved;
    return rc;
}

//  Undoes a failed commit. What cannot be undone now is left for the next
//  commit (dirty, orphans).
static void
s_rollback (sb_journal_t *self, bool wrote_last, size_t created)
{
    if (created > 0) {
        for (size_t k = 0; k < created; k++) {
            char name[S_NAME_SIZE];
            s_segment_name (name, self->pend[k].first);
            if (unlinkat (self->dirfd, name, 0) != 0 && errno != ENOENT)
                self->orphans = true;
        }
        if (fsync (self->dirfd) != 0)
            self->orphans = true;
    }
    if (wrote_last && ftruncate (self->fd, (off_t) self->segs[self->nsegs - 1].size) != 0)
        self->dirty = true;
    s_forget_pending (self);
}

static void
s_report_failure (sb_journal_t *self, const char *op, int err)
{
    self->failures++;
    char ebuf[128];
    if (atomic_load (&self->healthy)) {
        atomic_store (&self->healthy, false);
        sb_error ("journal",
                  "journal not writable, uncommitted records rolled back op=\"%s\" "
                  "dir=%s next_seq=%" PRIu64 " errno=%d error=\"%s\"",
                  op, self->dir, self->committed_seq, err, sb_strerror (err, ebuf, sizeof ebuf));
    }
    else
        sb_debug ("journal",
                  "journal still not writable op=\"%s\" failures=%" PRIu64 " errno=%d error=\"%s\"",
                  op, self->failures, err, sb_strerror (err, ebuf, sizeof ebuf));
}

static void
s_report_success (sb_journal_t *self)
{
    if (!atomic_load (&self->healthy)) {
        atomic_store (&self->healthy, true);
        sb_info ("journal", "journal writable again dir=%s failures=%" PRIu64, self->dir,
                 self->failures);
    }
    self->failures = 0;
}

//  Nothing to commit while unhealthy: see whether the disk takes data again.
static sb_journal_result_t
s_probe (sb_journal_t *self)
{
    uint8_t block[4096];
    memset (block, 0, sizeof block);
    const char *op = "create PROBE";
    int fd = openat (self->dirfd, "PROBE", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, S_FILE_MODE);
    bool ok = fd >= 0;
    if (ok) {
        op = "write PROBE";
        ok = s_write_all (fd, block, sizeof block, 0) == 0;
    }
    if (ok) {
        op = "fdatasync PROBE";
        ok = fdatasync (fd) == 0;
    }
    int saved = errno;
    if (fd >= 0) {
        close (fd);
        unlinkat (self->dirfd, "PROBE", 0);
    }
    if (!ok) {
        s_report_failure (self, op, saved);
        return SB_JOURNAL_NOT_STORED;
    }
    s_report_success (self);
    return SB_JOURNAL_STORED;
}

//  After a failed fdatasync or directory fsync, what this commit wrote is
//  in an unknown state, and the page cache of those files can no longer
//  be trusted: the kernel may have dropped the dirty pages and cleared the
//  error, so a second sync would succeed without writing them. So the
//  journal never writes to those files again. Segments the commit made
//  are removed; the last committed segment is cut back to its committed
//  size and left as it is, complete; and a fresh segment named after the
//  first uncommitted seq (the failed records' seqs are given out again, so
//  the sequence stays gap-free) takes the appends from now on. It is made
//  under a temporary name, synced, and renamed in (over the last segment
//  when that held no committed record), and the directory is synced: once
//  it exists, records at or past its name in an older segment (the failed
//  commit's, should they reach the disk after all) are no longer read
//  (readers and open stop an older segment at the next segment's name).
//  0, or -1 with errno and *op set: then self->abandon stays set and the
//  next commit tries again first.
static int
s_fresh_segment (sb_journal_t *self, const char **op)
{
    uint64_t seq = self->committed_seq;
    *op = "reserve segment";
    //  One more, and still room for the segments pending appends begin.
    if (s_segs_reserve (self, self->nsegs + self->npend + 2) != 0)
        return -1;
    s_segment_t *last = &self->segs[self->nsegs - 1];
    bool replace = last->first == seq;  //  it holds no committed record
    *op = "remove segments of a failed commit";
    if (s_remove_orphans (self) != 0)
        return -1;
    *op = "truncate segment";
    if (!replace && ftruncate (self->fd, (off_t) last->size) != 0)
        return -1;
    uint8_t header[S_HEADER_SIZE];
    s_header_encode (header, self->epoch, seq);
    char name[S_NAME_SIZE];
    s_segment_name (name, seq);
    *op = "create SEGMENT.tmp";
    int fd =
        openat (self->dirfd, "SEGMENT.tmp", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, S_FILE_MODE);
    if (fd < 0)
        return -1;
    *op = "write SEGMENT.tmp";
    if (s_write_all (fd, header, sizeof header, 0) != 0)
        goto fail;
    *op = "fdatasync SEGMENT.tmp";
    if (fdatasync (fd) != 0)
        goto fail;
    *op = "rename SEGMENT.tmp";
    if (renameat (self->dirfd, "SEGMENT.tmp", self->dirfd, name) != 0)
        goto fail;
    *op = "fsync directory";
    if (fsync (self->dirfd) != 0)
        goto fail;
    close (self->fd);
    self->fd = fd;
    if (!replace)
        last = &self->segs[self->nsegs++];
    last->first = seq;
    last->size = S_HEADER_SIZE;
    if (self->npend == 0) {
        //  Appends made before this go to the fresh segment now.
        self->tail_first = seq;
        self->tail_size = S_HEADER_SIZE + self->buf_len;
    }
    self->abandon = self->dirty = self->orphans = false;
    s_publish_size (self);
    sb_warn ("journal",
             "journal segment abandoned after a failed sync, appends go to a fresh "
             "segment dir=%s segment=%s next_seq=%" PRIu64,
             self->dir, name, seq);
    return 0;
fail:;
    int saved = errno;
    close (fd);
    errno = saved;
    return -1;
}

sb_journal_result_t
sb_journal_commit (sb_journal_t *self)
{
    assert (self);
    const char *op = "truncate segment";
    if (self->abandon) {
        if (s_fresh_segment (self, &op) != 0) {
            int saved = errno;
            s_forget_pending (self);
            s_report_failure (self, op, saved);
            return SB_JOURNAL_NOT_STORED;
        }
        s_report_success (self);
    }
    if (self->dirty) {
        if (ftruncate (self->fd, (off_t) self->segs[self->nsegs - 1].size) != 0) {
            int saved = errno;
            s_forget_pending (self);
            s_report_failure (self, op, saved);
            return SB_JOURNAL_NOT_STORED;
        }
        self->dirty = false;
    }
    if (self->orphans) {
        op = "remove segments of a failed commit";
        if (s_remove_orphans (self) != 0) {
            int saved = errno;
            s_forget_pending (self);
            s_report_failure (self, op, saved);
            return SB_JOURNAL_NOT_STORED;
        }
        self->orphans = false;
    }
    if (self->buf_len == 0)
        return atomic_load (&self->healthy) ? SB_JOURNAL_STORED : s_probe (self);

    s_segment_t *last = &self->segs[self->nsegs - 1];
    int fd = self->fd;  //  the file being written
    int new_fd = -1;    //  the newest segment made by this commit
    uint64_t offset = last->size;
    bool wrote_last = false;
    bool sync_failed = false;  //  a write went through, its sync failed
    size_t created = 0;
    size_t start = 0;
    for (size_t k = 0; k <= self->npend; k++) {
        size_t end = k < self->npend ? self->pend[k].start : self->buf_len;
        if (k > 0) {
            //  The segment before is durable: only then does its successor exist.
            if (new_fd >= 0)
                close (new_fd);
            op = "create segment";
            new_fd = s_segment_open_new (self, self->pend[k - 1].first);
            if (new_fd < 0)
                goto fail;
            created = k;
            fd = new_fd;
            offset = 0;
        }
        if (end > start) {
            if (k == 0)
                wrote_last = true;
            op = "write segment";
            if (s_write_all (fd, self->buf + start, end - start, offset) != 0)
                goto fail;
            op = "fdatasync segment";
            if (fdatasync (fd) != 0) {
                sync_failed = true;
                goto fail;
            }
        }
        start = end;
    }
    op = "fsync directory";
    if (created > 0 && fsync (self->dirfd) != 0) {
        sync_failed = true;
        goto fail;
    }

    //  Durable: account for it.
    last->size += self->npend > 0 ? self->pend[0].start : self->buf_len;
    for (size_t k = 0; k < self->npend; k++) {
        size_t end = k + 1 < self->npend ? self->pend[k + 1].start : self->buf_len;
        self->segs[self->nsegs].first = self->pend[k].first;
        self->segs[self->nsegs].size = end - self->pend[k].start;
        self->nsegs++;
    }
    if (new_fd >= 0) {
        close (self->fd);
        self->fd = new_fd;
        sb_debug ("journal", "journal segment started first_seq=%" PRIu64,
                  self->segs[self->nsegs - 1].first);
    }
    self->committed_seq = s_next (self);
    self->buf_len = 0;
    self->npend = 0;
    if (self->buf_cap > S_BUF_KEEP) {
        free (self->buf);
        self->buf = NULL;
        self->buf_cap = 0;
    }
    s_publish_size (self);
    s_report_success (self);
    return SB_JOURNAL_STORED;
fail:;
    int saved = errno;
    if (new_fd >= 0)
        close (new_fd);
    if (!sync_failed) {
        //  A write that fails leaves the page cache as it was: roll back in
        //  place. A sync that fails leaves it untrustworthy: start afresh.
        s_rollback (self, wrote_last, created);
    }
    else {
        self->abandon = true;
        s_forget_pending (self);
        const char *fresh_op;
        if (s_fresh_segment (self, &fresh_op) != 0) {
            char ebuf[128];
            sb_error ("journal",
                      "journal cannot start a fresh segment after a failed sync, "
                      "retried at the next commit op=\"%s\" dir=%s errno=%d error=\"%s\"",
                      fresh_op, self->dir, errno, sb_strerror (errno, ebuf, sizeof ebuf));
        }
    }
    s_report_failure (self, op, saved);
    return SB_JOURNAL_NOT_STORED;
}

const char *
sb_journal_epoch (const sb_journal_t *self)
{
    return self->epoch;
}

bool
sb_journal_healthy (const sb_journal_t *self)
{
    return atomic_load (&self->healthy);
}

uint64_t
sb_journal_size (const sb_journal_t *self)
{
    return atomic_load_explicit (&self->total_bytes, memory_order_relaxed);
}

size_t
sb_journal_segments (const sb_journal_t *self)
{
    return atomic_load_explicit (&self->segment_count, memory_order_relaxed);
}

uint64_t
sb_journal_first_seq (const sb_journal_t *self)
{
    return atomic_load_explicit (&self->first_seq, memory_order_relaxed);
}

// ---------------------------------------------------------------------------
//  Retention

//  True when segs[i] is older than the policy's age. 1 old, 0 not, -1 on
//  error (logged); a file already gone counts as old.
static int
s_segment_old (sb_journal_t *self, size_t i, const sb_journal_trim_t *policy, int64_t now)
{
    if (policy->max_age_seconds == 0)
        return 0;
    char name[S_NAME_SIZE];
    s_segment_name (name, self->segs[i].first);
    struct stat st;
    if (fstatat (self->dirfd, name, &st, 0) != 0) {
        if (errno == ENOENT)
            return 1;
        char ebuf[128];
        sb_error ("journal",
                  "cannot examine a journal segment for retention segment=%s dir=%s "
                  "errno=%d error=\"%s\"",
                  name, self->dir, errno, sb_strerror (errno, ebuf, sizeof ebuf));
        return -1;
    }
    int64_t age = now - (int64_t) st.st_mtime;
    return age >= 0 && (uint64_t) age >= policy->max_age_seconds;
}

int
sb_journal_trim (sb_journal_t *self, const sb_journal_trim_t *policy,
                 sb_journal_trim_stats_t *stats)
{
    assert (self);
    assert (policy);
    sb_journal_trim_stats_t local;
    if (!stats)
        stats = &local;
    memset (stats, 0, sizeof *stats);
    int64_t now = policy->now ? policy->now : (int64_t) time (NULL);
    uint64_t total = 0;
    for (size_t i = 0; i < self->nsegs; i++)
        total += self->segs[i].size;
    int rc = 0;
    size_t removed = 0;  //  segments removed from the front of segs
    bool by_age = false, by_size = false;
    //  Never the last committed segment: appends go there (or after it).
    while (removed + 1 < self->nsegs) {
        const s_segment_t *seg = &self->segs[removed];
        uint64_t last = self->segs[removed + 1].first - 1;  //  its last seq
        bool hard = policy->hard_max_bytes && total > policy->hard_max_bytes;
        bool big = policy->max_bytes && total > policy->max_bytes;
        int old = 0;
        if (!hard && !big) {
            old = s_segment_old (self, removed, policy, now);
            if (old < 0) {
                rc = -1;
                break;
            }
            if (!old)
                break;
        }
        bool held = policy->acked_seq != SB_JOURNAL_NO_HOLD && last > policy->acked_seq;
        if (held && !hard) {
            //  What age and size would remove after it is held back too.
            uint64_t left = total;
            for (size_t i = removed; i + 1 < self->nsegs; i++) {
                bool over = policy->max_bytes && left > policy->max_bytes;
                if (!over && s_segment_old (self, i, policy, now) != 1)
                    break;
                stats->held_bytes += self->segs[i].size;
                left -= self->segs[i].size;
            }
            break;
        }
        char name[S_NAME_SIZE];
        s_segment_name (name, seg->first);
        if (unlinkat (self->dirfd, name, 0) != 0 && errno != ENOENT) {
            char ebuf[128];
            sb_error ("journal",
                      "cannot remove a journal segment segment=%s dir=%s errno=%d "
                      "error=\"%s\"",
                      name, self->dir, errno, sb_strerror (errno, ebuf, sizeof ebuf));
            rc = -1;
            break;
        }
        if (held) {
            uint64_t from = policy->acked_seq >= seg->first ? policy->acked_seq + 1 : seg->first;
            uint64_t dropped = last - from + 1;
            stats->dropped_unacked += dropped;
            sb_error ("journal",
                      "journal over its hard size cap: segment removed before "
                      "consumers acknowledged it segment=%s first_seq=%" PRIu64 " last_seq=%" PRIu64
                      " acked_seq=%" PRIu64 " dropped=%" PRIu64 " bytes=%" PRIu64
                      " total_bytes=%" PRIu64 " hard_max_bytes=%" PRIu64,
                      name, seg->first, last, policy->acked_seq, dropped, seg->size, total,
                      policy->hard_max_bytes);
        }
        by_age |= old == 1;
        by_size |= hard || big;
        stats->segments++;
        stats->bytes += seg->size;
        total -= seg->size;
        removed++;
    }
    if (removed > 0) {
        uint64_t first = self->segs[0].first;
        memmove (self->segs, self->segs + removed, (self->nsegs - removed) * sizeof *self->segs);
        self->nsegs -= removed;
        //  Not needed for correctness (a segment that comes back after a
        //  crash is removed again), but frees the names for good.
        if (fsync (self->dirfd) != 0)
            sb_debug ("journal", "fsync of the journal directory after a trim failed errno=%d",
                      errno);
        s_publish_size (self);
        sb_info ("journal",
                 "journal segments removed by retention segments=%zu bytes=%" PRIu64
                 " seqs=%" PRIu64 "-%" PRIu64 " first_seq=%" PRIu64 " reason=%s",
                 stats->segments, stats->bytes, first, self->segs[0].first - 1, self->segs[0].first,
                 by_size ? (by_age ? "size,age" : "size") : "age");
    }
    return rc < 0 ? -1 : (int) stats->segments;
}

// ---------------------------------------------------------------------------
//  Readers

struct sb_journal_reader_t {
    char *dir;          //  the directory, for log lines
    int dirfd;          //  the directory
    uint64_t from_seq;  //  records below this are not returned
    uint64_t *firsts;   //  segments known, ascending
    size_t count;       //  entries in firsts
    uint64_t current;   //  first seq of the open segment, when cursor.fd >= 0
    s_cursor_t cursor;  //  the open segment
    uint64_t offset;    //  of the next record in it
    uint64_t expect;    //  seq the next record should have
    bool header_seen;   //  the open segment's header was checked
    uint64_t limit;     //  the next segment's first seq, as listed (UINT64_MAX: none)
    int64_t listed_ms;  //  when the directory was last listed (sb_time_mono_ms)
};

//  Lists the directory again. 0 or -1 (logged).
static int
s_reader_list (sb_journal_reader_t *self)
{
    uint64_t *firsts;
    size_t count;
    if (s_list (self->dirfd, &firsts, &count) != 0) {
        char ebuf[128];
        sb_error ("journal", "cannot list the journal dir=%s errno=%d error=\"%s\"", self->dir,
                  errno, sb_strerror (errno, ebuf, sizeof ebuf));
        return -1;
    }
    free (self->firsts);
    self->firsts = firsts;
    self->count = count;
    self->listed_ms = sb_time_mono_ms ();
    return 0;
}

//  Opens the segment named first: 1, 0 when it is gone, -1 on error
//  (logged).
static int
s_reader_open (sb_journal_reader_t *self, uint64_t first)
{
    s_cursor_close (&self->cursor);
    char name[S_NAME_SIZE];
    s_segment_name (name, first);
    int fd = openat (self->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        char ebuf[128];
        sb_error ("journal",
                  "cannot open a journal segment segment=%s dir=%s errno=%d "
                  "error=\"%s\"",
                  name, self->dir, errno, sb_strerror (errno, ebuf, sizeof ebuf));
        return -1;
    }
    self->cursor.fd = fd;
    self->current = first;
    self->offset = S_HEADER_SIZE;
    //  The seqs between the end of the segment before and this one's name
    //  that the reader was asked for.
    uint64_t from = self->expect > self->from_seq ? self->expect : self->from_seq;
    if (self->expect != 0 && from < first) {
        //  Nothing older left: retention removed them (oldest first).
        if (self->count > 0 && self->firsts[0] == first)
            sb_info ("journal",
                     "journal records removed by retention before the reader got "
                     "to them segment=%s from=%" PRIu64 " count=%" PRIu64,
                     name, from, first - from);
        else
            //  Seqs the writer skipped after cutting a damaged tail (it
            //  logged that at open), or a segment removed by hand.
            sb_warn ("journal",
                     "journal records missing before a segment segment=%s from=%" PRIu64
                     " count=%" PRIu64,
                     name, from, first - from);
    }
    self->expect = first;
    self->header_seen = false;
    self->limit = UINT64_MAX;
    for (size_t i = 0; i < self->count && self->limit == UINT64_MAX; i++)
        if (self->firsts[i] > first)
            self->limit = self->firsts[i];
    return 1;
}

//  Opens the segment that holds seq (or the first one after it, or the
//  earliest): 1, 0 when there is none yet, -1 on error.
static int
s_reader_seek (sb_journal_reader_t *self, uint64_t seq)
{
    s_cursor_close (&self->cursor);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (s_reader_list (self) != 0)
            return -1;
        if (self->count == 0)
            return 0;
        uint64_t first = self->firsts[0];
        for (size_t i = 0; i < self->count; i++)
            if (self->firsts[i] <= seq)
                first = self->firsts[i];
        self->expect = 0;
        int rc = s_reader_open (self, first);
        if (rc != 0)
            return rc;
        //  Removed between listing and opening: list again.
    }
    return 0;
}

//  Opens the segment holding the next seq not yet returned (records before
//  it are not returned again): after a segment vanished under us.
static int
s_reader_reseek (sb_journal_reader_t *self)
{
    if (self->expect > self->from_seq)
        self->from_seq = self->expect;
    int rc = s_reader_seek (self, self->from_seq);
    if (rc == 1 && self->current > self->from_seq)
        sb_info ("journal",
                 "journal records removed by retention before the reader got to "
                 "them dir=%s from=%" PRIu64 " count=%" PRIu64,
                 self->dir, self->from_seq, self->current - self->from_seq);
    return rc;
}

//  At the end of the open segment (torn: bytes follow the last good record)
//  moves to the next segment: 1 when there is one, 0 when the open segment
//  is the last (the writer may still add to it), -1 on error.
static int
s_reader_advance (sb_journal_reader_t *self, bool torn)
{
    uint64_t current = self->current;
    bool later = self->count > 0 && self->firsts[self->count - 1] > current;
    if (!later && !torn && self->expect > current) {
        //  The writer names its next segment after the next seq.
        char name[S_NAME_SIZE];
        s_segment_name (name, self->expect);
        later = faccessat (self->dirfd, name, F_OK, 0) == 0;
        if (later && s_reader_list (self) != 0)
            return -1;
    }
    struct stat st;
    bool stat_ok = !later && fstat (self->cursor.fd, &st) == 0;
    //  The file now ends before what we read: an open cut its tail and
    //  went on in a later segment, named past the cut: look for it now.
    bool cut = stat_ok && (uint64_t) st.st_size < self->offset;
    if (!later && (torn || cut || sb_time_mono_ms () - self->listed_ms >= 1000)) {
        //  A writer goes past a torn tail only in the open that cuts it (a
        //  moment after making the later segment): a later segment means
        //  this tail stays damaged. At a clean end, a later segment named
        //  otherwise (records lost before it) is looked for once a second.
        if (s_reader_list (self) != 0)
            return -1;
        later = self->count > 0 && self->firsts[self->count - 1] > current;
    }
    if (!later) {
        //  A failed commit removes the segments it made: ours?
        if (stat_ok && st.st_nlink == 0)
            return s_reader_reseek (self);
        return 0;
    }
    if (torn) {
        char name[S_NAME_SIZE];
        s_segment_name (name, current);
        sb_error ("journal",
                  "journal segment has a damaged tail, skipped segment=%s seq=%" PRIu64
                  " offset=%" PRIu64,
                  name, self->expect, self->offset);
    }
    for (size_t i = 0; i < self->count; i++)
        if (self->firsts[i] > current) {
            int rc = s_reader_open (self, self->firsts[i]);
            return rc == 0 ? s_reader_reseek (self) : rc;
        }
    return s_reader_reseek (self);
}

sb_journal_reader_t *
sb_journal_reader_new (const char *dir, uint64_t from_seq)
{
    sb_journal_reader_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error ("journal", "cannot read the journal: out of memory dir=%s", dir);
        return NULL;
    }
    self->cursor.fd = -1;
    self->from_seq = from_seq ? from_seq : 1;
    self->dir = strdup (dir);
    self->dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!self->dir || self->dirfd < 0) {
        char ebuf[128];
        sb_error ("journal", "cannot read the journal dir=%s errno=%d error=\"%s\"", dir, errno,
                  sb_strerror (errno, ebuf, sizeof ebuf));
        sb_journal_reader_destroy (&self);
        return NULL;
    }
    return self;
}

void
sb_journal_reader_destroy (sb_journal_reader_t **self_p)
{
    sb_journal_reader_t *self = *self_p;
    if (!self)
        return;
    s_cursor_close (&self->cursor);
    if (self->dirfd >= 0)
        close (self->dirfd);
    free (self->firsts);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

//  Checks the open segment's header once it is all there. 0, or -1 when it
//  is a version we cannot read.
static int
s_reader_header (sb_journal_reader_t *self)
{
    const uint8_t *header;
    ssize_t got = s_cursor_peek (&self->cursor, 0, S_HEADER_SIZE, &header);
    if (got < (ssize_t) S_HEADER_SIZE)
        return 0;  //  being created, or unreadable: the records will tell
    self->header_seen = true;
    char epoch[S_EPOCH_LEN + 1];
    char name[S_NAME_SIZE];
    s_segment_name (name, self->current);
    s_header_t check = s_header_check (header, self->current, epoch);
    if (check == S_HEADER_VERSION) {
        sb_error ("journal", "journal segment has an unsupported version segment=%s dir=%s", name,
                  self->dir);
        return -1;
    }
    if (check == S_HEADER_BAD)
        sb_error ("journal", "journal segment header damaged segment=%s dir=%s", name, self->dir);
    return 0;
}

int
sb_journal_reader_next (sb_journal_reader_t *self, uint64_t *seq, const uint8_t **data,
                        size_t *size)
{
    assert (self);
    if (self->cursor.fd < 0) {
        int rc = s_reader_seek (self, self->from_seq);
        if (rc <= 0)
            return rc;
    }
    while (true) {
        if (!self->header_seen && s_reader_header (self) != 0)
            return -1;
        s_record_t record;
        uint64_t next = 0;
        s_step_t step = s_step (&self->cursor, self->offset, self->expect, &record, &next);
        if ((step == S_STEP_RECORD || step == S_STEP_SKIP) && self->expect >= self->limit) {
            //  A failed commit's, superseded by the next segment (its name),
            //  whole or damaged: before the switch, so not skipped as corrupt.
            char name[S_NAME_SIZE];
            s_segment_name (name, self->current);
            sb_warn ("journal",
                     "journal records past the next segment's first seq ignored "
                     "segment=%s seq=%" PRIu64 " next_segment_seq=%" PRIu64,
                     name, self->expect, self->limit);
            step = S_STEP_END;
        }
        if (step == S_STEP_RECORD) {
            self->offset = next;
            self->expect++;
            if (record.seq < self->from_seq)
                continue;
            *seq = record.seq;
            *data = record.payload;
            *size = record.size;
            return 1;
        }
        if (step == S_STEP_SKIP) {
            char name[S_NAME_SIZE];
            s_segment_name (name, self->current);
            sb_error ("journal",
                      "journal corrupt record skipped segment=%s seq=%" PRIu64 " offset=%" PRIu64
                      " bytes=%" PRIu64,
                      name, self->expect, self->offset, next - self->offset);
            self->offset = next;
            self->expect++;
            continue;
        }
        if (step == S_STEP_ERROR) {
            char name[S_NAME_SIZE], ebuf[128];
            s_segment_name (name, self->current);
            sb_error ("journal",
                      "cannot read a journal segment segment=%s dir=%s errno=%d "
                      "error=\"%s\"",
                      name, self->dir, errno, sb_strerror (errno, ebuf, sizeof ebuf));
            return -1;
        }
        //  End of this segment, or a tail that may still be being written.
        s_cursor_drop (&self->cursor);
        int rc = s_reader_advance (self, step == S_STEP_TORN);
        if (rc <= 0)
            return rc;
    }
}
