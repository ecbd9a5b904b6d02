"""Verification material built on the golden engine: edge-case models and the branch coverage they reach."""
