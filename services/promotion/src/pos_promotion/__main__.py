from pos_kit.cli import run
from pos_promotion.bootstrap import migrate, serve

run("pos_promotion", serve, migrate)
