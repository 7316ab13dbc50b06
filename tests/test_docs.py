"""The README's reference tables say what the code does."""

import re
from pathlib import Path

from ingester.config import VARIABLES
from ingester.metrics import METRICS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_the_metric_table_lists_every_metric_with_its_unit():
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]+) \|", section("The metric vocabulary"), re.M)
    assert {name: unit.strip() for name, unit in rows} == {
        name: metric.unit for name, metric in METRICS.items()
    }


def test_every_setting_is_documented_in_the_readme_and_env_example():
    example = (ROOT / ".env.example").read_text()
    configuration = section("Configuration")
    for variable in VARIABLES:
        assert f"`{variable}`" in configuration, variable
        assert re.search(rf"^{variable}=", example, re.M), variable
