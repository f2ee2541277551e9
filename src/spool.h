/*
 * The local spool: an append-only log of events that could not go to Redis
 * when they arrived. A record is acknowledged only once it is on disk, so a
 * webhook answered 200 from the spool survives a crash of callhook; the
 * spool is replayed into Redis when it is reachable again.
 *
 * File format: files named spool-NNNNNNNNNNNNNNNN.log, replayed in name
 * order. Each record is
 *     magic "CHsp" | u32 length | u32 CRC-32C of the payload | payload
 * with little-endian integers. The magic lets a reader find the next
 * record after a corrupted one; the CRC catches torn and damaged writes.
 */
#ifndef CALLHOOK_SPOOL_H
#define CALLHOOK_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#define SPOOL_RECORD_MAX (16u * 1024 * 1024)

struct spool_options {
    const char *dir;
    uint64_t max_bytes;       /* files plus unflushed records */
    uint64_t rotate_bytes;    /* start a new file past this size */
    unsigned batch_delay_us;  /* wait this long to gather a batch */
};

struct spool_stats {
    uint64_t appended;      /* records made durable */
    uint64_t append_failed; /* records whose write or fsync failed */
    uint64_t rejected_full; /* appends refused: spool full or broken */
    uint64_t fsyncs;
    uint64_t bytes;         /* current size: files plus buffered */
    uint64_t files;
    uint64_t corrupt_skipped; /* damaged records skipped by readers */
};

/*
 * Called once per accepted append, after the batch holding the record was
 * written and fsynced (durable != 0) or failed to be (durable == 0).
 */
typedef void (*spool_done_cb)(void *arg, int durable);

struct spool;

/*
 * Opens (creating if needed) the spool folder. Returns NULL with a message
 * in err when the folder cannot be created or read.
 */
struct spool *spool_open(struct event_base *base,
                         const struct spool_options *options, char *err,
                         size_t errlen);

/*
 * Moves every spool file of the folder from into this spool, after its
 * own files and in their order, so they are replayed here. Used when the
 * folder layout changes with --workers. Returns the number of files
 * moved, or -1 with a message in err.
 */
int spool_adopt(struct spool *spool, const char *from, char *err,
                size_t errlen);

/* Flushes what is buffered (blocking), then frees. */
void spool_close(struct spool *spool);

/*
 * Queues one record for the next batch; the data is copied. Returns 0
 * when queued (cb will be called exactly once), or -1 when the spool is
 * full or its last write failed recently (cb is not called).
 */
int spool_append(struct spool *spool, const void *data, size_t len,
                 spool_done_cb cb, void *arg);

/* Writes and fsyncs the pending batch now, running its callbacks. */
void spool_flush(struct spool *spool);

/* Nonzero when records are waiting to be replayed. */
int spool_has_backlog(const struct spool *spool);

/* Nonzero when an append would be accepted now. */
int spool_writable(const struct spool *spool);

const struct spool_stats *spool_get_stats(const struct spool *spool);

/*
 * Replay, one file at a time, oldest first. spool_replay_open() closes the
 * file being appended to when it is the oldest (new appends go to a new
 * file) and loads the oldest file. Returns 0 with *out set, 1 when nothing
 * is left, -1 on a read error. The caller walks the records with
 * spool_file_next() and, once Redis has acknowledged all of them, calls
 * spool_file_done() to delete the file; spool_file_release() keeps it for
 * a later attempt.
 */
struct spool_file;
int spool_replay_open(struct spool *spool, struct spool_file **out);

/*
 * Returns 1 with the next intact record (valid until the file is
 * released), 0 at the end. Damaged records are skipped, counted and
 * logged.
 */
int spool_file_next(struct spool_file *file, const void **data,
                    size_t *len);
const char *spool_file_name(const struct spool_file *file);
void spool_file_done(struct spool *spool, struct spool_file *file);
void spool_file_release(struct spool_file *file);

/*
 * Scans a buffer of spool records, calling fn for each intact one, and
 * returns the number of damaged regions skipped. Pure: for tests.
 */
size_t spool_scan(const unsigned char *buf, size_t len,
                  void (*fn)(void *arg, const void *data, size_t len),
                  void *arg);

/* Encodes a record header for data into hdr[12]. For tests and writers. */
void spool_record_header(const void *data, size_t len, unsigned char hdr[12]);

uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
