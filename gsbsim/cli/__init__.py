"""The ``gsbsim`` command line (``gsbsim.cli.app:main``)."""
from gsbsim.cli.app import main

__all__ = ["main"]
