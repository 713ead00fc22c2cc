"""The generated manifests match their generator, and kustomize uses all of them."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType

import pytest
import yaml
from deploy_manifests import K8S, REPO


def _generator() -> ModuleType:
    # The generator reads the JetStream stream configuration from the kit.
    pytest.importorskip("pos_kit", reason="the Omnitill packages are not installed")
    spec = importlib.util.spec_from_file_location("render_k8s", REPO / "tools" / "render_k8s.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_generated_manifests_are_up_to_date() -> None:
    generator = _generator()
    stale = [str(p.relative_to(REPO)) for p in generator.drifted(generator.render())]
    assert not stale, f"run `python tools/render_k8s.py`; out of date: {stale}"


def test_kustomizations_use_every_generated_file() -> None:
    generator = _generator()
    listed = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text())
        for entry in data.get("resources", []):
            listed.add((kustomization.parent / entry).resolve())
        for patch in data.get("patches", []):
            if "path" in patch:
                listed.add((kustomization.parent / patch["path"]).resolve())
        for generated in data.get("configMapGenerator", []):
            for entry in generated.get("files", []):
                listed.add((kustomization.parent / entry.split("=")[-1]).resolve())
    unused = [str(p.relative_to(REPO)) for p in generator.render() if p.resolve() not in listed]
    assert not unused, f"generated but not in any kustomization.yaml: {unused}"


def test_order_and_payment_streams_are_replicated_file_streams() -> None:
    streams = {
        path.stem: json.loads(path.read_text())
        for path in (K8S / "base" / "nats" / "streams").glob("*.json")
    }
    assert {"POS_ORDER", "POS_PAYMENT"} <= set(streams)
    for name, config in streams.items():
        assert config["name"] == name
        assert config["storage"] == "file", name
        assert config["num_replicas"] == 3, name
