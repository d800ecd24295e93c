/*
 * ai-sim: command line, listening socket, signals and the event loop.
 */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "sim.h"


#define SIM_MAX_BODY_LIMIT   (1024UL * 1024 * 1024)      /* 1g */


static void
sim_usage(FILE *f)
{
    fprintf(f,
        "usage: ai-sim --port N --id ID [--host 127.0.0.1] [--ttft-ms 40]\n"
        "              [--tpot-ms 4] [--jitter 0.1] [--max-body 1m]\n"
        "              [--fail-rate 0.0] [--cut-rate 0.0] [--seed N]\n"
        "              [--idle-timeout 10] [--slots N]\n"
        "              [--prefill-us-per-token U] [--prefix-cache-tokens N]\n"
        "              [--decode-us-per-kv-token U] [--kv-cache-tokens N]\n"
        "\n"
        "  --port N          port to listen on, 0 for an ephemeral one\n"
        "  --id ID           replica id, sent back in X-Server-Id\n"
        "  --host ADDR       address to bind (default 127.0.0.1)\n"
        "  --ttft-ms MS      time to first token (default 40)\n"
        "  --tpot-ms MS      time per output token (default 4)\n"
        "  --jitter F        latency factor spread, 0..1 (default 0.1)\n"
        "  --max-body SIZE   largest request body, e.g. 512k (default 1m)\n"
        "  --fail-rate F     share of inference requests answered 500, 0..1\n"
        "  --cut-rate F      share of streams cut mid-way: the connection\n"
        "                    closes without the last chunk and [DONE], 0..1\n"
        "                    (a request header \"X-Sim-Cut: N\" cuts its\n"
        "                    stream after N content events)\n"
        "  --seed N          seed for jitter, failures and cuts\n"
        "                    (default: time)\n"
        "  --idle-timeout S  close a connection idle for S seconds, between\n"
        "                    requests or inside one (default 10)\n"
        "\n"
        "  the inference server's model (all off by default):\n"
        "  --slots N         at most N sequences decode at once, the others\n"
        "                    wait in a FIFO queue (default 0: no limit)\n"
        "  --prefill-us-per-token U\n"
        "                    the first token comes U microseconds later for\n"
        "                    each prompt token not in the prefix cache\n"
        "                    (a token: 4 bytes of prompt text; default 0)\n"
        "  --prefix-cache-tokens N\n"
        "                    an LRU prefix cache of N tokens in blocks of\n"
        "                    16, as vLLM's automatic prefix caching\n"
        "                    (default 0: none)\n"
        "  --decode-us-per-kv-token U\n"
        "                    each decode step (and the step that makes a\n"
        "                    first token) takes U microseconds longer per\n"
        "                    token the running sequences hold: prompts and\n"
        "                    tokens generated so far (default 0)\n"
        "  --kv-cache-tokens N\n"
        "                    a sequence starts only when its prompt plus\n"
        "                    max_tokens fit beside the running sequences'\n"
        "                    in N tokens; else it waits in the FIFO queue\n"
        "                    (default 0: no limit)\n");
}


static int
sim_parse_double(const char *s, double min, double max, double *out)
{
    char    *end;
    double   v;

    errno = 0;
    v = strtod(s, &end);

    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)
        || v < min || v > max)
    {
        return -1;
    }

    *out = v;

    return 0;
}


static int
sim_parse_uint(const char *s, unsigned long long max,
    unsigned long long *out)
{
    char                *end;
    unsigned long long   v;

    if (s[0] < '0' || s[0] > '9') {
        return -1;
    }

    errno = 0;
    v = strtoull(s, &end, 10);

    if (errno != 0 || *end != '\0' || v > max) {
        return -1;
    }

    *out = v;

    return 0;
}


/* "123", "512k", "1m", "1g", as nginx's size parameters */
static int
sim_parse_size(const char *s, size_t *out)
{
    char                *end;
    unsigned long long   v, unit;

    if (s[0] < '0' || s[0] > '9') {
        return -1;
    }

    errno = 0;
    v = strtoull(s, &end, 10);

    if (errno != 0) {
        return -1;
    }

    switch (*end) {
    case '\0':
        unit = 1;
        break;
    case 'k':
    case 'K':
        unit = 1024;
        end++;
        break;
    case 'm':
    case 'M':
        unit = 1024 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        unit = 1024 * 1024 * 1024;
        end++;
        break;
    default:
        return -1;
    }

    if (*end != '\0' || v == 0 || v > SIM_MAX_BODY_LIMIT / unit) {
        return -1;
    }

    *out = (size_t) (v * unit);

    return 0;
}


