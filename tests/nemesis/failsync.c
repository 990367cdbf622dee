/* failsync.so: an LD_PRELOAD shim that makes the durability calls of a process fail
 * with EIO while the file named by $FAILSYNC_TRIGGER exists: fsync, fdatasync,
 * syncfs, msync with MS_SYNC, sync_file_range, io_submit (libaio's, and the raw
 * syscall(SYS_io_submit, ...) canonical/raft's disk layer makes) and syscall() for
 * fsync and fdatasync. Without the trigger every call goes to the real function.
 * Each failed call appends its name to "$FAILSYNC_TRIGGER.hits", so a test can tell
 * a process that made no sync call from one that carried on after a failure.
 * tests/nemesis/nemesis.sh preloads it into avmd (docs: tests/nemesis/README.md). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* Whether the trigger exists; if so, the failed call is recorded. */
static int failing(const char *what)
{
    const char *t = getenv("FAILSYNC_TRIGGER");
    if (t == NULL || t[0] == '\0')
        return 0;
    int saved = errno;
    if (access(t, F_OK) != 0) {
        errno = saved;
        return 0;
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s.hits", t) < sizeof(path)) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char line[64];
            int n = snprintf(line, sizeof(line), "%s\n", what);
            if (n > 0 && write(fd, line, (size_t)n) < 0) {
                /* nothing to do: the hit count is advisory */
            }
            close(fd);
        }
    }
    errno = EIO;
    return 1;
}

/* The next definition of name (the real function). */
static void *real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        fprintf(stderr, "failsync: no %s to forward to\n", name);
        abort();
    }
    return f;
}

int fsync(int fd)
{
    static int (*f)(int);
    if (failing("fsync"))
        return -1;
    if (f == NULL)
        *(void **)&f = real("fsync");
    return f(fd);
}

int fdatasync(int fd)
{
    static int (*f)(int);
    if (failing("fdatasync"))
        return -1;
    if (f == NULL)
        *(void **)&f = real("fdatasync");
    return f(fd);
}

int syncfs(int fd)
{
    static int (*f)(int);
    if (failing("syncfs"))
        return -1;
    if (f == NULL)
        *(void **)&f = real("syncfs");
    return f(fd);
}

int msync(void *addr, size_t len, int flags)
{
    static int (*f)(void *, size_t, int);
    if ((flags & MS_SYNC) && failing("msync"))
        return -1;
    if (f == NULL)
        *(void **)&f = real("msync");
    return f(addr, len, flags);
}

int sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags)
{
    static int (*f)(int, off64_t, off64_t, unsigned int);
    if (failing("sync_file_range"))
        return -1;
    if (f == NULL)
        *(void **)&f = real("sync_file_range");
    return f(fd, off, n, flags);
}

/* libaio's io_submit returns a negative errno. */
struct iocb;
int io_submit(void *ctx, long nr, struct iocb **iocbpp);
int io_submit(void *ctx, long nr, struct iocb **iocbpp)
{
    static int (*f)(void *, long, struct iocb **);
    if (failing("io_submit"))
        return -EIO;
    if (f == NULL)
        *(void **)&f = dlsym(RTLD_NEXT, "io_submit");
    if (f == NULL)
        return (int)syscall(SYS_io_submit, ctx, nr, iocbpp);
    return f(ctx, nr, iocbpp);
}

/* syscall() takes at most six register arguments on Linux; they are forwarded as
 * longs, which is how the kernel receives them. */
long syscall(long number, ...)
{
    static long (*f)(long, ...);
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_io_submit && failing("syscall(io_submit)"))
        return -1;
    if ((number == SYS_fsync || number == SYS_fdatasync) && failing("syscall(fsync)"))
        return -1;
    if (f == NULL)
        *(void **)&f = real("syscall");
    return f(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
