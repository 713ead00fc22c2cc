"""Omnitill customer service: customer profiles and loyalty points."""
