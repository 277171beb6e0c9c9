/* Layouts shared by the BPF programs and collectors/flows/layout.py.
 * Change both together: test_flows_layout checks the sizes match bcc's view. */
#ifndef EBPFTOP_FLOWS_H
#define EBPFTOP_FLOWS_H

/* Addresses are 16 bytes for both families; IPv4 uses the first 4. Ports are in
 * host byte order. */
struct flow_key {
    u8  saddr[16];
    u8  daddr[16];
    u32 ifindex;
    u16 sport;
    u16 dport;
    u8  proto;
    u8  family;     /* 4 or 6 */
    u8  dir;        /* 0 ingress, 1 egress */
    u8  pad;
};

struct flow_val {
    u64 packets;    /* wire packets: a GSO/GRO skb counts as its segments */
    u64 bytes;      /* link-layer header + IP packet, per wire packet, no FCS */
    u64 first;      /* jiffies (bpf_jiffies64; see collectors/kclock.py) */
    u64 last;
};

/* Kernel-side counters (per-CPU array indexes). */
#define CNT_INSERTS        0  /* new flow entries created */
#define CNT_UPDATE_FAILED  1  /* inserts the map refused (other than a lost race) */
#define CNT_NOT_IP         2  /* packets that were neither IPv4 nor IPv6 */
#define CNT_TRUNCATED      3  /* IP packets whose headers could not be read */
#define CNT_MAX            4

/* TCP events through the ring buffer. */
#define EV_CONNECT       1  /* SYN_SENT -> ESTABLISHED: value_ns = connect latency */
#define EV_CONNECT_FAIL  2  /* SYN_SENT -> CLOSE: value_ns = time spent trying */
#define EV_ACCEPT        3  /* SYN_RECV -> ESTABLISHED (passive open) */
#define EV_CLOSE         4  /* -> CLOSE: value_ns = time since established, 0 unknown */
#define EV_RETRANSMIT    5

#define TCNT_EVENTS      0  /* events submitted */
#define TCNT_LOST        1  /* events the ring buffer had no room for */
#define TCNT_MAX         2

struct tcp_event {
    u64 ts_ns;
    u64 value_ns;
    u32 pid;        /* 0 when not known (softirq context) */
    u16 sport;
    u16 dport;
    u8  saddr[16];
    u8  daddr[16];
    char comm[16];
    u8  type;
    u8  family;     /* 4 or 6 */
    u8  pad[6];
};

#endif
