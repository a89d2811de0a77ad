"""The conda environment of the rules pins the same versions as the pip install."""

import re
import tomllib

import yaml

from conftest import REPO


def pip_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^;\s]+)", requirement).groups()
        pins[name.lower()] = version
    return pins


def conda_pins():
    environment = yaml.safe_load((REPO / "envs" / "thermocg.yaml").read_text())
    pins = {}
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            for requirement in entry["pip"]:
                match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", requirement)
                if match:
                    pins[match.group(1).lower()] = match.group(2)
        elif "=" in entry:
            name, version = entry.split("=", 1)
            pins[name.lower()] = version
    return pins


def test_every_pip_pin_is_in_the_conda_environment_with_the_same_version():
    pip, conda = pip_pins(), conda_pins()
    assert pip["torch"] == "2.13.0"
    mismatched = {name: (version, conda.get(name)) for name, version in pip.items() if conda.get(name) != version}
    assert not mismatched, f"pyproject.toml vs envs/thermocg.yaml: {mismatched}"


def test_every_rule_uses_the_environment():
    for rule_file in (REPO / "workflow" / "rules").glob("*.smk"):
        text = rule_file.read_text()
        assert text.count("conda:") == text.count("\nrule "), f"{rule_file.name}: a rule without conda:"
