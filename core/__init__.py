"""Core: data model, codec, bus, store, settings/config, record/replay, runtime, action
gate, audit log, untrusted text. No Textual, no BPF; imports no other ebpftop layer."""
