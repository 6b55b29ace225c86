"""``torchrun --nproc_per_node N -m snnergy.train <snnergy train options>``: the ``snnergy
train`` command as a module, which is how torchrun starts each worker. A module of its own
so that the training code never imports the command line (nothing imports this file)."""

import sys

from snnergy.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
