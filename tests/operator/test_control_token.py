"""The control token of a Secret made before there were any is added once, never replaced, even
when two operators (an old and a new leader) reconcile at the same time (no cluster needed)."""

from __future__ import annotations

from collections.abc import Mapping

from ostinato_operator._children import Owner
from ostinato_operator._keys import CONTROL_TOKEN_ENV
from ostinato_operator._reconcile import ensure_control_token

OWNER = Owner("counter", "ns1", "uid-1")


class FakeSecrets:
    """One Secret with a resourceVersion, patched only at the version the writer read."""

    def __init__(self, data: dict[str, str] | None) -> None:
        self.data = data
        self.version = 1
        self.patches = 0
        #: Run once just before the next patch lands: another writer getting there first.
        self.meanwhile: dict[str, str] | None = None

    def secret_value(self, namespace: str, name: str, key: str) -> tuple[str | None, str] | None:
        assert (namespace, name) == ("ns1", "counter-curve")
        if self.data is None:
            return None
        return self.data.get(key), str(self.version)

    def add_to_secret(
        self, namespace: str, name: str, string_data: Mapping[str, str], resource_version: str
    ) -> bool:
        if self.meanwhile is not None:
            assert self.data is not None
            self.data.update(self.meanwhile)
            self.version += 1
            self.meanwhile = None
        if self.data is None or resource_version != str(self.version):
            return False
        self.data.update(string_data)
        self.version += 1
        self.patches += 1
        return True


def test_a_secret_without_a_token_gets_one_and_keeps_its_keys() -> None:
    kube = FakeSecrets({"OSTINATO_CURVE_CLIENT_PUBLIC": "k" * 40})
    assert ensure_control_token(kube, OWNER) is True  # type: ignore[arg-type]
    assert kube.data is not None
    assert kube.data["OSTINATO_CURVE_CLIENT_PUBLIC"] == "k" * 40
    token = kube.data[CONTROL_TOKEN_ENV]
    assert len(token) == 43
    assert ensure_control_token(kube, OWNER) is False  # type: ignore[arg-type]
    assert kube.data[CONTROL_TOKEN_ENV] == token
    assert kube.patches == 1


def test_a_token_another_writer_added_first_is_the_one_kept() -> None:
    kube = FakeSecrets({"OSTINATO_CURVE_CLIENT_PUBLIC": "k" * 40})
    kube.meanwhile = {CONTROL_TOKEN_ENV: "theirs-0123456789abcdef"}
    assert ensure_control_token(kube, OWNER) is False  # type: ignore[arg-type]
    assert kube.data is not None
    assert kube.data[CONTROL_TOKEN_ENV] == "theirs-0123456789abcdef"
    assert kube.patches == 0


def test_no_secret_no_token_added() -> None:
    kube = FakeSecrets(None)
    assert ensure_control_token(kube, OWNER) is False  # type: ignore[arg-type]
