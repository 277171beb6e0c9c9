/* ebpftop policy rules: classify each packet against the active rule set.
 *
 * Two complete map sets, a and b; `active[0]` says which one the program reads. User
 * space fills the inactive set and flips `active` with one array update, so a packet
 * sees the old set or the new one, never a mix. Every field lookup yields a 256-bit
 * vector of the rules it allows; their AND's lowest set bit is the first match.
 * Counters are per CPU and per set position: one plain array, CPU-major
 * ([cpu][set][position]), so their address is known as soon as the match is (keyed by
 * the rule's slot, it waited for the rule record: one more dependent cache miss; a per-CPU
 * array's lookup goes through a pointer table first: another). A rule's counts survive
 * updates through `base`, which user space alone writes: after each switch it waits for
 * the programs still running on the old set, adds that set's counters into base under
 * the rule's stable slot and zeroes them (datapath.py).
 * All maps are pinned under PIN_DIR: enforcement outlives the process (the tcx link
 * is pinned too).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>

#include "rules.h"

/* On this class of machine every call (helper or non-inlined map lookup) costs 30-40 ns
 * (retpolines, return thunks), so the hot path uses only what the verifier inlines:
 * array and per-CPU array lookups and bpf_jiffies64. The hash and LPM maps left are
 * reached only by rules naming an interface or an IPv6 prefix. */
BPF_TABLE_PINNED("array", u32, u32, active, 1, "@PIN@/active");
/* The pin's name says which layout these maps have (datapath.LAYOUT); never read. */
BPF_TABLE_PINNED("array", u32, u32, layout5, 1, "@PIN@/layout5");
/* [cpu * MAX_SLOTS + set * MAX_RULES + position]; NCPUS = possible CPUs. Mappable: user
 * space reads and zeroes it in memory, every rule of every CPU without a syscall. */
BPF_TABLE_PINNED7("array", u32, struct counter, counters, NCPUS * MAX_SLOTS, "@PIN@/counters", BPF_F_MMAPABLE);
/* Counts of earlier generations by stable slot; never read here (one value: one write). */
BPF_TABLE_PINNED("array", u32, struct base, base, 1, "@PIN@/base");

struct pkt {
    u8 v6, has_ports, proto, dir;
    u32 src4, dst4; /* host order */
    u16 sport, dport; /* host order */
    u32 src6[4], dst6[4];
};

static __always_inline void and_into(struct bits *acc, struct bits *wild, struct bits *hit) {
#pragma unroll
    for (int i = 0; i < WORDS; i++)
        acc->w[i] &= wild->w[i] | (hit ? hit->w[i] : 0);
}

static __always_inline void and_vec(struct bits *acc, struct bits *v) {
#pragma unroll
    for (int i = 0; i < WORDS; i++)
        acc->w[i] &= v->w[i];
}

static __always_inline int empty(struct bits *acc) {
    return !(acc->w[0] | acc->w[1] | acc->w[2] | acc->w[3]);
}

/* Hosts only (no shorter prefix in the field): two probes, else the field's wildcard
 * rules (class 0). */
static __always_inline struct bits *a4_hosts(struct a4tab *t, u32 a, struct inl *m) {
    if (a) { /* 0.0.0.0 is the key of empty slots: never hashed */
        struct hslot *s = &t->h[((u64)a * m->lo >> 22) & (HSLOTS - 1)];
        if (s->key == a) return &s->v;
        s = &t->h[((u64)a * m->hi >> 22) & (HSLOTS - 1)];
        if (s->key == a) return &s->v;
    }
    return &t->cls[0];
}

/* Hosts (if any) first, then the trie. */
static __always_inline struct bits *a4_lookup(struct a4tab *t, u32 a, struct inl *m, int hosts) {
    u32 e;
    if (hosts && a) {
        struct hslot *s = &t->h[((u64)a * m->lo >> 22) & (HSLOTS - 1)];
        if (s->key == a) return &s->v;
        s = &t->h[((u64)a * m->hi >> 22) & (HSLOTS - 1)];
        if (s->key == a) return &s->v;
    }
    e = t->root[a >> 16];
    if (e & CHILD) {
        e = t->node[e & (NODES - 1)][(a >> 8) & 0xff];
        if (e & CHILD)
            e = t->node[e & (NODES - 1)][a & 0xff];
    }
    return &t->cls[e & (ACLS - 1)];
}

static __always_inline struct bits *port_lookup(struct ptab *t, u16 port) {
    return &t->cls[t->root[port] & (PCLS - 1)];
}

/* The first interval whose last port is >= port (hi[PINT - 1] is always 65535): five
 * compares in a tree written out, so every index is a constant (a loop's computed
 * indexes cost ~40 instructions). */
