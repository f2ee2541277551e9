/*
 * --workers N: a parent process that forks N workers sharing the public
 * port through SO_REUSEPORT, restarts any that die, and passes SIGTERM and
 * SIGINT on. Worker 0 alone serves the admin listener, so the admin port
 * needs no sharing; each worker has a spool folder of its own, so a
 * restarted worker replays exactly what its predecessor spooled.
 */
#include "supervise.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/util.h>

#include "log.h"

#define RESTART_DELAY_MS 500

static volatile sig_atomic_t stop_signal;

static void
on_stop(int sig)
{
    stop_signal = sig;
}

/*
 * Binds (without listening) a SO_REUSEPORT socket on the public address so
 * that port 0 becomes a real port every worker then joins, and the port
 * stays reserved while workers restart. Rewrites cfg->listen.
 */
static int
reserve_port(struct config *cfg, int *fd_out)
{
    char host[64], buf[96];
    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    socklen_t len;
    int fd, one = 1, port;

    /* The same "host:port" or "[v6]:port" syntax evhttp binds. libevent
     * rejects an explicit port 0, but reads a missing port as 0. */
    snprintf(buf, sizeof(buf), "%s", cfg->listen);
    if (strlen(buf) > 2 && strcmp(buf + strlen(buf) - 2, ":0") == 0)
        buf[strlen(buf) - 2] = '\0';
    memset(&ss, 0, sizeof(ss));
    if (evutil_parse_sockaddr_port(buf, (struct sockaddr *)&ss, &sslen) != 0)
        return -1;
    len = (socklen_t)sslen;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        port = ntohs(sin6->sin6_port);
        snprintf(buf, sizeof(buf), "[%s]:%d", host, port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        port = ntohs(sin->sin_port);
        snprintf(buf, sizeof(buf), "%s:%d", host, port);
    }
    free(cfg->listen);
    cfg->listen = strdup(buf);
    *fd_out = fd;
    return cfg->listen ? 0 : -1;
}

/* Turns this process into worker index: its own spool, admin or not. */
static int
become_worker(struct config *cfg, int index)
{
    if (index > 0) {
        free(cfg->admin_listen);
        cfg->admin_listen = strdup("");
        if (cfg->admin_listen == NULL)
            return -1;
    }
    if (cfg->spool_dir[0] != '\0') {
        size_t len = strlen(cfg->spool_dir) + 32;
        char *dir = malloc(len);

        if (dir == NULL)
            return -1;
        /* The parent folder must exist before the worker's own. */
        if (mkdir(cfg->spool_dir, 0700) != 0 && errno != EEXIST) {
            free(dir);
            return -1;
        }
        snprintf(dir, len, "%s/worker-%d", cfg->spool_dir, index);
        free(cfg->spool_dir);
        cfg->spool_dir = dir;
    }
    return 0;
}

int
supervise(struct config *cfg, int *worker_index)
{
    int n = (int)cfg->workers, reserved_fd = -1, live = 0;
    pid_t *pids = calloc((size_t)n, sizeof(*pids));
    uint64_t *started = calloc((size_t)n, sizeof(*started));
    struct sigaction sa;

    if (pids == NULL || started == NULL ||
        reserve_port(cfg, &reserved_fd) != 0) {
        log_error("cannot reserve the public port %s for %d workers: %s",
                  cfg->listen, n, strerror(errno));
        free(pids);
        free(started);
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    log_info("supervisor pid=%d starting %d workers on public=%s",
             (int)getpid(), n, cfg->listen);

    while (!stop_signal) {
        int status;
        pid_t pid;

        for (int i = 0; i < n && !stop_signal; i++) {
            if (pids[i] != 0)
                continue;
            if (started[i] != 0 &&
                clock_monotonic_ms() - started[i] < RESTART_DELAY_MS)
                continue;
            pid = fork();
            if (pid == 0) {
                signal(SIGTERM, SIG_DFL);
                signal(SIGINT, SIG_DFL);
                close(reserved_fd);
                free(pids);
                free(started);
                *worker_index = i;
                return become_worker(cfg, i) == 0 ? -1 : 1;
            }
            if (pid < 0) {
                log_error("cannot start worker %d: %s", i, strerror(errno));
                continue;
            }
            pids[i] = pid;
            started[i] = clock_monotonic_ms();
            live++;
            log_info("worker %d started pid=%d", i, (int)pid);
        }

        pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECHILD)
                usleep(100000);
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (pids[i] != pid)
                continue;
            pids[i] = 0;
            live--;
            if (!stop_signal) {
                if (WIFSIGNALED(status))
                    log_error("worker %d pid=%d killed by signal %d; "
                              "restarting it",
                              i, (int)pid, WTERMSIG(status));
                else
                    log_error("worker %d pid=%d exited with status %d; "
                              "restarting it",
                              i, (int)pid, WEXITSTATUS(status));
                /* A worker that dies at once must not spin the parent. */
                if (clock_monotonic_ms() - started[i] < RESTART_DELAY_MS)
                    usleep(RESTART_DELAY_MS * 1000);
            }
        }
    }

    log_info("supervisor stopping %d workers on signal %d", live,
             (int)stop_signal);
    for (int i = 0; i < n; i++) {
        if (pids[i] != 0)
            kill(pids[i], SIGTERM);
    }
    while (live > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);

        if (pid < 0 && errno != EINTR)
            break;
        if (pid > 0)
            live--;
    }
    close(reserved_fd);
    free(pids);
    free(started);
    log_info("supervisor exiting");
    return 0;
}
