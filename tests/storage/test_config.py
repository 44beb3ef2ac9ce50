"""
Tests of the configuration of SPEC s14 (C{[database]}, C{[node]},
C{[cluster]}) and of L{aiconnect.storage.url}: defaults, validation, and
secrets (the database password, the cluster secret) never in C{repr()} or
in an error.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config import load_string
from aiconnect.config.records import ClusterConfig, DatabaseConfig, NodeConfig, default_node_id
from aiconnect.errors import ConfigError
from aiconnect.storage.url import check_url, redact_url

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = "s3cr%2Fet-pw"
URL = f"postgresql://ai:{PASSWORD}@db.example.com:5432/aiconnect"
SECRET = "cluster-secret-0123456789"


def cluster(extra: str = "", url: str = URL) -> str:
    """
    @return: A file with a PostgreSQL URL and a cluster secret.
    """
    return f'[database]\nurl = "{url}"\n[cluster]\nsecret = "{SECRET}"\n{extra}'


class DefaultsTests(SynchronousTestCase):
    """
    Without the new sections nothing changes: SQLite, this host, 10 s.
    """

    def test_defaults(self) -> None:
        """
        The defaults: SQLite, the host name as node id, the API's address
        as API URL, no secret, a 10 s lease.
        """
        config = load_string("")
        self.assertEqual(config.database, DatabaseConfig(url=""))
        self.assertEqual(config.node, NodeConfig(id=default_node_id(), api_url="http://127.0.0.1:8080"))
        self.assertEqual(config.cluster, ClusterConfig(secret="", lease=10.0))

    def test_default_node_id(self) -> None:
        """
        The host name, made a valid node id.
        """
        self.patch(socket, "gethostname", lambda: "host name.example.com" + "x" * 80)
        self.assertEqual(default_node_id(), ("host-name.example.com" + "x" * 80)[:64])

    def test_api_url_derived(self) -> None:
        """
        An empty C{api_url} is the API listener's address (IPv6 in
        brackets); given, it is kept (without a trailing slash).
        """
        self.assertEqual(load_string('[api]\nhost = "::1"\nport = 8081').node.api_url, "http://[::1]:8081")
        self.assertEqual(load_string('[node]\napi_url = "https://n1.example.com:8443/"').node.api_url, "https://n1.example.com:8443")
        self.assertEqual(load_string('[api]\nhost = "0.0.0.0"').node.api_url, "")

    def test_documented(self) -> None:
        """
        Every field of the new sections has a row in docs/configuration.md,
        and each section a heading.
        """
        docs = (ROOT / "docs" / "configuration.md").read_text("utf-8")
        for section in ("database", "node", "cluster"):
            self.assertIn(f"## `[{section}]`", docs)
        for cls in (DatabaseConfig, NodeConfig, ClusterConfig):
            for f in dataclasses.fields(cls):
                self.assertIn(f"| `{f.name}` |", docs, f"{cls.__name__}.{f.name}")


class PostgresqlTests(SynchronousTestCase):
    """
    A PostgreSQL URL, and what it requires.
    """

    def test_loaded(self) -> None:
        """
        The URL, node and cluster keys are read; the password and the secret
        are not in C{repr()}.
        """
        config = load_string(
            f'[database]\nurl = "{URL}"\n[node]\nid = "node-a.1_x"\napi_url = "http://127.0.0.2:8080"\n'
            f'[cluster]\nsecret = "{SECRET}"\nlease = 4\n'
        )
        self.assertEqual(config.database.url, URL)
        self.assertEqual(config.node, NodeConfig(id="node-a.1_x", api_url="http://127.0.0.2:8080"))
        self.assertEqual(config.cluster, ClusterConfig(secret=SECRET, lease=4.0))
        self.assertNotIn(PASSWORD, repr(config))
        self.assertNotIn(SECRET, repr(config))

    def test_secret_required(self) -> None:
        """
        A PostgreSQL URL without a cluster secret is refused.
        """
        with self.assertRaises(ConfigError) as caught:
            load_string(f'[database]\nurl = "{URL}"')
        self.assertEqual(caught.exception.key, "cluster.secret")

    def test_api_url_required(self) -> None:
        """
        With PostgreSQL, a node whose API address cannot be derived must
        say how it is reached.
        """
        with self.assertRaises(ConfigError) as caught:
            load_string(cluster('[api]\nhost = "0.0.0.0"\n'))
        self.assertEqual(caught.exception.key, "node.api_url")

    def test_invalid(self) -> None:
        """
        Each invalid value names its key; no message holds the password or
        the secret.
        """
        cases = [
            (cluster(url="mysql://ai:" + PASSWORD + "@h/db"), "database.url"),
            (cluster(url="postgresql://ai:" + PASSWORD + "@h:70000/db"), "database.url"),
            (cluster(url="postgresql://ai:pa/" + PASSWORD + "@h/db"), "database.url"),
            (cluster(url="postgresql://ai:" + PASSWORD + "%zz@h/db"), "database.url"),
            (cluster(url="postgresql://ai:" + PASSWORD + "@/db"), "database.url"),
            (cluster('[node]\nid = "node a"\n'), "node.id"),
            (cluster('[node]\nid = ""\n'), "node.id"),
            (cluster(f'[node]\nid = "{"n" * 65}"\n'), "node.id"),
            (cluster('[node]\napi_url = "ftp://x"\n'), "node.api_url"),
            (cluster('[node]\nmore = 1\n'), "node.more"),
            ('[cluster]\nsecret = "short"\n', "cluster.secret"),
            ('[cluster]\nsecret = "with a space in it, long"\n', "cluster.secret"),
            ('[cluster]\nlease = 0.5\n', "cluster.lease"),
            ('[cluster]\nlease = 3601\n', "cluster.lease"),
        ]
        for text, key in cases:
            with self.assertRaises(ConfigError, msg=text) as caught:
                load_string(text)
            self.assertEqual(caught.exception.key, key, text)
            self.assertNotIn(PASSWORD, str(caught.exception))
            self.assertNotIn(SECRET, str(caught.exception))
            self.assertNotIn("with a space", str(caught.exception))


class UrlTests(SynchronousTestCase):
    """
    L{check_url} and L{redact_url}.
    """

    def test_accepted(self) -> None:
        """
        libpq URIs: several hosts, IPv6, a unix socket directory, the
        C{postgres} scheme, no password.
        """
        for url in (
            "",
            URL,
            "postgres://ai@[::1]:5433/db",
            "postgresql://h1:5432,h2:5433/db?target_session_attrs=read-write",
            "postgresql:///db?host=/var/run/postgresql",
        ):
            self.assertEqual(check_url(url), url)

    def test_redacted(self) -> None:
        """
        The password and every query value are replaced; the rest stays.
        """
        self.assertEqual(redact_url(URL), "postgresql://ai:***@db.example.com:5432/aiconnect")
        self.assertEqual(redact_url("postgresql://h/db?password=x&sslmode=require"), "postgresql://h/db?password=***&sslmode=***")
        self.assertEqual(redact_url("postgresql://ai@h/db"), "postgresql://ai@h/db")
        self.assertEqual(redact_url(""), "")
