"""CI's own checks (.ci/run, .ci/check_skips.py): a skip CI does not allow fails it, and so
does a run where no test ran; .ci/run refuses to run as anyone but root.

The skip check is fed hand-made JUnit reports, as pytest writes them, including the skips
a machine with a cron daemon of its own and no Prometheus used to produce."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / ".ci" / "check_skips.py"

# What pytest's --junitxml wrote for the cron and Prometheus skips before they were mended.
CRON_SKIP = """<testcase classname="tests.test_containers"
 name="test_sigterm_ends_a_running_job_too" time="0.001"><skipped type="pytest.skip"
 message="a cron daemon already runs on this machine">tests/test_containers.py:425:
 a cron daemon already runs on this machine</skipped></testcase>"""
PROMETHEUS_SKIP = """<testcase classname="tests.test_monitoring"
 name="test_the_shipped_rules_pass_promtool" time="0.001"><skipped type="pytest.skip"
 message="promtool not installed (Debian: apt-get install prometheus ...)"/></testcase>"""
PASSED = '<testcase classname="tests.test_state" name="test_round_trip" time="0.01"/>'
PARAMETRIZED_SKIP = """<testcase classname="tests.test_schema" name="test_x[community]"
 time="0"><skipped type="pytest.skip" message="no community-edition server"/></testcase>"""


def junit(tmp_path: Path, *cases: str) -> Path:
    report = tmp_path / "junit.xml"
    report.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" tests="{len(cases)}">{"".join(cases)}</testsuite>'
        "</testsuites>"
    )
    return report


def readme(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "README.md"
    path.write_text("# Title\n\n### Skips CI allows\n\nWhy.\n\n| test | why CI may skip it |\n"
                    "| --- | --- |\n" + "".join(f"{row}\n" for row in rows)
                    + "\n## Known limits\n\n| `tests/test_containers.py::*` | not here |\n")
    return path


def check(report: Path, readme_path: Path = ROOT / "README.md") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(report), str(readme_path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_run_without_skips_passes(tmp_path):
    done = check(junit(tmp_path, PASSED))
    assert done.returncode == 0, done.stderr
    assert "1 tests ran, 0 allowed skips" in done.stdout


@pytest.mark.parametrize("skip", [CRON_SKIP, PROMETHEUS_SKIP], ids=["cron", "prometheus"])
def test_a_skip_the_readme_does_not_list_fails_ci_naming_the_test_and_why(tmp_path, skip):
    done = check(junit(tmp_path, PASSED, skip))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    if skip is CRON_SKIP:
        assert ("tests/test_containers.py::test_sigterm_ends_a_running_job_too "
                "(a cron daemon already runs on this machine)") in line
    else:
        assert "tests/test_monitoring.py::test_the_shipped_rules_pass_promtool" in line
        assert "promtool not installed" in line


def test_a_skip_the_readme_lists_with_its_reason_passes(tmp_path):
    allowed = readme(tmp_path, "| `tests/test_schema.py::test_x[*]` | no such server in CI |")
    done = check(junit(tmp_path, PASSED, PARAMETRIZED_SKIP), allowed)
    assert done.returncode == 0, done.stderr
    assert "1 tests ran, 1 allowed skips" in done.stdout


def test_only_the_section_counts_and_a_row_needs_a_reason(tmp_path):
    # The table under "Known limits" lists test_containers.py: not an allowance.
    done = check(junit(tmp_path, PASSED, CRON_SKIP), readme(tmp_path))
    assert done.returncode == 1 and "test_sigterm_ends_a_running_job_too" in done.stderr
    no_reason = readme(tmp_path, "| `tests/test_containers.py::*` |  |")
    done = check(junit(tmp_path, PASSED, CRON_SKIP), no_reason)
    assert done.returncode != 0 and "with no reason" in done.stderr


def test_a_run_where_no_test_ran_fails(tmp_path):
    done = check(junit(tmp_path, PARAMETRIZED_SKIP),
                 readme(tmp_path, "| `tests/test_schema.py::*` | reason |"))
    assert done.returncode == 1 and "ran no test" in done.stderr


def test_a_readme_without_the_section_fails(tmp_path):
    bare = tmp_path / "README.md"
    bare.write_text("# Title\n")
    done = check(junit(tmp_path, PASSED), bare)
    assert done.returncode != 0 and "no '### Skips CI allows' section" in done.stderr


def test_the_readme_allows_only_tests_that_exist():
    """Each allowance names real tests (a renamed test must not leave a stale row)."""
    sys.path.insert(0, str(CHECK.parent))
    try:
        import check_skips
    finally:
        sys.path.remove(str(CHECK.parent))
    allowed = check_skips.allowed_skips((ROOT / "README.md").read_text())
    for pattern in allowed:
        path = ROOT / pattern.split("::", 1)[0]
        assert path.is_file(), pattern
        assert pattern.split("::")[1].split("[")[0].rstrip("*") in path.read_text(), pattern


def test_ci_run_refuses_to_run_as_another_user_than_root():
    if os.geteuid() != 0:
        done = subprocess.run(["bash", str(ROOT / ".ci" / "run")], capture_output=True,
                              text=True, timeout=60, check=False)
    else:  # as nobody, from a copy nobody can read (the checkout may be root's own)
        copy = Path(tempfile.mkdtemp(prefix="ci-run-"))
        try:
            copy.chmod(0o755)
            (copy / ".ci").mkdir(mode=0o755)
            shutil.copy(ROOT / ".ci" / "run", copy / ".ci" / "run")
            nobody = pwd.getpwnam("nobody")
            done = subprocess.run(
                ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                 "--clear-groups", "bash", str(copy / ".ci" / "run")],
                capture_output=True, text=True, timeout=60, check=False)
        finally:
            shutil.rmtree(copy)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        ".ci/run: CI runs as root (the Docker, cron and user-switching tests need it)")
