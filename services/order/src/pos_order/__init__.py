"""Omnitill order service."""
