"""Sweeps of intermediate x target x seed runs (see stilts_jax/experiments/cli.py):

python launch/sweep.py run      --sweep configs/sweeps/demo.py
python launch/sweep.py commands --sweep configs/sweeps/demo.py [--hosts h1,h2]
python launch/sweep.py report   --sweep configs/sweeps/demo.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a checkout without installing

from stilts_jax.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
