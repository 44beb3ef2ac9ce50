# -*- test-case-name: tests.storage -*-
"""
The state the nodes of a cluster share (SPEC s14), in PostgreSQL when
C{[database] url} names one, else in the single node's SQLite events
database (docs/storage.md).

    - L{aiconnect.storage.url}: the C{[database] url} (validation,
      redaction); read by the configuration, imports no driver.
    - L{aiconnect.storage.pool}: psycopg 3 behind
      L{twisted.enterprise.adbapi.ConnectionPool}; L{start_pool
      <aiconnect.storage.pool.start_pool>} opens it and migrates.
    - L{aiconnect.storage.schema}: the versioned migrations.
    - L{aiconnect.storage.sql}: one interaction shape for both databases
      (L{Runner <aiconnect.storage.sql.Runner>}, L{SqliteRunner
      <aiconnect.storage.sql.SqliteRunner>}).
    - L{aiconnect.storage.tenants}: L{AsyncTenantStore
      <aiconnect.storage.tenants.AsyncTenantStore>}, its PostgreSQL store
      and the adapter of the SQLite one.
    - L{aiconnect.storage.nodes}: node leases and the service renewing
      this node's.
    - L{aiconnect.storage.directory}: session id -> owning node.
    - L{aiconnect.storage.cluster}: the running node on PostgreSQL (start,
      shared tenants, lease, session claims), wired by L{aiconnect.tap}.

Every call returns a L{twisted.internet.defer.Deferred}; on PostgreSQL the
work runs in the pool's threads, never on the reactor thread.
"""
