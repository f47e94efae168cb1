"""`python -m server` with demo data, as `make run` starts it: one key per role written to a file only its user can
read, announced in the start-up lines, and usable from the client library through POS_OFFERS_API_KEY."""

from __future__ import annotations

import json
import stat

import pytest

from client import PermissionDeniedError, PosOffersClient, UnauthenticatedError, make_basket
from tests.ops.conftest import CUSTOMER, STORE, Service


def test_demo_keys_are_private_and_announced(service: Service) -> None:
    path = service.data_dir / "demo-credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert set(saved) == {"admin", "pos", "app"} and saved["pos"]["store_ids"] == [STORE]
    assert str(path) in service.child.log.read_text()  # the start-up lines say where they are


def test_the_client_reads_its_key_from_the_environment(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POS_OFFERS_API_KEY", raising=False)
    with PosOffersClient(service.target, timeout=5.0) as anonymous, pytest.raises(UnauthenticatedError):
        anonymous.get_profile(CUSTOMER)
    monkeypatch.setenv("POS_OFFERS_API_KEY", service.key("app"))
    with PosOffersClient(service.target, timeout=5.0) as app:
        assert app.get_profile(CUSTOMER).customer_id == CUSTOMER
        with pytest.raises(PermissionDeniedError):  # the app never commits
            app.commit_purchase("app-0001", make_basket(CUSTOMER, STORE, [("1", "dress-1", "dresses", 1, 120_00)]))
