#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define MAGIC "CHsp"
#define HEADER_LEN 12
#define BROKEN_RETRY_MS 1000

struct pending_cb {
    spool_done_cb cb;
    void *arg;
};

struct spool {
    struct event_base *base;
    struct spool_options options;
    char *dir;

    /* Sequence numbers of the files on disk, ascending. */
    uint64_t *files;
    uint64_t *file_sizes;
    size_t nfiles, files_cap;
    uint64_t next_seq;

    int fd; /* the file being appended to, or -1 */
    uint64_t active_seq;

    /* The batch gathered since the last flush. */
    unsigned char *batch;
    size_t batch_len, batch_cap;
    struct pending_cb *cbs;
    size_t ncbs, cbs_cap;
    struct event *flush_timer;
    int flush_scheduled;

    /* Records read back from an active file someone removed. */
    unsigned char *rescued;
    size_t rescued_len;

    int broken;
    uint64_t broken_since_ms;
    uint64_t broken_failures;
    int full;
    uint64_t full_rejected;

    struct spool_stats stats;
};

struct spool_file {
    uint64_t seq;
    size_t damaged;
    char name[64];
    unsigned char *buf;
    size_t len, pos;
};

/* ---- CRC-32C (Castagnoli), table-driven ------------------------------ */

static uint32_t crc_table[256];
static int crc_ready;

uint32_t
crc32c(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;

    if (!crc_ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;

            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            crc_table[i] = c;
        }
        crc_ready = 1;
    }
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static void
put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t
get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

void
spool_record_header(const void *data, size_t len, unsigned char hdr[12])
{
    memcpy(hdr, MAGIC, 4);
    put_u32(hdr + 4, (uint32_t)len);
    put_u32(hdr + 8, crc32c(0, data, len));
}

/*
 * Finds the next intact record at or after *pos. Returns 1 with the
 * payload, 0 at the end. *damaged counts the regions skipped.
 */
static int
next_record(const unsigned char *buf, size_t len, size_t *pos,
            const void **data, size_t *data_len, size_t *damaged)
{
    int in_damage = 0;

    while (*pos < len) {
        size_t p = *pos;
        uint32_t rec_len;

        if (len - p >= 4 && memcmp(buf + p, MAGIC, 4) == 0 &&
            len - p >= HEADER_LEN) {
            rec_len = get_u32(buf + p + 4);
            if (rec_len <= SPOOL_RECORD_MAX &&
                rec_len <= len - p - HEADER_LEN &&
                crc32c(0, buf + p + HEADER_LEN, rec_len) ==
                    get_u32(buf + p + 8)) {
                *data = buf + p + HEADER_LEN;
                *data_len = rec_len;
                *pos = p + HEADER_LEN + rec_len;
                return 1;
            }
        }
        /* Damaged or torn: resynchronise on the next magic. */
        if (!in_damage) {
            (*damaged)++;
            in_damage = 1;
        }
        {
            const unsigned char *next =
                len - p > 1 ? memmem(buf + p + 1, len - p - 1, MAGIC, 4)
                            : NULL;

            *pos = next ? (size_t)(next - buf) : len;
        }
    }
    return 0;
}

size_t
spool_scan(const unsigned char *buf, size_t len,
           void (*fn)(void *arg, const void *data, size_t len), void *arg)
{
    size_t pos = 0, damaged = 0, n;
    const void *data;

    while (next_record(buf, len, &pos, &data, &n, &damaged))
        fn(arg, data, n);
    return damaged;
}

/* ---- files ------------------------------------------------------------ */

static void
file_path(const struct spool *spool, uint64_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%s/spool-%016" PRIu64 ".log", spool->dir, seq);
}