static int
sim_parse_args(int argc, char **argv, sim_conf_t *conf)
{
    int                  c, have_port;
    const char          *p;
    unsigned long long   v;

    static const struct option  options[] = {
        { "port", required_argument, NULL, 'p' },
        { "id", required_argument, NULL, 'i' },
        { "host", required_argument, NULL, 'H' },
        { "ttft-ms", required_argument, NULL, 't' },
        { "tpot-ms", required_argument, NULL, 'T' },
        { "jitter", required_argument, NULL, 'j' },
        { "max-body", required_argument, NULL, 'b' },
        { "fail-rate", required_argument, NULL, 'f' },
        { "cut-rate", required_argument, NULL, 'c' },
        { "idle-timeout", required_argument, NULL, 'I' },
        { "seed", required_argument, NULL, 's' },
        { "slots", required_argument, NULL, 'S' },
        { "prefill-us-per-token", required_argument, NULL, 'P' },
        { "prefix-cache-tokens", required_argument, NULL, 'C' },
        { "decode-us-per-kv-token", required_argument, NULL, 'D' },
        { "kv-cache-tokens", required_argument, NULL, 'K' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    conf->host = "127.0.0.1";
    conf->id = NULL;
    conf->port = -1;
    conf->ttft_ms = 40;
    conf->tpot_ms = 4;
    conf->jitter = 0.1;
    conf->max_body = 1024 * 1024;
    conf->fail_rate = 0;
    conf->cut_rate = 0;
    conf->idle_timeout = SIM_IDLE_TIMEOUT;
    conf->slots = 0;
    conf->prefill_us = 0;
    conf->prefix_tokens = 0;
    conf->decode_us = 0;
    conf->kv_tokens = 0;
    conf->seed = 0;
    conf->seed_set = 0;

    have_port = 0;

    /* only long options: a leading ':' lets us word the errors ourselves */
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {

        switch (c) {

        case 'p':
            if (sim_parse_uint(optarg, 65535, &v) != 0) {
                fprintf(stderr, "ai-sim: invalid --port \"%s\"\n", optarg);
                return -1;
            }

            conf->port = (int) v;
            have_port = 1;
            break;

        case 'i':
            for (p = optarg; *p; p++) {
                /* it goes into a header: printable ASCII, no spaces */
                if (*p <= ' ' || *p >= 0x7f) {
                    break;
                }
            }

            if (optarg[0] == '\0' || *p != '\0' || p - optarg > 64) {
                fprintf(stderr, "ai-sim: invalid --id \"%s\"\n", optarg);
                return -1;
            }

            conf->id = optarg;
            break;

        case 'H':
            if (optarg[0] == '\0') {
                fprintf(stderr, "ai-sim: empty --host\n");
                return -1;
            }

            conf->host = optarg;
            break;

        case 't':
            if (sim_parse_double(optarg, 0, 3600000, &conf->ttft_ms) != 0) {
                fprintf(stderr, "ai-sim: invalid --ttft-ms \"%s\"\n",
                        optarg);
                return -1;
            }

            break;

        case 'T':
            if (sim_parse_double(optarg, 0, 60000, &conf->tpot_ms) != 0) {
                fprintf(stderr, "ai-sim: invalid --tpot-ms \"%s\"\n",
                        optarg);
                return -1;
            }

            break;

        case 'j':
            if (sim_parse_double(optarg, 0, 1, &conf->jitter) != 0) {
                fprintf(stderr, "ai-sim: invalid --jitter \"%s\", "
                        "expected 0..1\n", optarg);
                return -1;
            }

            break;

        case 'b':
            if (sim_parse_size(optarg, &conf->max_body) != 0) {
                fprintf(stderr, "ai-sim: invalid --max-body \"%s\"\n",
                        optarg);
                return -1;
            }

            break;

        case 'f':
            if (sim_parse_double(optarg, 0, 1, &conf->fail_rate) != 0) {
                fprintf(stderr, "ai-sim: invalid --fail-rate \"%s\", "
                        "expected 0..1\n", optarg);
                return -1;
            }

            break;

        case 'c':
            if (sim_parse_double(optarg, 0, 1, &conf->cut_rate) != 0) {
                fprintf(stderr, "ai-sim: invalid --cut-rate \"%s\", "
                        "expected 0..1\n", optarg);
                return -1;
            }

            break;

        case 'I':
            if (sim_parse_double(optarg, 0.001, 86400, &conf->idle_timeout)
                != 0)
            {
                fprintf(stderr, "ai-sim: invalid --idle-timeout \"%s\", "
                        "expected seconds, 0.001..86400\n", optarg);
                return -1;
            }

            break;

        case 's':
            if (sim_parse_uint(optarg, UINT64_MAX, &v) != 0) {
                fprintf(stderr, "ai-sim: invalid --seed \"%s\"\n", optarg);
                return -1;
            }

            conf->seed = v;
            conf->seed_set = 1;
            break;

        case 'S':
            if (sim_parse_uint(optarg, SIM_SLOTS_MAX, &v) != 0) {
                fprintf(stderr, "ai-sim: invalid --slots \"%s\", expected "
                        "0..%u\n", optarg, SIM_SLOTS_MAX);
                return -1;
            }

            conf->slots = (unsigned) v;
            break;

        case 'P':
            if (sim_parse_double(optarg, 0, 1000000, &conf->prefill_us) != 0)
            {
                fprintf(stderr, "ai-sim: invalid --prefill-us-per-token "
                        "\"%s\", expected microseconds, 0..1000000\n",
                        optarg);
                return -1;
            }

            break;

        case 'C':
            if (sim_parse_uint(optarg, SIM_PREFIX_MAX_TOKENS, &v) != 0
                || (v > 0 && v < SIM_PREFIX_BLOCK_TOKENS))
            {
                fprintf(stderr, "ai-sim: invalid --prefix-cache-tokens "
                        "\"%s\", expected 0 or %u..%u\n", optarg,
                        SIM_PREFIX_BLOCK_TOKENS, SIM_PREFIX_MAX_TOKENS);
                return -1;
            }

            conf->prefix_tokens = v;
            break;

        case 'D':
            if (sim_parse_double(optarg, 0, SIM_BATCH_MAX_US,
                                 &conf->decode_us) != 0)
            {
                fprintf(stderr, "ai-sim: invalid --decode-us-per-kv-token "
                        "\"%s\", expected microseconds, 0..%.0f\n", optarg,
                        SIM_BATCH_MAX_US);
                return -1;
            }

            break;

        case 'K':
            if (sim_parse_uint(optarg, SIM_BATCH_MAX_TOKENS, &v) != 0) {
                fprintf(stderr, "ai-sim: invalid --kv-cache-tokens \"%s\", "
                        "expected 0..%llu\n", optarg,
                        (unsigned long long) SIM_BATCH_MAX_TOKENS);
                return -1;
            }

            conf->kv_tokens = v;
            break;

        case 'h':
            sim_usage(stdout);
            exit(0);

        case ':':
            fprintf(stderr, "ai-sim: option \"%s\" needs a value\n",
                    argv[optind - 1]);
            return -1;

        default:
            fprintf(stderr, "ai-sim: unknown option \"%s\"\n",
                    argv[optind - 1]);
            return -1;
        }
    }

    if (optind < argc) {
        fprintf(stderr, "ai-sim: unexpected argument \"%s\"\n",
                argv[optind]);
        return -1;
    }

    if (!have_port || conf->id == NULL) {
        fprintf(stderr, "ai-sim: --port and --id are required\n");
        return -1;
    }

    return 0;
}


/*
 * We listen ourselves rather than through evhttp_bind_socket() to get a
 * deep backlog: a burst of thousands of connects must not be dropped
 * into SYN retransmits, which would look like latency we did not model.
 */
static int
sim_listen(sim_conf_t *conf, char *name, size_t size)
{
    int                       fd, rc, on;
    char                      port[8], addr[INET6_ADDRSTRLEN];
    socklen_t                 len;
    struct addrinfo           hints, *res;
    struct sockaddr_storage   ss;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;

    snprintf(port, sizeof(port), "%d", conf->port);

    rc = getaddrinfo(conf->host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "ai-sim: cannot resolve \"%s\": %s\n", conf->host,
                gai_strerror(rc));
        return -1;
    }

    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                res->ai_protocol);
    if (fd == -1) {
        fprintf(stderr, "ai-sim: socket() failed: %s\n", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }

    on = 1;
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));

    /*
     * Tokens are small writes paced by timers: without TCP_NODELAY, Nagle
     * holds each behind the ack of the one before (delayed ack: up to
     * 40 ms), so a kept-alive connection saw its first token 20 ms late.
     * Accepted sockets inherit it from the listener on Linux.
     */
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));

    if (bind(fd, res->ai_addr, res->ai_addrlen) == -1
        || listen(fd, SIM_BACKLOG) == -1)
    {
        fprintf(stderr, "ai-sim: cannot listen on %s:%d: %s\n", conf->host,
                conf->port, strerror(errno));
        freeaddrinfo(res);
        close(fd);
        return -1;
    }

    freeaddrinfo(res);

    len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *) &ss, &len) == -1
        || evutil_make_socket_nonblocking(fd) != 0)
    {
        fprintf(stderr, "ai-sim: cannot set up the listening socket: %s\n",
                strerror(errno));
        close(fd);
        return -1;
    }

    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6  *sin6 = (struct sockaddr_in6 *) &ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
        snprintf(name, size, "[%s]:%u", addr, ntohs(sin6->sin6_port));

    } else {
        struct sockaddr_in   *sin = (struct sockaddr_in *) &ss;

        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        snprintf(name, size, "%s:%u", addr, ntohs(sin->sin_port));
    }

    return fd;
}


