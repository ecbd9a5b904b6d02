"""gsbsim: bit-exact integer simulator of binary vision transformers.

Import-light on purpose: importing the package pulls in neither numba nor torch;
the modules that need them import them.
"""
__version__ = "0.1.0"
