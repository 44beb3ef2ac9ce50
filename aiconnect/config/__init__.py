# -*- test-case-name: tests.test_config -*-
"""
The configuration file: TOML (stdlib C{tomllib}) into frozen dataclasses.

C{load(path)} is the only way in: it reads the file once and returns a
L{Config}; components receive the typed sub-configurations (L{SipConfig},
L{TlsConfig} ...), never a dict.  The keys are part of the product contract
(SPEC section 7); the reference for every key, its type, default and meaning is
C{docs/configuration.md}.

Rules:

    - Unknown keys anywhere are errors, as are values of the wrong type or out
      of range.  Every error is a L{ConfigError} naming the dotted key, with
      array indices: C{tenant[0].trunk[1].transport}.
    - Defaults live in the dataclass fields; a missing section or key takes
      them.  The required keys are C{tenant[].domain},
      C{tenant[].callback_url}, C{tenant[].signing_secret},
      C{tenant[].trunk[].match} and C{tenant[].trunk[].target}.
    - Relative file paths (C{tls.certificate}, C{tls.private_key},
      C{tls.ca_certificates}, C{events.database},
      C{tenant[].jwt_public_key}) are resolved against the current working
      directory at load time and stored absolute.
    - Secrets (trunk passwords, API tokens, signing secrets) never appear in
      C{repr()}.

The package, bottom to top:

    - L{aiconnect.config.records}: the frozen dataclasses and their defaults.
    - L{aiconnect.config.reader}: C{Table}, one TOML table read with typed
      getters that name the dotted key.
    - L{aiconnect.config.values}: what one value means (addresses, paths,
      URLs, key files).
    - L{aiconnect.config.sections}: each section's keys and reader.
    - L{aiconnect.config.loader}: L{load}, L{load_string} and the checks
      across sections.

This package imports the standard library and the pure SIP cores only: the
values a SIP adapter takes are defined in the SIP layer and built or
re-exported here (L{TimerConfig} from L{aiconnect.sip.transaction},
L{LimitsConfig.connections} as an L{aiconnect.sip.peer.ConnectionLimits},
L{split_host_port} and the host checks from L{aiconnect.sip.uri}), so the
SIP layer never imports the configuration.  Import the names from here: the
modules are the package's own rooms.
"""

from __future__ import annotations

from aiconnect.config.loader import load, load_string

# IPNetwork and the choice tuples (TLS_VERSIONS ...) were public names of the
# former single module; they stay importable from here, outside __all__.
from aiconnect.config.records import (
    ApiConfig,
    Config,
    DnsConfig,
    EventsConfig,
    IPNetwork,
    LimitsConfig,
    LogConfig,
    RecordingConfig,
    RtpConfig,
    SipConfig,
    StreamsConfig,
    TenantConfig,
    TlsConfig,
    TrunkConfig,
    normalize_domain,
)
from aiconnect.config.sections import (
    LOG_FORMATS,
    LOG_LEVELS,
    MISSING_METADATA_POLICIES,
    NON_SIPREC_POLICIES,
    TLS_VERSIONS,
)
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.uri import split_host_port

__all__ = [
    "ApiConfig",
    "Config",
    "DnsConfig",
    "EventsConfig",
    "LogConfig",
    "RecordingConfig",
    "RtpConfig",
    "SipConfig",
    "StreamsConfig",
    "TenantConfig",
    "TimerConfig",
    "TlsConfig",
    "TrunkConfig",
    "load",
    "load_string",
    "normalize_domain",
    "split_host_port",
]
