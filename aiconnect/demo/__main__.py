# -*- test-case-name: tests.test_demo -*-
"""
C{python -m aiconnect.demo}: the same as C{aiconnect-demo}.
"""

from __future__ import annotations

from aiconnect.demo.run import main

main()
