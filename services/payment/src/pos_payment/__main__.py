from pos_kit.cli import run
from pos_payment.bootstrap import migrate, serve

run("pos_payment", serve, migrate)
