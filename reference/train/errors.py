"""The trainer's one error type: bad input reported as one line, exit status 2."""
from __future__ import annotations





class TrainError(Exception):
    """Bad input to the trainer (arguments, data, checkpoints): reported as one line, exit status 2."""
