"""``python -m noisyclip_metrics.cli`` (what ``torchrun -m`` needs)."""

import sys

from noisyclip_metrics.cli import main

sys.exit(main())
