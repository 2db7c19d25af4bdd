"""`python -m epoch_builder` runs the epoch-builder command."""

import sys

from epoch_builder.cli import main

sys.exit(main())
