# -*- test-case-name: tests.test_openapi -*-
"""
C{python -m aiconnect.api}: print the OpenAPI document
(C{python -m aiconnect.api > docs/openapi.json}).
"""

from __future__ import annotations

from aiconnect.api.openapi import main

if __name__ == "__main__":
    main()
