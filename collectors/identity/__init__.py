"""Who owns a socket or a CPU sample, whatever network namespace and cgroup it lives in.

One model (`model.Identity`) for Flows and Profiles: the process (pid, comm), its
OpenTelemetry resource (`otel.py`: service, version, environment, track), its cgroup
(`cgroup.py`: systemd unit, container id and runtime, Kubernetes pod UID and QoS class),
its network namespace (`netns.py`), and, with a Kubernetes API configured, its pod
(`kube_pods.py`). `process.py` reads and caches a process's identity from /proc;
`sockets.py` finds the process behind a local socket in every network namespace.
"""
