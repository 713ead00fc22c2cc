"""Omnitill payment service."""
