"""What a trainer deploys (``deploy/``): a real authenticator, HTTPS, limits, culling, no secrets.

A testing authenticator exists only in ``deploy/local_hub.py`` (tests and the class
simulator, on 127.0.0.1); these tests read the configurations a class hub runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BREAK_S = 10 * 60  # the agenda's breaks (docs/trainer-guide.md section 1)
SECRET_KEYS = re.compile(
    r"\b(secret_?token|api_token|cookie_?secret|client_secret|password)\s*[:=]", re.IGNORECASE)


def _memory(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(float(text[:-1]) * units[text[-1].upper()])


def test_single_machine_config_has_native_auth_https_limits_and_a_patient_culler(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_HUB_DOMAIN", "hub.example.org")
    monkeypatch.setenv("LABKIT_HUB_ADMIN", "trainer")
    loader = PyFileConfigLoader("jupyterhub_config.py", path=str(DEPLOY))
    c = loader.load_config()
    assert c.JupyterHub.authenticator_class == "nativeauthenticator.NativeAuthenticator"
    assert c.NativeAuthenticator.open_signup is False
    assert c.JupyterHub.bind_url.startswith("https://")
    assert c.JupyterHub.ssl_cert.endswith("fullchain.pem") and c.JupyterHub.ssl_key
    assert c.JupyterHub.hub_ip == "127.0.0.1"
    assert _memory(c.Spawner.mem_guarantee) <= _memory(c.Spawner.mem_limit)
    assert 0 < c.Spawner.cpu_guarantee <= c.Spawner.cpu_limit
    (culler,) = c.JupyterHub.services
    timeout = int(next(a for a in culler["command"] if a.startswith("--timeout="))
                  .split("=")[1])
    assert timeout >= 3 * BREAK_S, "a break must not cull a trainee's server"


def test_z2jh_values_have_native_auth_https_limits_and_a_patient_culler() -> None:
    v = yaml.safe_load((DEPLOY / "z2jh" / "values.yaml").read_text())
    assert v["hub"]["config"]["JupyterHub"]["authenticator_class"] == \
        "nativeauthenticator.NativeAuthenticator"
    assert v["proxy"]["https"]["enabled"] is True
    su = v["singleuser"]
    assert _memory(su["memory"]["guarantee"]) <= _memory(su["memory"]["limit"])
    assert 0 < su["cpu"]["guarantee"] <= su["cpu"]["limit"]
    assert v["cull"]["enabled"] is True and v["cull"]["timeout"] >= 3 * BREAK_S


def test_tljh_setup_sets_native_auth_https_limits_and_culling() -> None:
    script = (DEPLOY / "tljh" / "setup.sh").read_text()
    for line in ("auth.type nativeauthenticator.NativeAuthenticator", "limits.memory",
                 "limits.cpu", "https.enabled true", "services.cull.timeout 3600"):
        assert f"tljh-config set {line}" in script, line


def test_the_environment_is_binders_plus_nbgitpuller() -> None:
    lines = (DEPLOY / "requirements.txt").read_text().splitlines()
    assert "-r ../binder/requirements.txt" in lines
    assert any(line.startswith("nbgitpuller") for line in lines)


def test_no_testing_authenticator_or_secret_in_what_a_trainer_deploys() -> None:
    for path in DEPLOY.rglob("*"):
        # local_hub.py is the loopback test hub; README.md describes it
        if not path.is_file() or path.name in ("local_hub.py", "README.md") \
                or path.suffix == ".pyc":
            continue
        text = path.read_text()
        for testing_only in ("dummy", "shared-password", "sharedpassword"):
            assert testing_only not in text.lower(), path
        assert not SECRET_KEYS.search(text), f"{path}: a secret belongs outside the repository"
