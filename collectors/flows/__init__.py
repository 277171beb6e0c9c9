"""Flows: who talks to whom, how much, how badly -- from the kernel.

flows.bpf.c / flows.h   TC program: per (5-tuple, interface, direction) counters in an LRU hash
tcp_events.bpf.c        sock:inet_sock_set_state + tcp:tcp_retransmit_skb -> ring buffer
tcx.py                  BPF links (tcx) via bpf(2): detached by the kernel when we die
tclegacy.py             netlink clsact fallback (`tc`), leftovers found by program name
loader.py               compile, attach/detach per interface, batch map reads
tcp_events.py           event intake, connect latency, per-connection retransmits
table.py                one tick of the flow map, by column (the whole-map work runs in C loops)
rates.py                counters -> bytes/s, packets/s (pure)
attribution.py          pid/comm/service of a flow (kernel first, then psutil)
collector.py            FlowsCollector: all of the above -> FlowsData each tick
model.py                FlowsData / FlowRecord / TcpEvent / IfaceStatus (the payload)
filter.py, view.py      the pane's filter language, sorting and grouping (pure)
leftovers.py            what `ebpftop cleanup` finds and removes
"""
