"""`python -m advisor.cli ...` is the `advisor` command."""

from __future__ import annotations

import sys

from advisor.cli.main import main

sys.exit(main())
