"""checkov's Kubernetes checks find nothing unexplained in what deploy/ renders.

Every render (each chart value set, each kustomize overlay) is scanned in one
run, offline (``--skip-download``, ``BC_SKIP_MAPPING``). The test fails on any
failed check; a finding kept on purpose must be skipped on its resource with a
reason (``checkov.io/skip<n>: CKV_K8S_xx=reason`` annotations), and a skip
without a reason fails too. The chart's skips are in templates/deployment.yaml.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.deploy.rendering import Render, require, run


def checkov(directory: Path, framework: str = "kubernetes") -> dict[str, Any]:
    """checkov's report on ``directory`` for one framework (kubernetes, dockerfile)."""
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    done = run(
        [
            require("checkov"), "--directory", str(directory),
            "--framework", framework, "--skip-download", "--output", "json",
        ],
        check=False,
        env=env,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1 and reports[0]["check_type"] == framework, done.stdout[:2000]
    result: dict[str, Any] = reports[0]
    return result


def unexplained_findings(report: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(failed checks, checks skipped without a reason) of a checkov report."""
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} in {c['file_path']}"
        for c in report["results"]["failed_checks"]
    ]
    unexplained = [
        f"{c['check_id']}: {c['resource']} in {c['file_path']}"
        for c in report["results"]["skipped_checks"]
        if not (c.get("check_result", {}).get("suppress_comment") or "").strip()
    ]
    return failed, unexplained


def test_checkov_finds_nothing_unexplained(
    chart_renders: dict[str, Render], overlay_renders: dict[str, Render], tmp_path: Path
) -> None:
    renders = [*chart_renders.values(), *overlay_renders.values()]
    for render in renders:
        shutil.copyfile(render.path, tmp_path / render.path.name)
    report = checkov(tmp_path)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= sum(len(r.objects) for r in renders) // 2, summary
    assert summary["passed"] > 0, summary

    failed, unexplained = unexplained_findings(report)
    assert not failed, "checkov findings (fix them, or skip them with a reason):\n" + "\n".join(
        failed
    )
    assert not unexplained, "checks skipped without a reason:\n" + "\n".join(unexplained)
