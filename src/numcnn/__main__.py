"""``python -m numcnn`` runs the command-line tool."""

import sys

from numcnn.cli import main

sys.exit(main())
