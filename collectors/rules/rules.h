/* Limits, flags and map value layouts shared by rules.bpf.c and user space.
 *
 * The one definition: collectors/rules/layout.py reads every `#define NAME value`
 * below at import (values: integers, or + - * / << | of integers and earlier names),
 * and test_rules_layout compiles this header with bcc and checks that the struct
 * offsets and sizes layout.py computes are the compiler's. Change a number here and
 * both sides follow; change a struct and the test says which part moved. */
#ifndef EBPFTOP_RULES_H
#define EBPFTOP_RULES_H

#define MAX_RULES 256
#define WORDS (MAX_RULES / 64)      /* u64 words in a rule vector (struct bits) */
#define MAX_SLOTS (2 * MAX_RULES)   /* a full set being replaced by another full set needs both */
#define CHILD 0x8000  /* a table entry that points at a node rather than naming a class */
#define NODES 512     /* IPv4 trie nodes per field: one prefix per rule, at most two nodes each */
#define ACLS 512      /* address classes per field (one per prefix, + none) */
/* proto: [(v6 * 2 + dir) * 256 + proto] = rules of that protocol and family that
 * name no interface and allow the direction; [1024 + v6 * 256 + proto] = every rule of
 * that protocol and family (ANDed with the interface's vector when rules name one). */
#define PROTO_ENTRIES 1536
#define PCLS 1024     /* port classes per field (at most 2 * MAX_RULES + 1 intervals) */
#define PINT 32       /* port intervals searched in place (struct pint) */
#define HSLOTS 1024   /* IPv4 host hash slots per field (struct a4tab) */
#define WILDS 8       /* wildcard vectors in struct cfg, indexed by W_* */

/* struct rule.action */
#define ACTION_COUNT 0
#define ACTION_ALLOW 1
#define ACTION_DENY 2

/* The lowest set bit of a vector: (b * DEBRUIJN) >> 58 is distinct for each one-bit b;
 * struct setv's ctz maps it back to the bit (see lowest() in rules.bpf.c). */
#define DEBRUIJN 0x03f79d71b4ca8b09ULL

struct bits { u64 w[WORDS]; };
struct key6 { u32 prefixlen; u32 addr[4]; };
struct rule { u32 slot; u32 action; u64 expires; }; /* slot: the rule's key in base; expires: jiffies, 0 = never */
/* A field whose rules all name one prefix (IPv4) or one port range is compared here
 * instead of looked up: lo/hi = network/mask, or first/last port. */
struct inl { u32 lo, hi; };
struct cfg { u64 gen; u32 nrules; u32 fields; struct inl src4, dst4, sport, dport; struct bits wild[WILDS]; };
struct counter { u64 packets; u64 bytes; u64 last; u64 pad; }; /* last: jiffies; 32 bytes: never across two lines */
/* base: u64 folded (the generation of the last set whose counters were added in), three
 * u64 of padding, then a struct counter per slot. Opaque bytes, like the tables below. */
#define BASE_HEAD 32
struct base { char b[BASE_HEAD + MAX_SLOTS * sizeof(struct counter)]; };
struct exptime { u64 t[MAX_RULES]; };
/* Ports: one entry per port names the class of its interval. A class vector already
 * holds the field's wildcard rules (class 0: only those), so one AND applies it. */
struct ptab { u16 root[65536]; struct bits cls[PCLS]; };
/* Ports again, when a field has at most PINT intervals: each interval's last port
 * (ascending, padded with 65535) and its vector. The search's compares are predicted
 * branches, so the vector's address is known without waiting for a load; through
 * root, the class's address waits for root's line (two dependent reads, on two pages
 * 128 KB apart). Here it sits beside cfg, on the page every packet reads anyway. */
struct pint { u16 hi[PINT]; struct bits v[PINT]; };
/* IPv4 addresses: host addresses (/32) in a cuckoo hash, each in one of two slots that
 * hold the host's vector beside its key (one line: a probe is one read), the other
 * prefixes in a 16-8-8 multibit trie with the longest match pushed to the leaves, read
 * only when the hash has no entry. Array reads only, never a function call. The two
 * hash multipliers are in struct cfg (inl.lo, inl.hi). */
struct hslot { u32 key; u32 pad[7]; struct bits v; };
struct a4tab { struct hslot h[HSLOTS]; u16 root[65536]; u16 node[NODES][256]; struct bits cls[ACLS]; };
/* Everything the IPv4 path of one set reads, in one map value: one lookup, then fixed
 * offsets (each map lookup is a dozen instructions on the hot path). Parts start on
 * 64-byte boundaries; layout.SET_PARTS lists them in this order. */
struct setv {
    struct cfg cfg; u64 pad0[2];
    u8 ctz[64]; /* see lowest() */
    struct pint spi, dpi; /* beside cfg: the same page */
    struct bits proto[PROTO_ENTRIES];
    struct rule rules[MAX_RULES];
    struct exptime exp;
    struct bits alive[MAX_RULES + 2]; /* + 1 unused: the next part starts on a line */
    struct ptab sport, dport;
    struct a4tab src4, dst4;
};
/* The map holds it as opaque bytes: bcc generates a text codec for every map value type,
 * element by element, which for these tables takes a minute to compile. */
struct setraw { char b[sizeof(struct setv)]; };

/* struct cfg.wild indexes */
#define W_SRC4 0
#define W_SRC6 1
#define W_DST4 2
#define W_DST6 3
#define W_SPORT 4
#define W_DPORT 5
/* struct cfg.fields: which lookups the program must do (a field nobody constrains is skipped) */
#define F_SRC4 1
#define F_SRC6 2
#define F_DST4 4
#define F_DST6 8
#define F_SPORT 16
#define F_DPORT 32
#define F_IFDIR 64
#define F_TTL 128
#define I_SRC4 256 /* compared inline (struct inl), no table */
#define I_DST4 512
#define I_SPORT 1024
#define I_DPORT 2048
#define H_SRC4 4096 /* the field's table has host entries (hash) */
#define H_DST4 8192
#define T_SRC4 16384 /* the field's table has shorter prefixes (trie) */
#define T_DST4 32768
#define P_SPORT 65536 /* the port field is searched in struct pint, not in struct ptab */
#define P_DPORT 131072

#endif
