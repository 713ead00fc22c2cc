from pos_kit.migrate import run_env
from pos_payment.adapters import gift_card_tables  # noqa: F401  (its tables join the metadata)
from pos_payment.adapters.tables import metadata

run_env(metadata)
