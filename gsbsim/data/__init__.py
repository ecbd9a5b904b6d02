"""Embedded datasets readable without torch (the same splits as reference.data)."""
