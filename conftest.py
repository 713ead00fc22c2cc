# Shared fixtures (real PostgreSQL and NATS) for every test folder in the repository.
pytest_plugins = ["pos_devstack.testing"]
