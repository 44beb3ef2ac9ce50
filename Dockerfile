# AI Connect in a container (docs/operations.md "Docker").
#
#   docker build -t aiconnect .
#   docker run --rm --network host -v /etc/aiconnect:/etc/aiconnect:ro \
#       -v aiconnect-data:/var/lib/aiconnect aiconnect
#
# The configuration is mounted at /etc/aiconnect/aiconnect.toml; it must
# listen on 0.0.0.0 (or the host's address) and keep its database,
# recordings and self-signed certificate under /var/lib/aiconnect. Host
# networking is the simple choice for SIP and a wide RTP range; with port
# publishing, publish the SIP, API and the whole RTP range, and set
# sip.public_address to the address peers reach.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system aiconnect \
    && useradd --system --gid aiconnect --home-dir /var/lib/aiconnect --shell /usr/sbin/nologin aiconnect \
    && mkdir -p /var/lib/aiconnect /etc/aiconnect \
    && chown aiconnect:aiconnect /var/lib/aiconnect

WORKDIR /src
COPY pyproject.toml setup.cfg README.rst ./
COPY aiconnect ./aiconnect
COPY twisted ./twisted
# Plugins scanned once here: the user running twistd cannot write the cache.
RUN pip install . && rm -rf /src \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

WORKDIR /var/lib/aiconnect
USER aiconnect

# SIP UDP/TCP, SIP TLS, the REST API, and the shipped RTP range.
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp 20000-29999/udp
VOLUME ["/var/lib/aiconnect"]

# SIGTERM drains (503 to new INVITEs, BYE to SRCs and SRSs, events
# delivered): give `docker stop` a --time of 30.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, tomllib, urllib.request; c = tomllib.load(open('/etc/aiconnect/aiconnect.toml', 'rb')).get('api', {}); h = c.get('host', '127.0.0.1'); h = '127.0.0.1' if h in ('0.0.0.0', '::', '') else h; h = '[%s]' % h if ':' in h else h; urllib.request.urlopen('http://%s:%d/health' % (h, c.get('port', 8080)), timeout=2); sys.exit(0)"]

ENTRYPOINT ["twistd", "--reactor=aiconnect-epoll", "-n", "--pidfile=", "aiconnect"]
CMD ["--config", "/etc/aiconnect/aiconnect.toml"]
