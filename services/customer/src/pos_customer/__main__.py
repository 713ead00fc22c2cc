from pos_customer.bootstrap import migrate, serve
from pos_kit.cli import run

run("pos_customer", serve, migrate)
