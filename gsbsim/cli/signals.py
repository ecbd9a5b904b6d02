"""One policy for a closed pipe and Ctrl-C, shared by every entry point (gsbsim, python -m reference.*).

* The reader of stdout went away (``gsbsim run ... | head``): that is not an error. The
  command stops quietly with exit status 0; stdout is pointed at /dev/null first so that the
  interpreter's final flush cannot raise (and print) a second BrokenPipeError.
* Ctrl-C (SIGINT, KeyboardInterrupt): one line ``PROG: interrupted`` on stderr and exit
  status 130 (128 + SIGINT, what a shell reports). Outputs are written through temporary
  names and renamed into place, and every writer removes its temporary on any exception,
  so an interrupted command leaves the old complete output (or none), never half of one.
* Out of memory (``--images 10**12``): one line ``PROG: error: out of memory: ...``, status 2;
  the writers' temporaries are removed on the way out, as for any exception.
* SIGTERM (``kill``, a scheduler's time limit) takes the same path as Ctrl-C (it raises
  ``Terminated``, a KeyboardInterrupt, so the same cleanup runs): ``PROG: terminated``,
  exit status 143. Only SIGKILL leaves temporaries; the next run into the folder removes them.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Sequence

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "Terminated",
           "guarded", "silence_stdout", "interrupt_status"]

EXIT_OK = 0            # done (also: stdout's reader closed the pipe early)
EXIT_FAILED = 1        # a check ran and failed (csim mismatch)
EXIT_BAD_INPUT = 2     # bad input: one line PROG: error: ...
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143   # SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup written for KeyboardInterrupt runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


def interrupt_status(e: KeyboardInterrupt) -> tuple[int, str]:
    """(exit status, word) of an interruption: SIGTERM or Ctrl-C."""
    return (EXIT_TERMINATED, "terminated") if isinstance(e, Terminated) else (EXIT_INTERRUPTED, "interrupted")


def silence_stdout() -> None:
    """Point fd 1 at /dev/null (after a broken pipe) so later writes and the exit flush succeed."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def guarded(prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None,
            hint: str = "") -> int:
    """Run ``main(argv)`` under the policy above; returns its exit status. ``hint`` follows the
    interruption line (the trainer's "; continue with --resume")."""
    previous = None
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = main(argv)
        sys.stdout.flush()  # a closed pipe shows up here, inside the policy, not at interpreter exit
        return code
    except KeyboardInterrupt as e:
        status, word = interrupt_status(e)
        _say(f"{prog}: {word}{hint}")
        return status
    except BrokenPipeError:
        silence_stdout()
        return EXIT_OK
    except MemoryError as e:  # a request bigger than the machine (--images 10**12): bad input, not a crash
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        _say(f"{prog}: error: out of memory{': ' + detail if detail else ''}; ask for less")
        return EXIT_BAD_INPUT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
