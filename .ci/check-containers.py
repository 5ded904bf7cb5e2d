#!/usr/bin/env python3
"""Static checks of the Dockerfile and docker-compose.yml (no Docker engine
here, and no compose plugin to run `docker compose config`)."""
import re
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
problems = []

compose = yaml.safe_load((root / "docker-compose.yml").read_text())
services = compose.get("services", {})
for name in ("postgres", "walletql"):
    if name not in services:
        problems.append(f"compose: no {name} service")
walletql = services.get("walletql", {})
env = walletql.get("environment", {})
if not str(env.get("DATABASE_URL", "")).startswith("postgres://"):
    problems.append("compose: walletql has no PostgreSQL DATABASE_URL")
if "healthcheck" not in walletql or "healthcheck" not in services.get("postgres", {}):
    problems.append("compose: walletql and postgres need health checks")
if walletql.get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
    problems.append("compose: walletql must wait for a healthy postgres")
# Safe by default: no secret in the environment, nothing published beyond
# the loopback interface, no playground or introspection, metrics apart.
if "OPERATOR_TOKEN" in env or not env.get("OPERATOR_TOKEN_FILE", "").startswith("/run/secrets/"):
    problems.append("compose: the operator token must come from a secret file")
for service in services.values():
    for port in service.get("ports", []):
        if not str(port).startswith("127.0.0.1:"):
            problems.append(f"compose: port {port} is published on every interface")
for switch in ("DISABLE_GRAPHIQL", "DISABLE_INTROSPECTION"):
    if str(env.get(switch, "")).lower() != "true":
        problems.append(f"compose: {switch} should be on by default")
if not env.get("METRICS_LISTEN_ADDR"):
    problems.append("compose: /metrics should have its own, unpublished address")
prom = services.get("prometheus", {})
if prom.get("profiles") != ["monitoring"]:
    problems.append("compose: prometheus should be optional (profile monitoring)")
for volume in prom.get("volumes", []):
    source = volume.split(":")[0]
    if source.startswith("./") and not (root / source).exists():
        problems.append(f"compose: {source} does not exist")
scrape = yaml.safe_load((root / "deploy/prometheus.yml").read_text())
if scrape["scrape_configs"][0]["metrics_path"] != "/metrics":
    problems.append("prometheus: not scraping /metrics")

dockerfile = (root / "Dockerfile").read_text()
if len(re.findall(r"^FROM ", dockerfile, re.M)) < 2:
    problems.append("Dockerfile: not multi-stage")
user = re.findall(r"^USER (\S+)", dockerfile, re.M)
if not user or user[-1] in ("root", "0"):
    problems.append("Dockerfile: the runtime does not run as a non-root user")
if "--locked" not in dockerfile:
    problems.append("Dockerfile: build without --locked")
if "HEALTHCHECK" not in dockerfile:
    problems.append("Dockerfile: no HEALTHCHECK")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("containers: Dockerfile and docker-compose.yml look right")
