// Deterministic loss for tests: drops some TCP data segments arriving for one port.
// The kernel here has no netem, and a token-bucket queue that drops by overflow can
// push TCP into long RTO backoff on a busy machine; a few spaced drops recover by
// fast retransmit in milliseconds, and the test knows exactly how many happened.
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/tcp.h>

// [0] data-carrying skbs seen, [1] dropped
BPF_ARRAY(lossy_stats, u64, 2);

int lossy_drop(struct __sk_buff *skb)
{
    struct iphdr ip;
    struct tcphdr tcp;
    if (skb->protocol != htons(ETH_P_IP))
        return TC_ACT_OK;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.protocol != IPPROTO_TCP)
        return TC_ACT_OK;
    u32 l4 = ETH_HLEN + ip.ihl * 4;
    if (bpf_skb_load_bytes(skb, l4, &tcp, sizeof(tcp)) < 0 || tcp.dest != htons(LOSSY_PORT))
        return TC_ACT_OK;
    if (skb->len <= l4 + tcp.doff * 4)
        return TC_ACT_OK;  // no payload: SYN, pure ACK, FIN stay
    int seen_key = 0, drop_key = 1;
    u64 *seen = lossy_stats.lookup(&seen_key);
    u64 *dropped = lossy_stats.lookup(&drop_key);
    if (!seen || !dropped)
        return TC_ACT_OK;
    u64 n = __sync_fetch_and_add(seen, 1);
    if (n % LOSSY_EVERY == LOSSY_EVERY / 2 && *dropped < LOSSY_MAX) {
        __sync_fetch_and_add(dropped, 1);
        return TC_ACT_SHOT;
    }
    return TC_ACT_OK;
}
