"""The lifeline: a node started by a launcher exits when the process that started it is gone,
however it went (SIGKILL included), so no node outlives its owner.

The owner (`kraft.launcher.NodeProcess`) creates a pipe per node, keeps the write end and
hands the read end to the child (`kraft serve --lifeline-fd N`). Nothing is ever written: the
kernel closes the write end when the owner exits for any reason, and the child's read then
returns EOF. That is a guarantee of the OS, unlike atexit handlers (skipped on SIGKILL) or
prctl(PR_SET_PDEATHSIG), which fires when the *thread* that forked the child exits — a thread
pool worker that started a cluster through `asyncio.to_thread` would take the nodes with it.

On EOF the node stops as on SIGTERM (a clean stop); if that has not finished after
`grace_s` seconds (e.g. start-up waiting for a quorum whose other voters are gone too), it
exits at once.

Not covered: a node stopped with SIGSTOP does not run, so it reads the EOF only once it is
continued; and a process forked from the owner without exec (multiprocessing's fork start
method) holds the write end too, so the nodes stop once it has exited as well.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

logger = logging.getLogger(__name__)

GRACE_S = 10.0
EXIT_CODE = 3  # the owner vanished; distinct from a configuration (2) or runtime (1) error


def watch(fd: int, grace_s: float = GRACE_S) -> threading.Thread:
    """Start a daemon thread that stops this process once `fd` (the lifeline's read end)
    reads EOF."""
    thread = threading.Thread(target=_watch, args=(fd, grace_s), name="kraft-lifeline", daemon=True)
    thread.start()
    return thread


def _watch(fd: int, grace_s: float) -> None:
    try:
        while os.read(fd, 512):
            pass  # the owner writes nothing; anything read is ignored
    except OSError as e:
        logger.warning("lifeline fd %d unreadable (%s): treating the owner as gone", fd, e)
    logger.warning("the process that started this node is gone (lifeline closed): stopping")
    os.kill(os.getpid(), signal.SIGTERM)
    # A deadline for the clean stop, not a synchronisation: past it the process ends anyway.
    threading.Event().wait(grace_s)
    logger.error("clean stop did not finish within %.0f s after the owner left: exiting", grace_s)
    os._exit(EXIT_CODE)
