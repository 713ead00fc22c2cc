"""Omnitill promotion service."""
