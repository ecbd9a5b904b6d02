"""Shared test harness (not test modules): engines.py compares golden and fast, derives edited models."""
