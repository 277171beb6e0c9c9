"""ebpftop's own cost: its process, terminal output, BPF programs and losses."""
