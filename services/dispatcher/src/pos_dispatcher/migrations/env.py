from pos_dispatcher.adapters.tables import metadata

from pos_kit.migrate import run_env

run_env(metadata)
