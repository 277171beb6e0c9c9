/* ebpftop policy rules: classify each packet against the active rule set.
 *
 * Two complete map sets, a and b; `active[0]` says which one the program reads. User
 * space fills the inactive set and flips `active` with one array update, so a packet
 * sees the old set or the new one, never a mix. Every field lookup yields a 256-bit
 * vector of the rules it allows; their AND's lowest set bit is the first match.
 * Counters are per CPU and keyed by the rule's stable slot, not its position.
 * All maps are pinned under PIN_DIR: enforcement outlives the process (the tcx link
 * is pinned too).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>

#define WORDS 4
#define MAX_RULES 256
#define MAX_SLOTS 512

struct bits { u64 w[WORDS]; };
struct key4 { u32 prefixlen; u32 addr; };
struct key6 { u32 prefixlen; u32 addr[4]; };
struct keyp { u32 prefixlen; u8 port[2]; u8 pad[2]; };
struct rule { u32 slot; u32 action; u64 expires; };
struct meta { u64 gen; u32 nrules; u32 fields; };
struct counter { u64 packets; u64 bytes; u64 last; };
struct exptime { u64 t[MAX_RULES]; };
struct wildset { struct bits v[8]; }; /* one lookup for every field's wildcard vector */

enum { W_SRC4, W_SRC6, W_DST4, W_DST6, W_SPORT, W_DPORT, W_IN, W_OUT };
#define F_SRC4 1
#define F_SRC6 2
#define F_DST4 4
#define F_DST6 8
#define F_SPORT 16
#define F_DPORT 32
#define F_IFDIR 64
#define F_TTL 128

BPF_TABLE_PINNED("array", u32, u32, active, 1, "@PIN@/active");
BPF_TABLE_PINNED("percpu_array", u32, struct counter, counters, MAX_SLOTS, "@PIN@/counters");

struct pkt {
    u8 v6, has_ports, proto, dir;
    u32 ifindex;
    u32 src4, dst4;
    u32 src6[4], dst6[4];
    u16 sport, dport; /* network order bytes kept as they are */
};

static __always_inline void and_into(struct bits *acc, struct bits *wild, struct bits *hit) {
#pragma unroll
    for (int i = 0; i < WORDS; i++)
        acc->w[i] &= (wild ? wild->w[i] : 0) | (hit ? hit->w[i] : 0);
}

static __always_inline int empty(struct bits *acc) {
    return !(acc->w[0] | acc->w[1] | acc->w[2] | acc->w[3]);
}

/* LLVM's BPF backend cannot lower __builtin_ctzll (bcc crashes), so: six steps. */
static __always_inline u32 ctz64(u64 w) {
    u32 n = 0;
    if (!(w & 0xffffffffULL)) { n += 32; w >>= 32; }
    if (!(w & 0xffff)) { n += 16; w >>= 16; }
    if (!(w & 0xff)) { n += 8; w >>= 8; }
    if (!(w & 0xf)) { n += 4; w >>= 4; }
    if (!(w & 0x3)) { n += 2; w >>= 2; }
    if (!(w & 0x1)) n += 1;
    return n;
}

