"""The whole platform on the PKCS#11 backend: the root key lives in SoftHSM2."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import exchange
from crypto.backends.pkcs11 import Pkcs11Config
from crypto.errors import CryptoError
from gateway.app import create_app
from gateway.platform import build_platform, initialise
from gateway.settings import Settings
from tests.conftest import EXAMPLE_CSV, login
from tests.test_api_datasets import metadata, register


@pytest.mark.hsm
def test_registration_and_ledger_on_the_hsm_backend(softhsm: Pkcs11Config, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'pdx.db'}",
        key_backend="pkcs11",
        pkcs11_module=softhsm.module_path,
        pkcs11_token_label=softhsm.token_label,
        pkcs11_pin=softhsm.user_pin,
        pkcs11_key_label=f"pdx-platform-{uuid.uuid4().hex[:8]}",
    )
    platform = build_platform(settings)
    creds = initialise(platform)
    assert creds is not None
    assert not (settings.keys_dir / "root.key").exists()  # nothing on disk
    with TestClient(create_app(platform)) as api:
        provider = login(api, creds, "provider-transport")
        r = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata())
        assert r.status_code == 201, r.text
        with platform.session() as session:
            data = b"".join(exchange.iter_plaintext(platform.catalog, session, r.json()["id"]))
        assert data == EXAMPLE_CSV.read_bytes()
    platform.engine.dispose()
    wrong = settings.replace(pkcs11_pin="0000")
    with pytest.raises(CryptoError) as caught:
        build_platform(wrong)
    assert caught.value.code == "hsm-unavailable"
