"""Omnitill promotion service: promotions and the discounts they give a cart."""
