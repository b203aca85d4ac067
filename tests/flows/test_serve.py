"""The deployments `python -m flows.serve` serves: names, schedules, parameters, entrypoints."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flows.serve import DELIVER_DEPLOYMENT, NIGHTLY_DEPLOYMENT, build_deployments, main
from nurture.settings import Settings


def test_the_deployments_follow_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        workspace=tmp_path / "workspace",
        data_dir=tmp_path / "data",
        nightly_cron="30 3 * * *",
        nightly_time_zone="Europe/Paris",
        deliver_every_minutes=5,
    )

    nightly, deliver = build_deployments(settings)

    assert (nightly.name, nightly.flow_name) == (NIGHTLY_DEPLOYMENT, "nightly")
    assert (deliver.name, deliver.flow_name) == (DELIVER_DEPLOYMENT, "deliver")
    [cron] = [s.schedule for s in nightly.schedules]
    assert (cron.cron, cron.timezone) == ("30 3 * * *", "Europe/Paris")
    [interval] = [s.schedule for s in deliver.schedules]
    assert interval.interval == dt.timedelta(minutes=5)
    for deployment in (nightly, deliver):
        assert deployment.parameters == {
            "workspace": str(tmp_path / "workspace"),
            "data_dir": str(tmp_path / "data"),
        }
        assert deployment.concurrency_limit == 1
    # A served run loads its flow from the module, with the task runner its environment chooses.
    assert nightly.entrypoint == "flows/nightly.py:nightly"
    assert deliver.entrypoint == "flows/deliver.py:deliver"


def test_arguments_override_the_schedules(tmp_path: Path) -> None:
    nightly, deliver = build_deployments(
        Settings(), nightly_cron="0 4 * * 1", time_zone="America/New_York", deliver_every_minutes=1
    )

    [cron] = [s.schedule for s in nightly.schedules]
    assert (cron.cron, cron.timezone) == ("0 4 * * 1", "America/New_York")
    [interval] = [s.schedule for s in deliver.schedules]
    assert interval.interval == dt.timedelta(minutes=1)


def test_serving_without_a_server_asks_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: None}), pytest.raises(SystemExit):
        main(["--workspace", str(Path(__file__).resolve().parents[2] / "content")])


def test_prefect_yaml_deploys_the_same_flows_on_the_default_schedules() -> None:
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))
    by_name = {deployment["name"]: deployment for deployment in config["deployments"]}
    defaults = Settings()

    assert set(by_name) == {NIGHTLY_DEPLOYMENT, DELIVER_DEPLOYMENT}
    nightly, deliver = by_name[NIGHTLY_DEPLOYMENT], by_name[DELIVER_DEPLOYMENT]
    assert nightly["schedules"] == [
        {"cron": defaults.nightly_cron, "timezone": defaults.nightly_time_zone}
    ]
    assert deliver["schedules"] == [{"interval": defaults.deliver_every_minutes * 60}]
    for deployment, flow_name in ((nightly, "nightly"), (deliver, "deliver")):
        assert load_flow_from_entrypoint(str(root / deployment["entrypoint"])).name == flow_name
        assert deployment["concurrency_limit"]["limit"] == 1
        assert "parameters" not in deployment  # folders and secrets come from the environment