static void
sim_raise_nofile(void)
{
    struct rlimit  rl;

    /* thousands of requests in flight are thousands of sockets */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }
}


static void
sim_signal_handler(evutil_socket_t sig, short what, void *arg)
{
    sim_ctx_t  *ctx;

    (void) sig;
    (void) what;

    ctx = arg;

    /* leave the loop; main() frees everything in order */
    event_base_loopbreak(ctx->base);
}


int
main(int argc, char **argv)
{
    int               fd, rc;
    char              name[INET6_ADDRSTRLEN + 16];
    uint64_t          seed;
    sim_ctx_t         ctx;
    struct timespec   ts;
    struct event     *sigint, *sigterm;

    memset(&ctx, 0, sizeof(ctx));

    if (sim_parse_args(argc, argv, &ctx.conf) != 0) {
        sim_usage(stderr);
        return 2;
    }

    /* a client gone mid-stream must be a write error, not a dead process */
    signal(SIGPIPE, SIG_IGN);

    sim_raise_nofile();

    if (ctx.conf.seed_set) {
        seed = ctx.conf.seed;

    } else {
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t) ts.tv_sec << 32) ^ (uint64_t) ts.tv_nsec
               ^ ((uint64_t) getpid() << 16);
    }

    /*
     * Cuts draw from their own generator: with one --seed, which streams
     * are cut depends only on the order of the streams, not on how many
     * jitter and failure draws other requests made in between (the
     * constant is "cut-rate" in ASCII).
     */
    sim_rng_seed(&ctx.rng, seed);
    sim_rng_seed(&ctx.cut_rng, seed ^ 0x6375742d72617465ULL);

    ctx.start_ms = sim_now_ms();

    fd = sim_listen(&ctx.conf, name, sizeof(name));
    if (fd == -1) {
        return 1;
    }

    rc = 1;
    sigint = NULL;
    sigterm = NULL;

    ctx.base = event_base_new();
    if (ctx.base == NULL) {
        fprintf(stderr, "ai-sim: event_base_new() failed\n");
        close(fd);
        goto done;
    }

    if (sim_sched_init(&ctx) != 0) {
        close(fd);
        goto done;
    }

    /* it owns fd from here, also when it fails */
    if (sim_http_init(&ctx, fd) != 0) {
        fprintf(stderr, "ai-sim: cannot start the HTTP server\n");
        goto done;
    }

    sigint = evsignal_new(ctx.base, SIGINT, sim_signal_handler, &ctx);
    sigterm = evsignal_new(ctx.base, SIGTERM, sim_signal_handler, &ctx);

    if (sigint == NULL || sigterm == NULL
        || evsignal_add(sigint, NULL) != 0
        || evsignal_add(sigterm, NULL) != 0)
    {
        fprintf(stderr, "ai-sim: cannot install signal handlers\n");
        goto done;
    }

    /* the harness waits for exactly this line to learn the port */
    printf("listening %s\n", name);
    fflush(stdout);

    if (event_base_dispatch(ctx.base) == -1) {
        fprintf(stderr, "ai-sim: event loop failed\n");
        goto done;
    }

    rc = 0;

done:

    /* our timers first: evhttp_free() then frees connections, requests */
    sim_req_free_all(&ctx);

    if (ctx.http != NULL) {
        evhttp_free(ctx.http);
    }

    sim_accept_free(&ctx);
    sim_sched_free(&ctx);

    if (sigint != NULL) {
        event_free(sigint);
    }

    if (sigterm != NULL) {
        event_free(sigterm);
    }

    if (ctx.base != NULL) {
        event_base_free(ctx.base);
    }

    libevent_global_shutdown();

    return rc;
}
