"""The ``gsbsim`` command line (``gsbsim.cli.main:main``)."""
from gsbsim.cli.main import main

__all__ = ["main"]
