"""Exit hygiene for multi-process runs on the gloo backend (CPU DDP, FSDP2)."""

from __future__ import annotations

import atexit
import time

import torch.distributed as dist

__all__ = ["pause_for_gloo_at_exit"]

EXIT_PAUSE_S = 0.5  # seconds: ample for a worker thread to take the GIL once on a loaded 2-core machine


def _pause() -> None:
    time.sleep(EXIT_PAUSE_S)


def pause_for_gloo_at_exit() -> None:
    """Let gloo's worker threads finish before this process's interpreter shuts down (call it once the process group
    exists; calling it again changes nothing).

    torch's gloo backend destroys each finished collective on its worker thread, and that destructor drops a Python
    reference, which takes the GIL. If the main thread has begun finalizing the interpreter by then, the worker
    thread is ended inside a C++ destructor and the process aborts ("terminate called without an active exception",
    SIGABRT) after its work is done; torch 2.13 with 2 CPU processes under DDP, measured here: about 1 exit in
    50-200. An ``atexit`` handler runs before finalization: sleeping there hands the GIL to the worker thread.
    Lightning destroys only NCCL process groups at exit, and destroying one does not join its threads while
    modules still hold it.
    """
    if dist.is_available() and dist.is_initialized() and "gloo" in str(dist.get_backend()):
        atexit.unregister(_pause)
        atexit.register(_pause)