static __always_inline int verdict(struct rule *r, struct __sk_buff *skb, u64 now) {
    u32 slot = r->slot;
    struct counter *c = counters.lookup(&slot);
    if (c) {
        c->packets += 1;
        c->bytes += skb->len;
        c->last = now;
    }
    return r->action == 2 ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

/* Map declarations and the per-set classifier are generated per set by loader.py
 * (bcc cannot rewrite map calls inside macros): @S@ is the set, @PIN@ the pin dir. */
//SET-BEGIN
BPF_TABLE_PINNED7("lpm_trie", struct key4, struct bits, src4_@S@, LPM_MAX, "@PIN@/src4_@S@", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED7("lpm_trie", struct key4, struct bits, dst4_@S@, LPM_MAX, "@PIN@/dst4_@S@", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED7("lpm_trie", struct key6, struct bits, src6_@S@, LPM_MAX, "@PIN@/src6_@S@", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED7("lpm_trie", struct key6, struct bits, dst6_@S@, LPM_MAX, "@PIN@/dst6_@S@", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED7("lpm_trie", struct keyp, struct bits, sport_@S@, PORT_MAX, "@PIN@/sport_@S@", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED7("lpm_trie", struct keyp, struct bits, dport_@S@, PORT_MAX, "@PIN@/dport_@S@", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("array", u32, struct bits, proto_@S@, 256, "@PIN@/proto_@S@");
BPF_TABLE_PINNED("hash", u32, struct bits, ifdir_@S@, 1024, "@PIN@/ifdir_@S@");
BPF_TABLE_PINNED("array", u32, struct wildset, wild_@S@, 1, "@PIN@/wild_@S@");
BPF_TABLE_PINNED("array", u32, struct rule, rules_@S@, MAX_RULES, "@PIN@/rules_@S@");
BPF_TABLE_PINNED("array", u32, struct meta, meta_@S@, 1, "@PIN@/meta_@S@");
BPF_TABLE_PINNED("array", u32, struct exptime, exptime_@S@, 1, "@PIN@/exptime_@S@");
BPF_TABLE_PINNED("array", u32, struct bits, alive_@S@, MAX_RULES + 1, "@PIN@/alive_@S@");

/* The lowest set bit is the first match: no loop over rules. */
static __always_inline int first_@S@(struct bits *acc, struct __sk_buff *skb) {
    u32 pos;
    if (acc->w[0]) pos = ctz64(acc->w[0]);
    else if (acc->w[1]) pos = 64 + ctz64(acc->w[1]);
    else if (acc->w[2]) pos = 128 + ctz64(acc->w[2]);
    else if (acc->w[3]) pos = 192 + ctz64(acc->w[3]);
    else return TC_ACT_UNSPEC;
    struct rule *r = rules_@S@.lookup(&pos);
    if (!r) return TC_ACT_UNSPEC;
    return verdict(r, skb, bpf_ktime_get_coarse_ns());
}

/* TTLs in the kernel: exptime holds the set's distinct expiry times, sorted, padded with
 * ~0; alive[k] is the vector of rules still alive once k of those times have passed.
 * A fixed nine-step binary search finds k, whatever the number of rules. */
static __always_inline void drop_expired_@S@(struct bits *acc) {
    u32 z = 0;
    struct exptime *e = exptime_@S@.lookup(&z);
    if (!e) return;
    u64 now = bpf_ktime_get_coarse_ns();
    u32 k = 0;
#pragma unroll
    for (u32 step = 128; step; step >>= 1) {
        u32 i = (k + step - 1) & 0xff;
        if (e->t[i] <= now) k += step;
    }
    if (e->t[k & 0xff] <= now) k += 1;
    struct bits *alive = alive_@S@.lookup(&k);
    and_into(acc, alive, 0);
}

static __always_inline int classify_@S@(struct pkt *p, struct __sk_buff *skb) {
    u32 z = 0;
    struct meta *m = meta_@S@.lookup(&z);
    if (!m || !m->nrules) return TC_ACT_UNSPEC;
    u32 fields = m->fields;
    struct bits acc;
    u32 k = p->proto;
    struct bits *pb = proto_@S@.lookup(&k);
    if (!pb) return TC_ACT_UNSPEC;
    __builtin_memcpy(&acc, pb, sizeof(acc));
    struct wildset *ws = wild_@S@.lookup(&z);
    if (!ws) return TC_ACT_UNSPEC;
    u32 wi = p->dir ? W_OUT : W_IN;
    struct bits *hit = 0;
    if (fields & F_IFDIR) { u32 ik = p->ifindex * 2 + p->dir; hit = ifdir_@S@.lookup(&ik); }
    and_into(&acc, &ws->v[wi], hit);
    if (empty(&acc)) return TC_ACT_UNSPEC;
    if (p->v6) {
        hit = 0; wi = W_SRC6;
        if (fields & F_SRC6) { struct key6 k6 = {128}; __builtin_memcpy(k6.addr, p->src6, 16); hit = src6_@S@.lookup(&k6); }
        and_into(&acc, &ws->v[wi], hit);
        hit = 0; wi = W_DST6;
        if (fields & F_DST6) { struct key6 k6 = {128}; __builtin_memcpy(k6.addr, p->dst6, 16); hit = dst6_@S@.lookup(&k6); }
        and_into(&acc, &ws->v[wi], hit);
    } else {
        hit = 0; wi = W_SRC4;
        if (fields & F_SRC4) { struct key4 k4 = {32, p->src4}; hit = src4_@S@.lookup(&k4); }
        and_into(&acc, &ws->v[wi], hit);
        hit = 0; wi = W_DST4;
        if (fields & F_DST4) { struct key4 k4 = {32, p->dst4}; hit = dst4_@S@.lookup(&k4); }
        and_into(&acc, &ws->v[wi], hit);
    }
    if (empty(&acc)) return TC_ACT_UNSPEC;
    hit = 0; wi = W_SPORT;
    if (p->has_ports && (fields & F_SPORT)) { struct keyp kp = {16}; __builtin_memcpy(kp.port, &p->sport, 2); hit = sport_@S@.lookup(&kp); }
    and_into(&acc, &ws->v[wi], hit);
    hit = 0; wi = W_DPORT;
    if (p->has_ports && (fields & F_DPORT)) { struct keyp kp = {16}; __builtin_memcpy(kp.port, &p->dport, 2); hit = dport_@S@.lookup(&kp); }
    and_into(&acc, &ws->v[wi], hit);
    if (fields & F_TTL) drop_expired_@S@(&acc);
    return first_@S@(&acc, skb);
}
//SET-END

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p, int l2) {
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    u16 eth = skb->protocol;
    u32 l4off;
    if (eth == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = data + l2;
        if ((void *)(ip + 1) > end) return -1;
        p->proto = ip->protocol;
        p->src4 = ip->saddr;
        p->dst4 = ip->daddr;
        l4off = l2 + ip->ihl * 4;
        p->has_ports = (ip->frag_off & bpf_htons(0x1fff)) == 0;
    } else if (eth == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = data + l2;
        if ((void *)(ip6 + 1) > end) return -1;
        p->v6 = 1;
        p->proto = ip6->nexthdr; /* extension headers: classified by their type, no ports */
        __builtin_memcpy(p->src6, &ip6->saddr, 16);
        __builtin_memcpy(p->dst6, &ip6->daddr, 16);
        l4off = l2 + sizeof(*ip6);
        p->has_ports = 1;
    } else {
        return -1;
    }
    if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) {
        p->has_ports = 0;
    } else if (p->has_ports) {
        /* Direct access when the ports are in the linear area (the usual case);
         * bpf_skb_load_bytes costs ~70 ns a packet here, so only as the fallback. */
        u16 *l4 = data + (l4off & 0xff);
        if ((void *)(l4 + 2) <= end) {
            p->sport = l4[0];
            p->dport = l4[1];
        } else {
            u16 ports[2];
            if (bpf_skb_load_bytes(skb, l4off, ports, 4) < 0) {
                p->has_ports = 0;
            } else {
                p->sport = ports[0];
                p->dport = ports[1];
            }
        }
    }
    return 0;
}

static __always_inline int rules(struct __sk_buff *skb, u8 dir, int l2) {
    struct pkt p = {};
    if (parse(skb, &p, l2) < 0) return TC_ACT_UNSPEC;
    p.dir = dir;
    p.ifindex = skb->ifindex;
    u32 z = 0;
    u32 *act = active.lookup(&z);
    if (act && *act) return classify_b(&p, skb);
    return classify_a(&p, skb);
}

/* Names start with "ebpftop_rl" so cleanup can tell them from the flows programs. */
int ebpftop_rl_in(struct __sk_buff *skb) { return rules(skb, 0, ETH_HLEN); }
int ebpftop_rl_eg(struct __sk_buff *skb) { return rules(skb, 1, ETH_HLEN); }
int ebpftop_rl3_in(struct __sk_buff *skb) { return rules(skb, 0, 0); }
int ebpftop_rl3_eg(struct __sk_buff *skb) { return rules(skb, 1, 0); }
