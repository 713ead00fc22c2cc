"""The gateway's tests share gateway_alone.py, a module beside this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
