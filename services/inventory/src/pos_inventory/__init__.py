"""Omnitill inventory service."""
