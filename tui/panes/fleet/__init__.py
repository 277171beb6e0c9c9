"""The fleet pane (`ebpftop --fleet URL`): one row per node, worst first."""
