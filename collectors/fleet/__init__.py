"""The fleet: every node's ebpftop agent, read back through Prometheus (`ebpftop --fleet URL`).

model.py       the payload (FleetNode, FleetData) and its alarms
filter.py      the operator's filter (service / namespace / pod) as PromQL matchers
queries.py     the PromQL, one query per column, by node
rank.py        worst first: agents down, failing canaries, then outliers against the
               median of the other nodes
collector.py   FleetCollector: the queries through the canary's Prometheus client
"""
