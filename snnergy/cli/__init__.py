"""The command line, one layer on top of everything else: it parses arguments and calls.

``snnergy`` (:mod:`snnergy.cli.commands`) and ``snnergy-export`` (:mod:`snnergy.cli.export`,
also ``snnergy export``); the options of ``energy`` / ``firing-rates``
(:mod:`snnergy.cli.energy`) and of every command that reads a dataset
(:mod:`snnergy.cli.data`). No other module of the project imports this package.
"""

from snnergy.cli.commands import main
from snnergy.cli.export import main as export_main

__all__ = ["export_main", "main"]