static int
sync_dir(const struct spool *spool)
{
    int fd = open(spool->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int
add_file(struct spool *spool, uint64_t seq, uint64_t size)
{
    if (spool->nfiles == spool->files_cap) {
        size_t cap = spool->files_cap ? spool->files_cap * 2 : 16;
        uint64_t *f = realloc(spool->files, cap * sizeof(*f));
        uint64_t *s;

        if (f == NULL)
            return -1;
        spool->files = f;
        s = realloc(spool->file_sizes, cap * sizeof(*s));
        if (s == NULL)
            return -1;
        spool->file_sizes = s;
        spool->files_cap = cap;
    }
    spool->files[spool->nfiles] = seq;
    spool->file_sizes[spool->nfiles] = size;
    spool->nfiles++;
    return 0;
}

static int
scan_dir(struct spool *spool, char *err, size_t errlen)
{
    DIR *d = opendir(spool->dir);
    struct dirent *de;

    if (d == NULL) {
        snprintf(err, errlen, "cannot read spool folder %s: %s", spool->dir,
                 strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        char path[4200];
        struct stat st;
        uint64_t seq;
        char tail[8];

        if (sscanf(de->d_name, "spool-%16" SCNu64 "%7s", &seq, tail) != 2 ||
            strcmp(tail, ".log") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", spool->dir, de->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (add_file(spool, seq, (uint64_t)st.st_size) != 0) {
            closedir(d);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        spool->stats.bytes += (uint64_t)st.st_size;
        if (seq >= spool->next_seq)
            spool->next_seq = seq + 1;
    }
    closedir(d);

    /* Sort sequence and size together: sizes ride along by index. */
    for (size_t i = 1; i < spool->nfiles; i++) {
        for (size_t k = i; k > 0 && spool->files[k - 1] > spool->files[k];
             k--) {
            uint64_t t = spool->files[k];

            spool->files[k] = spool->files[k - 1];
            spool->files[k - 1] = t;
            t = spool->file_sizes[k];
            spool->file_sizes[k] = spool->file_sizes[k - 1];
            spool->file_sizes[k - 1] = t;
        }
    }
    spool->stats.files = spool->nfiles;
    return 0;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void remove_file_entry(struct spool *spool, uint64_t seq);
static void close_active(struct spool *spool);

/*
 * Reads what the active file holds, through its still open descriptor,
 * after someone removed the file: those records were acknowledged, so
 * they stay in memory until a new file takes them.
 */
static void
rescue_removed(struct spool *spool, size_t idx)
{
    uint64_t size = idx < spool->nfiles ? spool->file_sizes[idx] : 0;
    unsigned char *grown = realloc(spool->rescued, spool->rescued_len + size);
    size_t got = 0;

    if (grown != NULL) {
        spool->rescued = grown;
        while (got < size) {
            ssize_t n = pread(spool->fd, grown + spool->rescued_len + got,
                              size - got, (off_t)got);

            if (n <= 0)
                break;
            got += (size_t)n;
        }
        spool->rescued_len += got;
    }
    log_error("spool file %s/spool-%016" PRIu64 ".log was removed while in "
              "use; %zu of its %" PRIu64 " bytes of records kept to be "
              "written to a new file",
              spool->dir, spool->active_seq, got, size);
    close_active(spool);
    remove_file_entry(spool, spool->active_seq);
    spool->stats.bytes += got;
}

struct spool *
spool_open(struct event_base *base, const struct spool_options *options,
           char *err, size_t errlen)
{
    struct spool *spool = calloc(1, sizeof(*spool));

    if (spool == NULL || (spool->dir = strdup(options->dir)) == NULL) {
        free(spool);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    spool->base = base;
    spool->options = *options;
    spool->options.dir = spool->dir;
    spool->fd = -1;
    spool->next_seq = 1;

    if (mkdir(spool->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create spool folder %s: %s",
                 spool->dir, strerror(errno));
        goto fail;
    }
    if (scan_dir(spool, err, errlen) != 0)
        goto fail;
    spool->flush_timer = evtimer_new(base, flush_cb, spool);
    if (spool->flush_timer == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return spool;

fail:
    free(spool->files);
    free(spool->file_sizes);
    free(spool->dir);
    free(spool);
    return NULL;
}

static int
compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

int
spool_adopt(struct spool *spool, const char *from, char *err, size_t errlen)
{
    DIR *d = opendir(from);
    struct dirent *de;
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    int moved = 0;

    if (d == NULL)
        return 0; /* nothing there: nothing to adopt */
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;
        char tail[8];

        if (sscanf(de->d_name, "spool-%16" SCNu64 "%7s", &seq, tail) != 2 ||
            strcmp(tail, ".log") != 0)
            continue;
        if (n == cap) {
            uint64_t *more = realloc(seqs, (cap ? cap * 2 : 16) *
                                               sizeof(*seqs));

            if (more == NULL) {
                free(seqs);
                closedir(d);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            seqs = more;
            cap = cap ? cap * 2 : 16;
        }
        seqs[n++] = seq;
    }
    closedir(d);
    qsort(seqs, n, sizeof(*seqs), compare_u64);

    for (size_t i = 0; i < n; i++) {
        char src[4200], dst[4200];
        struct stat st;

        snprintf(src, sizeof(src), "%s/spool-%016" PRIu64 ".log", from,
                 seqs[i]);
        file_path(spool, spool->next_seq, dst, sizeof(dst));
        if (stat(src, &st) != 0 || rename(src, dst) != 0 ||
            add_file(spool, spool->next_seq, (uint64_t)st.st_size) != 0) {
            snprintf(err, errlen, "cannot move spool file %s into %s: %s",
                     src, spool->dir, strerror(errno));
            free(seqs);
            return -1;
        }
        spool->stats.bytes += (uint64_t)st.st_size;
        spool->next_seq++;
        moved++;
    }
    free(seqs);
    if (moved > 0) {
        int fd = open(from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        /* Both folders changed: make the move itself durable. */
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        sync_dir(spool);
        spool->stats.files = spool->nfiles;
    }
    return moved;
}

static int
open_active(struct spool *spool)
{
    char path[4200];

    file_path(spool, spool->next_seq, path, sizeof(path));
    /* Read access too: if the file is removed while open, what it holds
     * is read back through this descriptor (see rescue_removed). */
    spool->fd =
        open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (spool->fd < 0)
        return -1;
    /* The new name must be durable too, or a crash could lose the file. */
    if (sync_dir(spool) != 0 || add_file(spool, spool->next_seq, 0) != 0) {
        close(spool->fd);
        unlink(path);
        spool->fd = -1;
        return -1;
    }
    spool->active_seq = spool->next_seq++;
    spool->stats.files = spool->nfiles;
    return 0;
}

static void
close_active(struct spool *spool)
{
    if (spool->fd >= 0) {
        close(spool->fd);
        spool->fd = -1;
    }
}

static size_t
active_index(const struct spool *spool)
{
    for (size_t i = 0; i < spool->nfiles; i++) {
        if (spool->files[i] == spool->active_seq)
            return i;
    }
    return spool->nfiles;
}

static int
write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void
spool_flush(struct spool *spool)
{
    struct pending_cb *cbs;
    size_t ncbs, idx;
    int durable = 0;
    int saved_errno = 0;

    if (spool->flush_scheduled) {
        evtimer_del(spool->flush_timer);
        spool->flush_scheduled = 0;
    }
    if (spool->ncbs == 0 && spool->rescued_len == 0)
        return;

    if (spool->fd >= 0) {
        struct stat st;

        idx = active_index(spool);
        if (idx < spool->nfiles &&
            spool->file_sizes[idx] >= spool->options.rotate_bytes)
            close_active(spool);
        /* A file removed from under us would take records that were
         * acknowledged with it: keep them and write them again. */
        else if (fstat(spool->fd, &st) != 0 || st.st_nlink == 0)
            rescue_removed(spool, idx);
    }
    if (spool->fd < 0 && open_active(spool) != 0) {
        saved_errno = errno;
    } else {
        idx = active_index(spool);
        if ((spool->rescued_len == 0 ||
             write_all(spool->fd, spool->rescued, spool->rescued_len) == 0) &&
            write_all(spool->fd, spool->batch, spool->batch_len) == 0 &&
            fdatasync(spool->fd) == 0) {
            durable = 1;
            spool->file_sizes[idx] += spool->rescued_len + spool->batch_len;
            if (spool->rescued_len > 0) {
                log_info("spool: %zu bytes of records from a removed file "
                         "written again to spool-%016" PRIu64 ".log",
                         spool->rescued_len, spool->active_seq);
                free(spool->rescued);
                spool->rescued = NULL;
                spool->rescued_len = 0;
            }
        } else {
            saved_errno = errno;
            /* Cut off what may have been half written, so the file stays
             * a clean sequence of records; start a new file otherwise. */
            if (ftruncate(spool->fd, (off_t)spool->file_sizes[idx]) != 0)
                close_active(spool);
        }
    }

    spool->stats.bytes -= spool->batch_len;
    if (durable) {
        spool->stats.bytes += spool->batch_len;
        spool->stats.fsyncs++;
        spool->stats.appended += spool->ncbs;
        if (spool->broken) {
            log_info("spool writable again in %s after %" PRIu64
                     " records could not be written to it",
                     spool->dir, spool->broken_failures);
            spool->broken = 0;
        }
    } else {
        spool->stats.append_failed += spool->ncbs;
        if (!spool->broken) {
            log_error("spool write to %s failed: %s; webhooks that cannot "
                      "reach redis get 503",
                      spool->dir, strerror(saved_errno));
            spool->broken = 1;
            spool->broken_failures = 0;
        }
        spool->broken_failures += spool->ncbs;
        spool->broken_since_ms = clock_monotonic_ms();
    }

    /* Detach the batch first: callbacks may append to the next one. */
    cbs = spool->cbs;
    ncbs = spool->ncbs;
    spool->cbs = NULL;
    spool->ncbs = spool->cbs_cap = 0;
    spool->batch_len = 0;
    for (size_t i = 0; i < ncbs; i++)
        cbs[i].cb(cbs[i].arg, durable);
    free(cbs);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct spool *spool = arg;

    spool->flush_scheduled = 0;
    spool_flush(spool);
}

int
spool_writable(const struct spool *spool)
{
    if (spool->broken &&
        clock_monotonic_ms() - spool->broken_since_ms < BROKEN_RETRY_MS)
        return 0;
    return spool->stats.bytes < spool->options.max_bytes;
}

int
spool_append(struct spool *spool, const void *data, size_t len,
             spool_done_cb cb, void *arg)
{
    size_t need = HEADER_LEN + len;

    if (len > SPOOL_RECORD_MAX || !spool_writable(spool) ||
        spool->stats.bytes + need > spool->options.max_bytes) {
        spool->stats.rejected_full++;
        if (spool->broken)
            spool->broken_failures++;
        if (!spool->broken && !spool->full) {
            spool->full = 1;
            spool->full_rejected = 0;
            log_error("spool %s is full (%" PRIu64 " of %" PRIu64
                      " bytes): webhooks that cannot reach redis get 503",
                      spool->dir, spool->stats.bytes,
                      spool->options.max_bytes);
        }
        spool->full_rejected++;
        return -1;
    }
    if (spool->full) {
        log_info("spool %s has room again after %" PRIu64
                 " webhooks got 503",
                 spool->dir, spool->full_rejected);
        spool->full = 0;
    }

    if (spool->batch_len + need > spool->batch_cap) {
        size_t cap = spool->batch_cap ? spool->batch_cap : 65536;
        unsigned char *b;

        while (cap < spool->batch_len + need)
            cap *= 2;
        b = realloc(spool->batch, cap);
        if (b == NULL)
            return -1;
        spool->batch = b;
        spool->batch_cap = cap;
    }
    if (spool->ncbs == spool->cbs_cap) {
        size_t cap = spool->cbs_cap ? spool->cbs_cap * 2 : 64;
        struct pending_cb *c = realloc(spool->cbs, cap * sizeof(*c));

        if (c == NULL)
            return -1;
        spool->cbs = c;
        spool->cbs_cap = cap;
    }

    spool_record_header(data, len, spool->batch + spool->batch_len);
    memcpy(spool->batch + spool->batch_len + HEADER_LEN, data, len);
    spool->batch_len += need;
    spool->stats.bytes += need;
    spool->cbs[spool->ncbs].cb = cb;
    spool->cbs[spool->ncbs].arg = arg;
    spool->ncbs++;

    if (!spool->flush_scheduled) {
        struct timeval tv = {0, (suseconds_t)spool->options.batch_delay_us};

        evtimer_add(spool->flush_timer, &tv);
        spool->flush_scheduled = 1;
    }
    return 0;
}

int
spool_has_backlog(const struct spool *spool)
{
    for (size_t i = 0; i < spool->nfiles; i++) {
        if (spool->file_sizes[i] > 0)
            return 1;
    }
    return spool->ncbs > 0;
}

const struct spool_stats *
spool_get_stats(const struct spool *spool)
{
    return &spool->stats;
}

void
spool_close(struct spool *spool)
{
    if (spool == NULL)
        return;
    spool_flush(spool);
    close_active(spool);
    if (spool->flush_timer != NULL)
        event_free(spool->flush_timer);
    if (spool->rescued_len > 0)
        log_error("spool %s: %zu bytes of records from a removed file could "
                  "not be written again and are lost",
                  spool->dir, spool->rescued_len);
    free(spool->rescued);
    free(spool->batch);
    free(spool->cbs);
    free(spool->files);
    free(spool->file_sizes);
    free(spool->dir);
    free(spool);
}

/* ---- replay ----------------------------------------------------------- */

static void
remove_file_entry(struct spool *spool, uint64_t seq)
{
    for (size_t i = 0; i < spool->nfiles; i++) {
        if (spool->files[i] == seq) {
            spool->stats.bytes -= spool->file_sizes[i];
            memmove(spool->files + i, spool->files + i + 1,
                    (spool->nfiles - i - 1) * sizeof(*spool->files));
            memmove(spool->file_sizes + i, spool->file_sizes + i + 1,
                    (spool->nfiles - i - 1) * sizeof(*spool->file_sizes));
            spool->nfiles--;
            break;
        }
    }
    spool->stats.files = spool->nfiles;
}

int
spool_replay_open(struct spool *spool, struct spool_file **out)
{
    struct spool_file *file;
    char path[4200];
    struct stat st;
    uint64_t seq;
    int fd;

    /* Records still in the batch belong before anything newer. */
    spool_flush(spool);
    if (spool->nfiles == 0)
        return 1;
    seq = spool->files[0];
    if (spool->fd >= 0 && spool->active_seq == seq)
        close_active(spool);

    file_path(spool, seq, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_error("cannot read spool file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    file = calloc(1, sizeof(*file));
    if (file != NULL && st.st_size > 0)
        file->buf = malloc((size_t)st.st_size);
    if (file == NULL || (st.st_size > 0 && file->buf == NULL)) {
        free(file);
        close(fd);
        return -1;
    }
    file->seq = seq;
    snprintf(file->name, sizeof(file->name), "spool-%016" PRIu64 ".log", seq);
    while (file->len < (size_t)st.st_size) {
        ssize_t n = read(fd, file->buf + file->len,
                         (size_t)st.st_size - file->len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        file->len += (size_t)n;
    }
    close(fd);
    *out = file;
    return 0;
}

int
spool_file_next(struct spool_file *file, const void **data, size_t *len)
{
    size_t damaged = 0;
    int rc = next_record(file->buf, file->len, &file->pos, data, len,
                         &damaged);

    file->damaged += damaged;
    if (damaged > 0)
        log_warn("spool file %s: skipped %zu damaged or torn region(s) "
                 "near byte %zu",
                 file->name, damaged, file->pos);
    return rc;
}

const char *
spool_file_name(const struct spool_file *file)
{
    return file->name;
}

void
spool_file_release(struct spool_file *file)
{
    if (file == NULL)
        return;
    free(file->buf);
    free(file);
}

void
spool_file_done(struct spool *spool, struct spool_file *file)
{
    char path[4200];

    file_path(spool, file->seq, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT)
        log_error("cannot remove replayed spool file %s: %s", path,
                  strerror(errno));
    else
        sync_dir(spool);
    remove_file_entry(spool, file->seq);
    spool->stats.corrupt_skipped += file->damaged;
    spool_file_release(file);
}
