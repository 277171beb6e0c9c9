/* TCP connection events from stable tracepoints only (sock:inet_sock_set_state,
 * tcp:tcp_retransmit_skb). bcc builds the argument structs from tracefs, so no
 * kernel-internal struct is read and header/kernel mismatches do not matter.
 *
 * Filled in by the loader (cflags): RB_PAGES, USE_PERFBUF on kernels without a BPF
 * ring buffer, RETRANS_HAS_ERR when tcp_retransmit_skb has an `err` field. */
#include <uapi/linux/bpf.h>
#include "flows.h"

#define TCP_ESTABLISHED_ 1
#define TCP_SYN_SENT_    2
#define TCP_SYN_RECV_    3
#define TCP_CLOSE_       7
#define TCP_LISTEN_      10
#define AF_INET_         2
#define AF_INET6_        10
#define IPPROTO_TCP_     6

/* Who opened a socket and since when; keyed by the socket's address, which is only
 * an identity here, never dereferenced. */
struct sk_info {
    u64 ts_ns;
    u32 pid;
    char comm[16];
};

struct tcp_tuple {
    u8  saddr[16];
    u8  daddr[16];
    u16 sport;
    u16 dport;
    u8  family;
    u8  pad[3];
};

BPF_TABLE("lru_hash", u64, struct sk_info, socks, 65536);
BPF_TABLE("lru_hash", struct tcp_tuple, u64, retrans, 65536);
BPF_PERCPU_ARRAY(tcounters, u64, TCNT_MAX);

#ifdef USE_PERFBUF
BPF_PERF_OUTPUT(events);
#else
BPF_RINGBUF_OUTPUT(events, RB_PAGES);
#endif

static __always_inline void tbump(int idx)
{
    u64 *c = tcounters.lookup(&idx);
    if (c)
        (*c)++;
}

#define FILL_ADDRS(dst, a)                                            \
    do {                                                              \
        if ((a)->family == AF_INET6_) {                               \
            (dst)->family = 6;                                        \
            __builtin_memcpy((dst)->saddr, (a)->saddr_v6, 16);        \
            __builtin_memcpy((dst)->daddr, (a)->daddr_v6, 16);        \
        } else {                                                      \
            (dst)->family = 4;                                        \
            __builtin_memcpy((dst)->saddr, (a)->saddr, 4);            \
            __builtin_memcpy((dst)->daddr, (a)->daddr, 4);            \
        }                                                             \
        (dst)->sport = (a)->sport;                                    \
        (dst)->dport = (a)->dport;                                    \
    } while (0)

/* Map helpers cannot sit inside macros in bcc: allocation and submission are
 * functions, only the argument copying (whose struct differs per tracepoint) is a
 * macro. */
static __always_inline struct tcp_event *ev_alloc(struct tcp_event *scratch)
{
#ifdef USE_PERFBUF
    __builtin_memset(scratch, 0, sizeof(*scratch));
    return scratch;
#else
    struct tcp_event *ev = events.ringbuf_reserve(sizeof(*ev));
    if (!ev) {
        tbump(TCNT_LOST);
        return 0;
    }
    __builtin_memset(ev, 0, sizeof(*ev));
    return ev;
#endif
}

static __always_inline void ev_submit(void *ctx, struct tcp_event *ev)
{
#ifdef USE_PERFBUF
    if (events.perf_submit(ctx, ev, sizeof(*ev)) == 0)
        tbump(TCNT_EVENTS);
    else
        tbump(TCNT_LOST);
#else
    events.ringbuf_submit(ev, 0);
    tbump(TCNT_EVENTS);
#endif
}

#define EMIT(ctx, a, TYPE, VALUE, INFO)                               \
    do {                                                              \
        struct tcp_event scratch;                                     \
        struct tcp_event *ev = ev_alloc(&scratch);                    \
        if (!ev)                                                      \
            break;                                                    \
        FILL_EVENT(ev, a, TYPE, VALUE, INFO);                         \
        ev_submit(ctx, ev);                                           \
    } while (0)

#define FILL_EVENT(ev, a, TYPE, VALUE, INFO)                          \
    do {                                                              \
        (ev)->ts_ns = bpf_ktime_get_ns();                             \
        (ev)->type = (TYPE);                                          \
        (ev)->value_ns = (VALUE);                                     \
        FILL_ADDRS(ev, a);                                            \
        if (INFO) {                                                   \
            (ev)->pid = (INFO)->pid;                                  \
            __builtin_memcpy((ev)->comm, (INFO)->comm, 16);           \
        }                                                             \
    } while (0)

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP_)
        return 0;
    u64 sk = (u64)args->skaddr;
    int os = args->oldstate;
    int ns = args->newstate;
    u64 now = bpf_ktime_get_ns();

    if (ns == TCP_SYN_SENT_) {
        /* connect() runs in the process: this is the moment pid and comm are true. */
        struct sk_info info = {};
        info.ts_ns = now;
        info.pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(&info.comm, sizeof(info.comm));
        socks.update(&sk, &info);
        return 0;
    }
    if (ns == TCP_ESTABLISHED_ && (os == TCP_SYN_SENT_ || os == TCP_SYN_RECV_)) {
        struct sk_info *prev = socks.lookup(&sk);
        struct sk_info info = {};
        info.ts_ns = now;
        u64 latency = 0;
        if (prev) {
            latency = now - prev->ts_ns;
            info.pid = prev->pid;
            __builtin_memcpy(info.comm, prev->comm, 16);
        }
        struct sk_info *pinfo = &info;
        EMIT(args, args, os == TCP_SYN_SENT_ ? EV_CONNECT : EV_ACCEPT, latency, pinfo);
        socks.update(&sk, &info);
        return 0;
    }
    if (ns == TCP_CLOSE_ && os != TCP_LISTEN_) {
        struct sk_info *prev = socks.lookup(&sk);
        u64 took = prev ? now - prev->ts_ns : 0;
        EMIT(args, args, os == TCP_SYN_SENT_ ? EV_CONNECT_FAIL : EV_CLOSE, took, prev);
        socks.delete(&sk);
    }
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
#ifdef RETRANS_HAS_ERR
    /* Newer kernels also report attempts that failed (queue full...): nothing
     * went out, so it is not a retransmission on the wire. */
    if (args->err)
        return 0;
#endif
    struct tcp_tuple t = {};
    FILL_ADDRS(&t, args);
    u64 zero = 0;
    u64 *c = retrans.lookup_or_try_init(&t, &zero);
    if (c)
        __sync_fetch_and_add(c, 1);
    struct sk_info *none = 0;
    EMIT(args, args, EV_RETRANSMIT, 0, none);
    return 0;
}
