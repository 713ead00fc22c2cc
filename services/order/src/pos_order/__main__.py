from pos_kit.cli import run
from pos_order.bootstrap import migrate, serve

run("pos_order", serve, migrate)
