from pos_kit.migrate import run_env
from pos_promotion.adapters.tables import metadata

run_env(metadata)
