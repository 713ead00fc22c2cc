"""Omnitill's shared service runtime. No domain code lives here."""
