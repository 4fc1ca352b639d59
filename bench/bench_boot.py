#!/usr/bin/env python3
"""The modelled time from `provision up` to healthy instances, for both boot paths (run from
the repository root):

    python3 bench/bench_boot.py
    python3 bench/bench_boot.py --json

A model, not a measurement: nothing here calls AWS, and the figures are the phase durations
below (low, typical, high, in seconds), each with where it comes from. See bench/README.md.

- build on the instance (`--build-on-instance`): every instance installs Docker and builds both
  images (`npm ci`, `next build` on a t3.micro with 1 GB and swap) before it can answer.
- built once in AWS (the default): one CodeBuild build per release, overlapping the load
  balancer's and NAT gateway's waits, then every instance installs Docker and pulls.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Phase:
    name: str
    low: float
    typical: float
    high: float
    source: str


# What `up` waits for before the Auto Scaling Group exists (both paths): the longest chain of the
# engine at AWS's durations, from bench/README.md (the load balancer's three minutes to turn
# active, the NAT gateway's one and a half hidden under it).
ENGINE = Phase("engine: network, load balancer, IAM, launch template", 180, 210, 300,
               "bench/README.md: up's critical path at AWS durations, about 3.5 minutes")
# The image build, in parallel with the engine's other waits (it needs only the bucket, the
# release, the repository, the role and the project). CodeBuild's phases.
BUILD = (
    Phase("CodeBuild QUEUED + PROVISIONING", 15, 40, 120,
          "CodeBuild on-demand general1.small: tens of seconds to start a build container; longer when the "
          "account's builds queue"),
    Phase("DOWNLOAD + pre_build (release from S3, ECR login)", 5, 10, 20, "a few MB from S3 in-region"),
    Phase("build backend (python:3.12-slim, pip install)", 30, 45, 90, "base image pull plus one pip install"),
    Phase("build frontend (npm ci + next build)", 90, 150, 240,
          "npm ci of the lock file and next build on 2 vCPUs / 3 GB"),
    Phase("push both images (~200 MB compressed)", 10, 20, 40, "to ECR in the same region"),
)
# What every instance does before it is healthy, after the group launches it.
LAUNCH = Phase("EC2 launch to cloud-init user data", 30, 45, 60,
               "userdata.BOOT_MARGIN_SECONDS (60 s allowed); typical Ubuntu 24.04 boots")
DOCKER = Phase("apt-get install docker.io, docker-compose-v2", 45, 60, 120,
               "Ubuntu's regional mirror through the NAT gateway; about 100 MB of packages")
FETCH = Phase("release from S3", 1, 2, 5, "the app source, well under 1 MB")
INSTANCE_BUILD = (
    Phase("build backend on the instance", 60, 90, 180, "the same pip install on a t3.micro (2 vCPUs burst)"),
    Phase("build frontend on the instance (npm ci + next build)", 240, 360, 600,
          "npm ci and next build on 1 GB of memory with 2 GB of swap: minutes, swap-bound; the 502s of a "
          "first boot"),
)
PULL = (
    Phase("ECR login (GetAuthorizationToken) + docker compose pull ~200 MB", 15, 30, 60,
          "ECR in-region through the NAT gateway (5 Gbps, scaling to 100 Gbps), a t3.micro bursting to "
          "5 Gbps; the time is mostly layer extraction on gp3"),
)
START = (
    Phase("docker compose up, both health endpoints answer", 5, 15, 30, "gunicorn and the Next.js server start"),
    Phase("target groups see it healthy (2 checks 15 s apart)", 15, 30, 30,
          "steps/edge/target_group.py: HealthyThresholdCount 2, HealthCheckIntervalSeconds 15"),
)


def total(phases, which):
    return sum(getattr(p, which) for p in phases)


def model() -> dict:
    boot_build = (LAUNCH, DOCKER, FETCH, *INSTANCE_BUILD, *START)
    boot_pull = (LAUNCH, DOCKER, FETCH, *PULL, *START)
    out = {}
    for which in ("low", "typical", "high"):
        build_on_instance = getattr(ENGINE, which) + total(boot_build, which)
        # The launch template waits for the images, so the build is on the critical path only
        # where it outlasts the engine's own waits.
        before_group = max(getattr(ENGINE, which), total(BUILD, which))
        pulled = before_group + total(boot_pull, which)
        out[which] = {"build_on_instance": build_on_instance, "built_in_aws": pulled,
                      "built_in_aws_later_up": getattr(ENGINE, which) + total(boot_pull, which),
                      "instance_boot_build": total(boot_build, which), "instance_boot_pull": total(boot_pull, which),
                      "codebuild": total(BUILD, which)}
    out["phases"] = {"engine": [ENGINE.__dict__], "codebuild": [p.__dict__ for p in BUILD],
                     "instance, build on the instance": [p.__dict__ for p in boot_build],
                     "instance, pull": [p.__dict__ for p in boot_pull]}
    return out


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="the model's figures as JSON")
    args = parser.parse_args(argv)
    figures = model()
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    from userdata import DEFAULT_GRACE_PERIOD_SECONDS, DEFAULT_PULL_GRACE_PERIOD_SECONDS

    print("Modelled estimates (not measurements): seconds low / typical / high\n")
    for title, phases in figures["phases"].items():
        print(f"{title}:")
        for p in phases:
            print(f"  {p['name']:<66} {p['low']:>4.0f} / {p['typical']:>4.0f} / {p['high']:>4.0f}  ({p['source']})")
    print()
    rows = (("instance boot, building both images", "instance_boot_build", DEFAULT_GRACE_PERIOD_SECONDS),
            ("instance boot, pulling both images", "instance_boot_pull", DEFAULT_PULL_GRACE_PERIOD_SECONDS),
            ("CodeBuild build of a release (once)", "codebuild", None),
            ("up to healthy, --build-on-instance", "build_on_instance", None),
            ("up to healthy, built in AWS (first up of a release)", "built_in_aws", None),
            ("up to healthy, built in AWS (a release already built)", "built_in_aws_later_up", None))
    for label, key, grace in rows:
        low, typical, high = (figures[w][key] for w in ("low", "typical", "high"))
        fits = f"; grace period {grace} s: the high case {'fits' if high <= grace else 'does NOT fit'}" if grace else ""
        print(f"{label:<56} {minutes(low)} / {minutes(typical)} / {minutes(high)}{fits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
