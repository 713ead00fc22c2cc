from pos_dispatcher.bootstrap import migrate, serve
from pos_kit.cli import run

run("pos_dispatcher", serve, migrate)
