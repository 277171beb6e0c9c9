"""Building the lab's Go service (goservice/main.go) with Debian's `go`, once per source.

The binary is cached under the lab's state dir by the hash of the source and of `go
version`, so `lab up` builds only after either changed (about 10 s on two CPUs). Go's
build cache lives in a temporary directory removed after the build: the state dir is on
tmpfs, and 8 MB of binary is all that stays (an older one is removed). Standard library
only, no modules (GO111MODULE=off): nothing is downloaded, and there is no network in
the lab anyway.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import LabError

SOURCE = Path(__file__).with_name("goservice") / "main.go"
PART = "goservice"
BUILD_TIMEOUT = 300.0


def go_binary() -> str:
    go = shutil.which("go")
    if go is None:
        raise LabError(PART, "'go' not found on PATH (install golang-go: make setup)")
    return go


def _env(work: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": work,
        "GOCACHE": os.path.join(work, "go-build"),
        "GOPATH": os.path.join(work, "gopath"),
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOPROXY": "off",
        # A static binary without cgo: no C toolchain needed, nothing to resolve at start.
        "CGO_ENABLED": "0",
    }


def binary_path(state_dir: str, go: str | None = None) -> str:
    """Where the binary for this source and toolchain lives (built or not)."""
    go = go or go_binary()
    try:
        version = subprocess.run(
            [go, "version"], capture_output=True, text=True, timeout=30, env=_env(tempfile.gettempdir())
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(PART, f"`go version` failed: {exc}") from None
    digest = hashlib.sha256(SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    return os.path.join(state_dir, "go", f"goservice-{digest}")


def build(state_dir: str) -> str:
    """The service's binary, built first when the source or `go` changed. Raises LabError."""
    go = go_binary()
    target = binary_path(state_dir, go)
    if os.access(target, os.X_OK):
        return target
    cache_dir = os.path.dirname(target)
    os.makedirs(cache_dir, mode=0o755, exist_ok=True)
    # Built beside the target and renamed: two `lab up`s building at once both end
    # with a whole binary.
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".goservice-")
    os.close(fd)
    work = tempfile.mkdtemp(prefix="ebpftop-gobuild-")
    try:
        try:
            proc = subprocess.run(
                [go, "build", "-o", tmp, str(SOURCE)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                env=_env(work),
                cwd=work,
            )
        except subprocess.TimeoutExpired:
            raise LabError(PART, f"`go build` of {SOURCE} took more than {BUILD_TIMEOUT:g}s") from None
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise LabError(PART, f"`go build` of {SOURCE} failed: {tail}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        # Go's module cache, when any, is read-only: make it removable first.
        subprocess.run(["chmod", "-R", "u+w", work], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    for old in glob.glob(os.path.join(cache_dir, "goservice-*")):
        if old != target:
            with contextlib.suppress(OSError):
                os.unlink(old)  # a lab still running it keeps its copy until it exits
    return target
