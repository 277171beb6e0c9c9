"""The command line: argparse verbs, and the one place that wires Runtime, Gate and
AuditLog."""
