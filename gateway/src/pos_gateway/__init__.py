"""Omnitill REST edge gateway."""
