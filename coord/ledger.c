#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int nn_ledger_create(const char *path, int n_shards, nn_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return nn_fail(err, "%s: cannot create the progress ledger: %s", path, strerror(errno));
    char header[64];
    int n = snprintf(header, sizeof header, "nnterp-ledger 1 shards %d\n", n_shards);
    int rc = write_all(fd, header, (size_t)n) || fsync(fd) ? NN_ERR : NN_OK;
    close(fd);
    return rc ? nn_fail(err, "%s: cannot write the progress ledger (disk full?)", path) : NN_OK;
}

int nn_ledger_read(const char *path, int n_shards, bool *done, nn_err *err)
{
    char *text = NULL;
    size_t size = 0;
    if (nn_file_read(path, 1u << 30, &text, &size, err))
        return nn_err_prefix(err, "progress ledger");
    int declared = -1, rc = NN_OK;
    if (size == 0) {
        rc = nn_fail(err,
                     "%s: not a ledger of this job (it is empty: the store's creation was "
                     "interrupted; remove the .partial and its .ledger to start over)",
                     path);
        goto done;
    }
    if (sscanf(text, "nnterp-ledger 1 shards %d\n", &declared) != 1 || declared != n_shards) {
        rc = nn_fail(err,
                     "%s: not a ledger of this job (%d shards, the job plans %d): the dataset or "
                     "batch_tokens changed since the store was begun",
                     path, declared, n_shards);
        goto done;
    }
    memset(done, 0, (size_t)n_shards * sizeof *done);
    char *line = strchr(text, '\n');
    if (!line) { /* sscanf's "\n" also matches the end of the text: a torn header */
        rc = nn_fail(err, "%s: the header line is incomplete", path);
        goto done;
    }
    line++;
    while (line < text + size) {
        char *nl = strchr(line, '\n');
        if (!nl) {
            /* A torn last line (a crash or a full disk while appending) commits nothing; cut it
             * off, or the next append would join it into a malformed line. */
            if (truncate(path, (off_t)(line - text)) != 0)
                rc = nn_fail(err, "%s: cannot cut off its torn last line: %s", path,
                             strerror(errno));
            break;
        }
        int s;
        char extra;
        if (sscanf(line, "shard %d%c", &s, &extra) == 2 && extra == '\n' && s >= 0 && s < n_shards)
            done[s] = true;
        else {
            rc = nn_fail(err, "%s: malformed line '%.*s'", path, (int)(nl - line), line);
            goto done;
        }
        line = nl + 1;
    }
done:
    nn_free(text);
    return rc;
}

int nn_ledger_append(const char *path, int shard, nn_err *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return nn_fail(err, "%s: cannot open the progress ledger: %s", path, strerror(errno));
    char line[32];
    int n = snprintf(line, sizeof line, "shard %d\n", shard);
    int rc = write_all(fd, line, (size_t)n) || fsync(fd) ? NN_ERR : NN_OK;
    close(fd);
    return rc ? nn_fail(err, "%s: cannot append to the progress ledger (disk full?)", path) : NN_OK;
}

int nn_ledger_count(const char *path, int *committed, nn_err *err)
{
    char *text = NULL;
    size_t size = 0;
    if (nn_file_read(path, 1u << 30, &text, &size, err))
        return nn_err_prefix(err, "progress ledger");
    int n = 0;
    for (const char *p = text; (p = strstr(p, "shard ")); p++)
        n++;
    nn_free(text);
    *committed = n;
    return NN_OK;
}

int nn_ledger_lock(const char *path, bool create, int *fd_out, nn_err *err)
{
    *fd_out = -1;
    int fd = open(path, create ? O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (errno == EEXIST || errno == ENOENT)
            return nn_fail(err, "%s: %s", path, strerror(errno));
        return nn_fail(err, "%s: cannot %s the progress ledger: %s", path,
                       create ? "create" : "open",
                       errno == EROFS ? "read-only file system" : strerror(errno));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        /* A file system without locks (some NFS and Lustre mounts): O_EXCL alone guards. */
        if (e == ENOLCK || e == ENOSYS || e == EOPNOTSUPP || e == EINVAL) {
            *fd_out = -1;
            return NN_OK;
        }
        if (e == EWOULDBLOCK)
            return nn_fail(err,
                           "%s is locked: another process is running this job now (wait for it "
                           "or stop it; nothing was touched)",
                           path);
        return nn_fail(err, "%s: cannot lock the progress ledger: %s", path, strerror(e));
    }
    *fd_out = fd;
    return NN_OK;
}

bool nn_ledger_is_locked(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool locked = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return locked;
}

void nn_ledger_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}
