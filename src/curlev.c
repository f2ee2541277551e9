#include "curlev.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

/* One transfer: owned by curlev from curlev_add() until it is reported. */
struct transfer {
    struct curlev *cev;
    CURL *easy;
    curlev_done_cb cb;
    void *arg;
    struct transfer *prev, *next;
};

/*
 * One socket that curl watches. curl may close a socket from inside any
 * of its calls. The context is then unlinked from curl at once but freed
 * only from the reap event, so no callback frees the event running it.
 */
struct sock_ctx {
    struct curlev *cev;
    curl_socket_t fd;
    struct event *ev;
    int dead;
    struct sock_ctx *prev, *next;
};

struct curlev {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct event *reap;
    struct transfer *transfers; /* running, newest first */
    struct sock_ctx *sockets;   /* live and dead, newest first */
    size_t running;
    size_t dead_sockets;
};

static void
sock_unlink(struct curlev *cev, struct sock_ctx *sc)
{
    if (sc->prev != NULL)
        sc->prev->next = sc->next;
    else
        cev->sockets = sc->next;
    if (sc->next != NULL)
        sc->next->prev = sc->prev;
}

static void
sock_destroy(struct curlev *cev, struct sock_ctx *sc)
{
    sock_unlink(cev, sc);
    if (sc->ev != NULL)
        event_free(sc->ev);
    free(sc);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct curlev *cev = arg;
    struct sock_ctx *sc = cev->sockets;

    while (sc != NULL && cev->dead_sockets > 0) {
        struct sock_ctx *next = sc->next;

        if (sc->dead) {
            sock_destroy(cev, sc);
            cev->dead_sockets--;
        }
        sc = next;
    }
}

/* Reports every finished transfer; never runs inside a curl callback. */
static void
report_done(struct curlev *cev)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(cev->multi, &left)) != NULL) {
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct transfer *t = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        /* msg is invalid from here on. */
        curl_multi_remove_handle(cev->multi, easy);
        if (t->prev != NULL)
            t->prev->next = t->next;
        else
            cev->transfers = t->next;
        if (t->next != NULL)
            t->next->prev = t->prev;
        cev->running--;
        t->cb(t->arg, easy, result);
        curl_easy_cleanup(easy);
        free(t);
    }
}

static void
socket_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sock_ctx *sc = arg;
    struct curlev *cev = sc->cev;
    int action = 0, running;

    if (what & EV_READ)
        action |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        action |= CURL_CSELECT_OUT;
    curl_multi_socket_action(cev->multi, fd, action, &running);
    report_done(cev);
}

static void
timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct curlev *cev = arg;
    int running;

    curl_multi_socket_action(cev->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    report_done(cev);
}

/* CURLMOPT_SOCKETFUNCTION: watch, re-watch or forget one socket. */
static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct curlev *cev = userp;
    struct sock_ctx *sc = socketp;
    short flags = EV_PERSIST;

    if (what == CURL_POLL_REMOVE) {
        if (sc != NULL) {
            event_del(sc->ev);
            curl_multi_assign(cev->multi, fd, NULL);
            sc->dead = 1;
            cev->dead_sockets++;
            event_active(cev->reap, EV_TIMEOUT, 0);
        }
        return 0;
    }

    if (sc == NULL) {
        sc = calloc(1, sizeof(*sc));
        if (sc == NULL)
            return -1;
        sc->cev = cev;
        sc->fd = fd;
        sc->ev = event_new(cev->base, fd, flags, socket_event_cb, sc);
        if (sc->ev == NULL) {
            free(sc);
            return -1;
        }
        sc->next = cev->sockets;
        if (cev->sockets != NULL)
            cev->sockets->prev = sc;
        cev->sockets = sc;
        curl_multi_assign(cev->multi, fd, sc);
    } else {
        event_del(sc->ev);
    }

    if (what & CURL_POLL_IN)
        flags |= EV_READ;
    if (what & CURL_POLL_OUT)
        flags |= EV_WRITE;
    /* The event is not pending after event_del(), so it may be reassigned
     * even from inside its own callback. */
    event_assign(sc->ev, cev->base, fd, flags, socket_event_cb, sc);
    return event_add(sc->ev, NULL) == 0 ? 0 : -1;
}

/*
 * CURLMOPT_TIMERFUNCTION: -1 deletes the timer, 0 requests a call soon.
 * curl must not be re-entered from here, so even 0 becomes a zero timeout
 * that fires on the next loop iteration.
 */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct curlev *cev = userp;
    struct timeval tv;

    if (timeout_ms < 0) {
        evtimer_del(cev->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(cev->timer, &tv) == 0 ? 0 : -1;
}

struct curlev *
curlev_new(struct event_base *base, long max_host_connections)
{
    struct curlev *cev;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    cev = calloc(1, sizeof(*cev));
    if (cev == NULL)
        goto fail;
    cev->base = base;
    cev->multi = curl_multi_init();
    cev->timer = evtimer_new(base, timer_event_cb, cev);
    cev->reap = event_new(base, -1, 0, reap_cb, cev);
    if (cev->multi == NULL || cev->timer == NULL || cev->reap == NULL)
        goto fail;
    curl_multi_setopt(cev->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(cev->multi, CURLMOPT_SOCKETDATA, cev);
    curl_multi_setopt(cev->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(cev->multi, CURLMOPT_TIMERDATA, cev);
    if (max_host_connections > 0)
        curl_multi_setopt(cev->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          max_host_connections);
    return cev;

fail:
    if (cev != NULL) {
        if (cev->multi != NULL)
            curl_multi_cleanup(cev->multi);
        if (cev->timer != NULL)
            event_free(cev->timer);
        if (cev->reap != NULL)
            event_free(cev->reap);
        free(cev);
    }
    curl_global_cleanup();
    return NULL;
}

void
curlev_free(struct curlev *cev)
{
    if (cev == NULL)
        return;
    while (cev->transfers != NULL) {
        struct transfer *t = cev->transfers;

        cev->transfers = t->next;
        curl_multi_remove_handle(cev->multi, t->easy);
        curl_easy_cleanup(t->easy);
        free(t);
    }
    /* Closes the cached connections, which may still call socket_cb. */
    curl_multi_cleanup(cev->multi);
    while (cev->sockets != NULL)
        sock_destroy(cev, cev->sockets);
    event_free(cev->timer);
    event_free(cev->reap);
    free(cev);
    curl_global_cleanup();
}

int
curlev_add(struct curlev *cev, CURL *easy, curlev_done_cb cb, void *arg)
{
    struct transfer *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -1;
    t->cev = cev;
    t->easy = easy;
    t->cb = cb;
    t->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(cev->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(t);
        return -1;
    }
    t->next = cev->transfers;
    if (cev->transfers != NULL)
        cev->transfers->prev = t;
    cev->transfers = t;
    cev->running++;
    return 0;
}

size_t
curlev_running(const struct curlev *cev)
{
    return cev->running;
}

int
curlev_resolver_is_async(void)
{
    const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);

    return (info->features & CURL_VERSION_ASYNCHDNS) != 0;
}

const char *
curlev_resolver_name(char *buf, size_t len)
{
    const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);

    if (!(info->features & CURL_VERSION_ASYNCHDNS))
        snprintf(buf, len, "synchronous");
    else if (info->ares != NULL)
        snprintf(buf, len, "c-ares %s", info->ares);
    else
        snprintf(buf, len, "threaded");
    return buf;
}
