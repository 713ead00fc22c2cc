"""What the order service's server tests share lives in order_shop.py, a module beside this."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