#define PK1(K) (port > t->hi[K] ? K + 1 : K)
#define PK2(K) (port > t->hi[K + 1] ? PK1(K + 2) : PK1(K))
#define PK4(K) (port > t->hi[K + 3] ? PK2(K + 4) : PK2(K))
#define PK8(K) (port > t->hi[K + 7] ? PK4(K + 8) : PK4(K))
static __always_inline struct bits *pint_lookup(struct pint *t, u32 port) {
    u32 k = port > t->hi[15] ? PK8(16) : PK8(0);
    return &t->v[k & (PINT - 1)];
}

/* The lowest set bit is the first match: no loop over rules. LLVM's BPF backend cannot
 * lower __builtin_ctzll (bcc crashes), and six halving steps are ~30 instructions: the
 * lowest bit alone (w & -w) times a de Bruijn constant puts a distinct 6-bit number in
 * the top bits, and set->ctz (written with the set, beside cfg) maps it to the bit. */
static __always_inline int lowest(struct setv *sv, struct bits *acc) {
    u64 w;
    u32 base;
    if (acc->w[0]) { w = acc->w[0]; base = 0; }
    else if (acc->w[1]) { w = acc->w[1]; base = 64; }
    else if (acc->w[2]) { w = acc->w[2]; base = 128; }
    else if (acc->w[3]) { w = acc->w[3]; base = 192; }
    else return -1;
    return base + sv->ctz[((w & -w) * DEBRUIJN) >> 58];
}

