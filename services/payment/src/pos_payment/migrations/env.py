from pos_kit.migrate import run_env
from pos_payment.adapters.tables import metadata

run_env(metadata)
