"""
C{python -m aiconnect.demo}: the same as C{aiconnect-demo}.
"""

from __future__ import annotations

import sys

from aiconnect.demo.run import main

sys.exit(main())