static __always_inline int verdict(struct rule *r, struct __sk_buff *skb, u64 now, u32 at) {
    u32 i = bpf_get_smp_processor_id() * MAX_SLOTS + at; /* inlined: no call */
    struct counter *c = counters.lookup(&i);
    if (c) {
        c->packets += 1;
        c->bytes += skb->len;
        c->last = now;
    }
    return r->action == ACTION_DENY ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

/* TTLs in the kernel: exptime holds the set's distinct expiry times, sorted, padded with
 * ~0; alive[k] is the vector of rules still alive once k of those times have passed.
 * A fixed nine-step binary search finds k, whatever the number of rules. Only a packet
 * whose first match has expired pays for it. */
static __always_inline void drop_expired(struct setv *sv, struct bits *acc, u64 now) {
    struct exptime *e = &sv->exp;
    u32 k = 0;
#pragma unroll
    for (u32 step = 128; step; step >>= 1) {
        u32 i = (k + step - 1) & 0xff;
        if (e->t[i] <= now) k += step;
    }
    if (e->t[k & 0xff] <= now) k += 1;
    if (k > MAX_RULES) k = MAX_RULES;
    and_into(acc, &sv->alive[k], 0);
}

/* Map declarations and the per-set classifier are generated per set by datapath.source()
 * (bcc cannot rewrite map calls inside macros): @S@ is the set, @N@ its number, @PIN@
 * the pin dir. */
//SET-BEGIN
/* Mappable: user space writes and reads the inactive set in memory. */
BPF_TABLE_PINNED7("array", u32, struct setraw, set_@S@, 1, "@PIN@/set_@S@", BPF_F_MMAPABLE);
BPF_TABLE_PINNED7("lpm_trie", struct key6, struct bits, src6_@S@, LPM_MAX, "@PIN@/src6_@S@", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED7("lpm_trie", struct key6, struct bits, dst6_@S@, LPM_MAX, "@PIN@/dst6_@S@", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", u32, struct bits, ifdir_@S@, 1024, "@PIN@/ifdir_@S@");

/* A field nobody constrains is skipped: its wildcard holds every rule of the family,
 * and the protocol vector has already left out the other family's rules. */
static __always_inline int classify_@S@(struct pkt *p, struct __sk_buff *skb) {
    u32 z = 0;
    struct setv *sv = (void *)set_@S@.lookup(&z);
    if (!sv) return TC_ACT_UNSPEC;
    struct cfg *c = &sv->cfg;
    if (!c->nrules) return TC_ACT_UNSPEC;
    u32 fields = c->fields;
    struct bits *pb = &sv->proto[((p->v6 * 2 + p->dir) * 256 + p->proto) & 1023];
    struct bits acc;
    __builtin_memcpy(&acc, pb, sizeof(acc));
    if (fields & F_IFDIR) {
        u32 ik = skb->ifindex * 2 + p->dir; /* skb->dev->ifindex: read only when rules name one */
        struct bits *hit = ifdir_@S@.lookup(&ik);
        struct bits *all = &sv->proto[1024 + ((p->v6 * 256 + p->proto) & 511)];
        if (hit) {
#pragma unroll
            for (int i = 0; i < WORDS; i++)
                acc.w[i] |= all->w[i] & hit->w[i];
        }
    }
    if (empty(&acc)) return TC_ACT_UNSPEC;
    if (p->v6) {
        if (fields & F_SRC6) {
            struct key6 k6 = {128};
            __builtin_memcpy(k6.addr, p->src6, 16);
            and_into(&acc, &c->wild[W_SRC6], src6_@S@.lookup(&k6));
        }
        if (fields & F_DST6) {
            struct key6 k6 = {128};
            __builtin_memcpy(k6.addr, p->dst6, 16);
            and_into(&acc, &c->wild[W_DST6], dst6_@S@.lookup(&k6));
        }
    } else {
        /* One test picks the path: the field's flags, masked, equal one pattern. */
        u32 m = fields & (I_SRC4 | H_SRC4 | T_SRC4);
        if (m == H_SRC4) {
            and_vec(&acc, a4_hosts(&sv->src4, p->src4, &c->src4));
        } else if (m == I_SRC4) {
            if ((p->src4 & c->src4.hi) != c->src4.lo) and_vec(&acc, &c->wild[W_SRC4]);
        } else if (m) {
            and_vec(&acc, a4_lookup(&sv->src4, p->src4, &c->src4, fields & H_SRC4));
        }
        m = fields & (I_DST4 | H_DST4 | T_DST4);
        if (m == H_DST4) {
            and_vec(&acc, a4_hosts(&sv->dst4, p->dst4, &c->dst4));
        } else if (m == I_DST4) {
            if ((p->dst4 & c->dst4.hi) != c->dst4.lo) and_vec(&acc, &c->wild[W_DST4]);
        } else if (m) {
            and_vec(&acc, a4_lookup(&sv->dst4, p->dst4, &c->dst4, fields & H_DST4));
        }
    }
    if (fields & (F_SPORT | F_DPORT)) {
        if (!p->has_ports) {
            if (fields & F_SPORT) and_vec(&acc, &c->wild[W_SPORT]);
            if (fields & F_DPORT) and_vec(&acc, &c->wild[W_DPORT]);
        } else {
            u32 m = fields & (F_SPORT | I_SPORT | P_SPORT);
            if (m == (F_SPORT | P_SPORT)) {
                and_vec(&acc, pint_lookup(&sv->spi, p->sport));
            } else if (m == (F_SPORT | I_SPORT)) {
                if (p->sport < c->sport.lo || p->sport > c->sport.hi) and_vec(&acc, &c->wild[W_SPORT]);
            } else if (m) {
                and_vec(&acc, port_lookup(&sv->sport, p->sport));
            }
            m = fields & (F_DPORT | I_DPORT | P_DPORT);
            if (m == (F_DPORT | P_DPORT)) {
                and_vec(&acc, pint_lookup(&sv->dpi, p->dport));
            } else if (m == (F_DPORT | I_DPORT)) {
                if (p->dport < c->dport.lo || p->dport > c->dport.hi) and_vec(&acc, &c->wild[W_DPORT]);
            } else if (m) {
                and_vec(&acc, port_lookup(&sv->dport, p->dport));
            }
        }
    }
    u32 pos = lowest(sv, &acc);
    if (pos >= MAX_RULES) return TC_ACT_UNSPEC;
    struct rule *r = &sv->rules[pos & (MAX_RULES - 1)];
    u64 now = bpf_jiffies64(); /* inlined: a load, not a call */
    if (r->expires && r->expires <= now) {
        /* the first match has expired: take the first rule still alive */
        drop_expired(sv, &acc, now);
        pos = lowest(sv, &acc);
        if (pos >= MAX_RULES) return TC_ACT_UNSPEC;
        r = &sv->rules[pos & (MAX_RULES - 1)];
    }
    return verdict(r, skb, now, @N@ * MAX_RULES + (pos & (MAX_RULES - 1)));
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
        p->src4 = bpf_ntohl(ip->saddr);
        p->dst4 = bpf_ntohl(ip->daddr);
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
            p->sport = bpf_ntohs(l4[0]);
            p->dport = bpf_ntohs(l4[1]);
        } else {
            u16 ports[2];
            if (bpf_skb_load_bytes(skb, l4off, ports, 4) < 0) {
                p->has_ports = 0;
            } else {
                p->sport = bpf_ntohs(ports[0]);
                p->dport = bpf_ntohs(ports[1]);
            }
        }
    }
    return 0;
}

static __always_inline int rules(struct __sk_buff *skb, u8 dir, int l2) {
    struct pkt p = {};
    if (parse(skb, &p, l2) < 0) return TC_ACT_UNSPEC;
    p.dir = dir;
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
