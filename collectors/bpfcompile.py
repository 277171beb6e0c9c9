"""One process-wide lock around bcc compilation.

libbcc compiles with clang/LLVM, which is not thread-safe: two `BPF(...)` constructors
running at once in different threads (flows and profiles start together, each in
`asyncio.to_thread`) fail with missing-header errors or crash the process with SIGSEGV
(iovisor/bcc#4500). Every `BPF(...)` call holds this lock; compilations queue, the event
loop does not wait.
"""

from __future__ import annotations

import threading

COMPILE_LOCK = threading.Lock()
