"""Use cases of the order service; every entrypoint (gRPC, consumers, the resumer) calls these.

Each operation that calls other services runs in the kit's three steps (`read` in the claiming
transaction, `call` holding no connection, `record` in one short transaction); inside `call`
the saga (service/saga.py) records each step it takes in a short transaction of its own, so
the order and its saga state are saved before any payment is taken.
"""
