"""The chart installs the one CRD schema of crds/, not a copy that drifted."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "crds"
CHART_CRDS = ROOT / "charts" / "wasp" / "crds"
CRD_FILES = ("whatsappsessions.wasp.dev.yaml", "kopf-peering.yaml")
RESYNC = (
    "run `make chart-crds` (or `cp crds/whatsappsessions.wasp.dev.yaml crds/kopf-peering.yaml "
    "charts/wasp/crds/`) and commit both"
)


@pytest.mark.parametrize("name", CRD_FILES)
def test_chart_crd_is_byte_identical_to_crds_folder(name: str) -> None:
    source, copy = SOURCE / name, CHART_CRDS / name
    assert copy.is_file(), f"charts/wasp/crds/{name} is missing: {RESYNC}"
    assert copy.read_bytes() == source.read_bytes(), (
        f"charts/wasp/crds/{name} differs from crds/{name}, the source of truth: {RESYNC}"
    )


def test_chart_installs_no_crd_but_those_of_crds_folder() -> None:
    in_chart = sorted(path.name for path in CHART_CRDS.iterdir())
    assert in_chart == sorted(CRD_FILES), (
        f"charts/wasp/crds/ holds {in_chart}; it must hold exactly {sorted(CRD_FILES)}: {RESYNC}"
    )
