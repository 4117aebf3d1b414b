"""`python -m durable.cli`."""

import sys

from durable.cli.main import main

sys.exit(main())
