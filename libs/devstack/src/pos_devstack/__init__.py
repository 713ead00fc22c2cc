"""Local platform: PostgreSQL and NATS from wheels, every Omnitill process started and watched."""
