"""``python -m unitary_lowrank verify``."""

import sys

from .cli import main

sys.exit(main())
