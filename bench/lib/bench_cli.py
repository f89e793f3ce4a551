"""The command line shared by the load scripts in this folder: `SCRIPT MODE HOST PORT [options]`."""

import argparse


def run(doc: str, modes: dict, add_options) -> None:
    """Parses MODE HOST PORT plus the options `add_options(parser)` declares, then calls `modes[MODE](arguments)`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=list(modes))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    add_options(parser)
    arguments = parser.parse_args()
    modes[arguments.mode](arguments)
