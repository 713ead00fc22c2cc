from pos_inventory.bootstrap import migrate, serve
from pos_kit.cli import run

run("pos_inventory", serve, migrate)
