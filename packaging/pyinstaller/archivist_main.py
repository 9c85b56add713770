"""The frozen bundle's entry point: what ``archivist`` (app.cli:main) is in a wheel install.

``freeze_support`` must run first: the ingest pool starts its workers with the
"spawn" method, which re-executes this binary; without it each worker would
parse the worker's arguments as an ``archivist`` command line.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.cli import main

    sys.exit(main())
