/* Flow accounting at TC (tcx or clsact): one LRU hash entry per 5-tuple, interface
 * and direction. Nothing per packet goes to user space; it reads the map.
 *
 * Filled in by the loader (cflags): MAX_FLOWS.
 * Only packet bytes and __sk_buff fields are read: no kernel struct layouts, so the
 * 6.1 headers on a newer kernel do not matter. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include "flows.h"

#define EEXIST_ 17

BPF_TABLE("lru_hash", struct flow_key, struct flow_val, flows, MAX_FLOWS);
BPF_PERCPU_ARRAY(counters, u64, CNT_MAX);

static __always_inline void bump(int idx)
{
    u64 *c = counters.lookup(&idx);
    if (c)
        (*c)++;
}

/* Parse headers into `key`. Returns 0 when done, a positive length when the linear
 * part of the skb is too short for the headers (the caller may pull that much and
 * parse again), -1 when the packet is not IP. Only what is in the linear part is
 * read: pulling costs more than the whole accounting, so it happens only when a
 * header really is in a fragment. */
static __always_inline int parse(struct __sk_buff *skb, u32 l2len, struct flow_key *key,
                                 u32 *l4off_out, u32 *l4hdr_out)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    u32 l4off = 0;
    u8 proto = 0;
    int ports = 1;

    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = data + l2len;
        if ((void *)(ip + 1) > end)
            return l2len + sizeof(*ip);
        u32 ihl = ip->ihl * 4;
        if (ihl < sizeof(*ip))
            return -2;
        key->family = 4;
        __builtin_memcpy(key->saddr, &ip->saddr, 4);
        __builtin_memcpy(key->daddr, &ip->daddr, 4);
        proto = ip->protocol;
        if (ip->frag_off & bpf_htons(0x1fff))
            ports = 0; /* a later fragment: no L4 header in it */
        l4off = l2len + ihl;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = data + l2len;
        if ((void *)(ip6 + 1) > end)
            return l2len + sizeof(*ip6);
        key->family = 6;
        __builtin_memcpy(key->saddr, &ip6->saddr, 16);
        __builtin_memcpy(key->daddr, &ip6->daddr, 16);
        proto = ip6->nexthdr;
        l4off = l2len + sizeof(*ip6);
#pragma unroll
        for (int i = 0; i < 3; i++) {
            if (proto != IPPROTO_HOPOPTS && proto != IPPROTO_ROUTING &&
                proto != IPPROTO_DSTOPTS && proto != IPPROTO_FRAGMENT)
                break;
            u8 *ext = data + l4off;
            if ((void *)(ext + 8) > end)
                return l4off + 8;
            if (proto == IPPROTO_FRAGMENT) {
                if ((ext[2] << 8 | ext[3]) & 0xfff8)
                    ports = 0;
                l4off += 8;
            } else {
                l4off += (ext[1] + 1) * 8;
            }
            proto = ext[0];
        }
    } else {
        return -1;
    }
    key->proto = proto;
    *l4off_out = l4off;
    *l4hdr_out = 0;
    if (!ports)
        return 0;

    u8 *l4 = data + l4off;
    if (proto == IPPROTO_TCP) {
        if ((void *)(l4 + 13) > end)
            return l4off + 13;
        key->sport = l4[0] << 8 | l4[1];
        key->dport = l4[2] << 8 | l4[3];
        *l4hdr_out = (l4[12] >> 4) * 4;
    } else if (proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE || proto == IPPROTO_SCTP) {
        if ((void *)(l4 + 4) > end)
            return l4off + 4;
        key->sport = l4[0] << 8 | l4[1];
        key->dport = l4[2] << 8 | l4[3];
        if (proto != IPPROTO_SCTP)
            *l4hdr_out = 8;
    } else if (proto == IPPROTO_ICMP || proto == 58 /* ICMPv6 */) {
        /* ICMP has no ports: type and code take their place. */
        if ((void *)(l4 + 2) > end)
            return l4off + 2;
        key->sport = l4[0];
        key->dport = l4[1];
    }
    return 0;
}

static __always_inline int account(struct __sk_buff *skb, u8 dir, u32 l2len)
{
    struct flow_key key = {};
    u32 l4off = 0, l4hdr = 0;
    int need = parse(skb, l2len, &key, &l4off, &l4hdr);
    if (need > 0) {
        u32 linear = skb->data_end - skb->data;
        if (skb->len > linear) {
            bpf_skb_pull_data(skb, (u32)need < skb->len ? (u32)need : skb->len);
            __builtin_memset(&key, 0, sizeof(key));
            need = parse(skb, l2len, &key, &l4off, &l4hdr);
        }
    }
    if (need == -1) {
        bump(CNT_NOT_IP);
        return TC_ACT_UNSPEC;
    }
    if (need != 0) {
        bump(CNT_TRUNCATED);
        if (!key.family)
            return TC_ACT_UNSPEC; /* not even the IP header: nothing to key on */
        key.sport = key.dport = 0; /* addresses known, ports not: still counted */
    }
    key.ifindex = skb->ifindex;
    key.dir = dir;

    /* A GSO (egress) or GRO (ingress) skb carries several wire packets: count them
     * as the wire does, each with its own copy of the headers. */
    u64 packets = 1;
    u64 bytes = skb->len;
    u32 segs = skb->gso_segs;
    if (skb->gso_size && segs > 1) {
        packets = segs;
        bytes += (u64)(segs - 1) * (l4off + l4hdr);
    }

    /* Jiffies: the verifier inlines bpf_jiffies64 into a load, where every ktime
     * helper is a call (~35 ns here); the collector converts (collectors/kclock.py). */
    u64 now = bpf_jiffies64();
    struct flow_val *v = flows.lookup(&key);
    if (!v) {
        struct flow_val nv = {.packets = packets, .bytes = bytes, .first = now, .last = now};
        int err = flows.insert(&key, &nv);
        if (err == 0) {
            bump(CNT_INSERTS);
            return TC_ACT_UNSPEC;
        }
        if (err != -EEXIST_) {
            bump(CNT_UPDATE_FAILED);
            return TC_ACT_UNSPEC;
        }
        v = flows.lookup(&key); /* another CPU inserted it first */
        if (!v) {
            bump(CNT_UPDATE_FAILED);
            return TC_ACT_UNSPEC;
        }
    }
    __sync_fetch_and_add(&v->packets, packets);
    __sync_fetch_and_add(&v->bytes, bytes);
    v->last = now;
    return TC_ACT_UNSPEC; /* == TCX_NEXT: observe only, never change the verdict */
}

/* Program names start with "ebpftop_" so cleanup can recognise them (15 chars max). */
int ebpftop_fl_in(struct __sk_buff *skb) { return account(skb, 0, ETH_HLEN); }
int ebpftop_fl_eg(struct __sk_buff *skb) { return account(skb, 1, ETH_HLEN); }
/* Devices without a link-layer header (tun, wireguard): the IP header comes first. */
int ebpftop_fl3_in(struct __sk_buff *skb) { return account(skb, 0, 0); }
int ebpftop_fl3_eg(struct __sk_buff *skb) { return account(skb, 1, 0); }
