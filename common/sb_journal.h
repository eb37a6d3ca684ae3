/*  sb_journal: the ingress's durable log. Append-only segment files of
    length-prefixed, CRC-checked records, each with its sequence number.

    A writer (one thread) appends records, then commits: one fdatasync for
    everything appended since the last commit (group commit). Until commit
    returns SB_JOURNAL_STORED nothing appended is acknowledged; when it
    fails, everything since the last commit is rolled back (file truncated,
    sequence numbers reused) so the journal stays clean. After a failed
    fdatasync or directory fsync the segment is never written again (its
    page cache cannot be trusted): appends go on in a fresh segment named
    after the first uncommitted seq, and what the failed commit wrote is
    never read (an older segment ends at its successor's first seq).

    On open, the last segment is scanned: a corrupt record followed by good
    ones is skipped with a log line, and the sequence resumes after the last
    good record, unless a torn tail (short or bad record at the end) had to
    be truncated: those bytes may have held acknowledged records (storage
    that lost synced data looks like a crash mid-write), so the sequence
    then resumes past every seq they could have held (ceil (bytes / 16)
    of them) in a new segment named after its first seq, and those seqs
    are never given out again. Readers see the gap as records missing.
    Segments rotate past segment_bytes; files are DIR/<first seq, 20
    digits>.sbj. DIR/EPOCH holds a random id made when the journal is
    created, so consumers can tell a new journal from an old one.

    Readers (other threads or processes) read committed records by sequence.

    Retention (sb_journal_trim) removes whole segments from the front, the
    oldest first and never the one being written: those older than an age
    (the segment file's mtime, which is the time its newest record was
    written, since a complete segment is never written again), and those
    beyond a total size. Segments holding records above the seq the
    consumers acknowledged are kept, up to a hard cap past which they go
    too, counted and logged at error. A reader whose segments are removed
    under it carries on at the first seq still there.
*/
#ifndef SB_JOURNAL_H_INCLUDED
#define SB_JOURNAL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SB_JOURNAL_STORED = 0,  //  durable: acknowledge
    SB_JOURNAL_NOT_STORED,  //  not durable: answer 503 so the provider retries
} sb_journal_result_t;

//  Largest record payload accepted.
#define SB_JOURNAL_MAX_RECORD (64u * 1024 * 1024)

typedef struct sb_journal_t sb_journal_t;

//  Open or create the journal in dir (created with parents if missing).
//  Returns NULL, with a log line saying why, when the directory cannot be
//  used. Caller owns the return value.
sb_journal_t *sb_journal_open (const char *dir, uint64_t segment_bytes);

void sb_journal_destroy (sb_journal_t **self_p);

//  Write one record; its sequence number goes to *seq. Not durable until
//  sb_journal_commit. SB_JOURNAL_NOT_STORED on a write error (disk full, I/O
//  error), after rolling back everything since the last commit.
sb_journal_result_t sb_journal_append (sb_journal_t *self, const void *data, size_t size,
                                       uint64_t *seq);

//  The sequence number the next append will get (before commit too).
uint64_t sb_journal_next_seq (const sb_journal_t *self);

//  Make every append since the last commit durable (one fdatasync).
sb_journal_result_t sb_journal_commit (sb_journal_t *self);

//  The journal's epoch (borrowed): 32 hex digits.
const char *sb_journal_epoch (const sb_journal_t *self);

//  True when the last write or commit succeeded (for /readyz).
bool sb_journal_healthy (const sb_journal_t *self);

//  Bytes in all segments, and the number of segment files.
uint64_t sb_journal_size (const sb_journal_t *self);
size_t sb_journal_segments (const sb_journal_t *self);

//  The seq of the first record the journal still holds (1 until retention
//  removed segments; the next seq when the journal is empty). Any thread.
uint64_t sb_journal_first_seq (const sb_journal_t *self);

//  acked_seq of a trim policy when no consumer holds segments back.
#define SB_JOURNAL_NO_HOLD UINT64_MAX

//  What sb_journal_trim removes. A limit of 0 is off.
typedef struct {
    uint64_t max_age_seconds;  //  segments whose newest record is older than this go
    uint64_t max_bytes;        //  the oldest segments go while the journal is larger
    uint64_t hard_max_bytes;   //  past this, segments go even when acked_seq holds them
    uint64_t acked_seq;        //  segments holding a record above it are kept (consumers'
                               //  lowest acknowledged seq; SB_JOURNAL_NO_HOLD: none)
    int64_t now;               //  wall-clock time in seconds for the age; 0: time (NULL)
} sb_journal_trim_t;

//  What one sb_journal_trim did.
typedef struct {
    size_t segments;           //  segment files removed
    uint64_t bytes;            //  their bytes
    uint64_t dropped_unacked;  //  records removed although above acked_seq (hard cap)
    uint64_t held_bytes;       //  bytes age and size would remove but acked_seq keeps
} sb_journal_trim_stats_t;

//  Remove whole segments from the front by policy (see the note at the
//  top), never the segment being written. Writer thread only, between
//  commits. Returns the number of segments removed, or -1 (logged) when a
//  file could not be examined or removed (what was removed until then is
//  in *stats, which may be NULL).
int sb_journal_trim (sb_journal_t *self, const sb_journal_trim_t *policy,
                     sb_journal_trim_stats_t *stats);

typedef struct sb_journal_reader_t sb_journal_reader_t;

//  A reader of dir from sequence from_seq (1 = the start). Caller owns the
//  return value; NULL when the directory cannot be read.
sb_journal_reader_t *sb_journal_reader_new (const char *dir, uint64_t from_seq);

void sb_journal_reader_destroy (sb_journal_reader_t **self_p);

//  The next record: 1 with *seq, *data (borrowed until the next call) and
//  *size set; 0 at the end of what is written; -1 on an unreadable file.
//  Corrupt records are skipped with a log line, as on open. Records that
//  retention removed before the reader got to them are skipped too (the
//  seq jumps to the first one still there), and so are the seqs a segment
//  gap lacks (skipped by open after a cut tail; logged at warn).
int sb_journal_reader_next (sb_journal_reader_t *self, uint64_t *seq, const uint8_t **data,
                            size_t *size);

#endif
