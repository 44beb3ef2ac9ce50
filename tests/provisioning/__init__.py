"""
Tests of L{aiconnect.provisioning}: the tenant store, the configuration in
force and the provisioning service (SPEC s11).
"""
