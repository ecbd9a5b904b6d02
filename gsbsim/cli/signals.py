"""One policy for a closed pipe and Ctrl-C, shared by every entry point (gsbsim, python -m reference.*).

* The reader of stdout went away (``gsbsim run ... | head``): that is not an error. The
  command stops quietly with exit status 0; stdout is pointed at /dev/null first so that the
  interpreter's final flush cannot raise (and print) a second BrokenPipeError.
* Ctrl-C (SIGINT, KeyboardInterrupt): one line ``PROG: interrupted`` on stderr and exit
  status 130 (128 + SIGINT, what a shell reports). Outputs are written through temporary
  names and renamed into place, and every writer removes its temporary on any exception,
  so an interrupted command leaves the old complete output (or none), never half of one.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Sequence

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "guarded", "silence_stdout"]

EXIT_OK = 0            # done (also: stdout's reader closed the pipe early)
EXIT_FAILED = 1        # a check ran and failed (csim mismatch)
EXIT_BAD_INPUT = 2     # bad input: one line PROG: error: ...
EXIT_INTERRUPTED = 130  # Ctrl-C


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
            interrupted: str = "interrupted") -> int:
    """Run ``main(argv)`` under the policy above; returns its exit status."""
    try:
        code = main(argv)
        sys.stdout.flush()  # a closed pipe shows up here, inside the policy, not at interpreter exit
        return code
    except KeyboardInterrupt:
        _say(f"{prog}: {interrupted}")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_OK
