"""compose/ checked statically: Docker cannot run here, so every file it mounts is checked instead."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from common.config import load_config
from compose import processes, services
from compose import stack as stack_cli
from compose.build import main as build_main
from compose.prometheus_config import targets
from compose.service import PORT_ENV, Port, Python, Scrape, Service, Stack
from compose.stack import isolated_env
from exporters.uptime.config import UptimeConfig
from tests.conftest import ROOT

COMPOSE = ROOT / "compose"
DOC = yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def test_generated_compose_files_are_current() -> None:
    assert build_main(["--check"]) == 0, "run `python -m compose.build` and commit"


def test_images_are_pinned() -> None:
    for name, svc in DOC["services"].items():
        image = svc.get("image", "")
        assert image, f"{name}: no image"
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} is not an exact version"


def test_every_bind_mount_exists_and_is_read_only() -> None:
    for name, svc in DOC["services"].items():
        for vol in svc.get("volumes", []):
            src, _dst, *mode = vol.split(":")
            if src.startswith((".", "/")):
                assert (COMPOSE / src).resolve().exists(), f"{name}: {src} does not exist"
                assert mode == ["ro"], f"{name}: bind mount {src} must be read-only"


def test_the_demo_override_pages_the_sink_and_changes_nothing_else(amtool: str) -> None:
    demo = yaml.safe_load((COMPOSE / "compose.demo.yaml").read_text())
    assert set(demo["services"]) == {"alertmanager"}
    base, over = DOC["services"]["alertmanager"], demo["services"]["alertmanager"]
    flags = [f for f in over["command"] if not f.startswith("--config.file=")]
    assert flags == [f for f in base["command"] if not f.startswith("--config.file=")]
    (mount,) = over["volumes"]
    src, dst, mode = mount.split(":")
    assert (COMPOSE / src).is_file()
    assert mode == "ro"
    assert f"--config.file={dst}" in over["command"]
    placed = yaml.safe_load((COMPOSE / src).read_text())
    urls = [pd["url"] for r in placed["receivers"] for pd in r.get("pagerduty_configs", [])]
    assert urls
    assert all(u == "http://sink:9790/v2/enqueue" for u in urls)
    assert "pagerduty.com" not in (COMPOSE / src).read_text()
    res = subprocess.run(
        [amtool, "check-config", str(COMPOSE / src)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_podman_override_swaps_every_image_for_one_built_here() -> None:
    from compose import podman_images

    override = yaml.safe_load((COMPOSE / "podman" / "compose.podman.yaml").read_text())
    built = {podman_images.PROJECT, *podman_images.SERVICES}
    for name, svc in DOC["services"].items():
        if name == "grafana":  # not packaged by Debian: not started under Podman here
            assert name not in override["services"]
            continue
        image = override["services"][name]["image"]
        assert image in built, f"{name}: {image} is not built by compose.podman_images"
        expected = podman_images.PROJECT if "build" in svc else None
        assert expected is None or image == expected, name
        assert set(override["services"][name]) == {"image"}, f"{name}: only the image changes"
    assert (ROOT / ".dockerignore").read_text().count("compose/secrets") == 1


def test_secrets_are_declared_and_have_examples() -> None:
    declared = DOC["secrets"]
    for name, svc in DOC["services"].items():
        for secret in svc.get("secrets", []):
            source = secret["source"] if isinstance(secret, dict) else secret  # long syntax
            assert source in declared, f"{name}: secret {source} not declared"
    for secret, spec in declared.items():
        example = (COMPOSE / spec["file"]).with_name(Path(spec["file"]).name + ".example")
        assert example.is_file(), f"{secret}: no {example}"
    gitignore = (ROOT / ".gitignore").read_text()
    assert "compose/secrets/*" in gitignore


def test_ports_bind_to_loopback_and_services_have_healthchecks() -> None:
    for name, svc in DOC["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"
        assert "healthcheck" in svc, f"{name}: no healthcheck"


def test_prometheus_config_and_rules_pass_promtool(tmp_path: Path, promtool: str) -> None:
    doc = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    # Inside the container the rules live under /etc/prometheus/rules: point at the same files here.
    assert doc["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    mount = next(
        v
        for v in DOC["services"]["prometheus"]["volumes"]
        if v.endswith(":/etc/prometheus/rules:ro")
    )
    rules_dir = (COMPOSE / mount.split(":")[0]).resolve()
    doc["rule_files"] = [str(rules_dir / "*.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(doc))
    res = subprocess.run(
        [promtool, "check", "config", str(local)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list(rules_dir.glob("*.yml"))) >= 4
    # Every uptime exporter service is scraped with its region label.
    scraped = {
        t
        for sc in doc["scrape_configs"]
        if sc["job_name"] == "uptime"
        for s in sc["static_configs"]
        for t in s["targets"]
    }
    assert scraped == {"uptime-us-east:9701", "uptime-eu-west:9701"}


def test_alertmanager_config_mounted_is_valid(amtool: str) -> None:
    mount = next(v for v in DOC["services"]["alertmanager"]["volumes"] if "alertmanager.yml" in v)
    path = (COMPOSE / mount.split(":")[0]).resolve()
    res = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # Every *_file secret the config names is provided to the container.
    provided = {f"/run/secrets/{s}" for s in DOC["services"]["alertmanager"]["secrets"]}
    used = set(re.findall(r"/run/secrets/[a-z_]+", path.read_text()))
    assert used <= provided, used - provided


def test_compose_recorder_config_is_valid_and_its_secrets_are_provided() -> None:
    from recorder.config import RecorderConfig

    cfg = load_config(COMPOSE / "recorder" / "recorder.yaml", RecorderConfig)
    provided = {f"/run/secrets/{s}" for s in DOC["services"]["recorder"]["secrets"]}
    files = [
        cfg.database.password_file,
        cfg.webhooks.alertmanager_token_file,
        cfg.webhooks.vercel_secret_file,
        cfg.webhooks.github_secret_file,
    ]
    assert {str(f) for f in files if f} <= provided
    assert "password" not in cfg.database.conninfo
    assert cfg.database.conninfo.startswith("host=postgres ")


def test_the_image_holds_every_package_and_the_runbooks_the_recorder_serves() -> None:
    """The runbook links of compose's alerts (runbook_base_url) open the recorder's published
    /runbooks/, which serves the folder the image copies beside the code."""
    copied = set(re.findall(r"^COPY (\S+) \1$", (COMPOSE / "Dockerfile").read_text(), re.M))
    packages = re.search(r"include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text())
    assert packages
    assert {p.strip('" *') for p in packages[1].split(",")} | {"runbooks"} <= copied
    assert "127.0.0.1:19700:9700" in DOC["services"]["recorder"]["ports"]
    from alert_rules.config import load_rules

    assert load_rules().runbook_base_url == "http://127.0.0.1:19700/runbooks"


def test_compose_uptime_config_is_valid() -> None:
    cfg = load_config(COMPOSE / "uptime" / "uptime.yaml", UptimeConfig)
    assert {t.name for t in cfg.targets} >= {"web-home", "api-health"}


def test_compose_vercel_config_is_valid_and_its_secrets_are_provided() -> None:
    from exporters.vercel.config import VercelConfig

    cfg = load_config(COMPOSE / "vercel" / "vercel.yaml", VercelConfig)
    provided = {f"/run/secrets/{s}" for s in DOC["services"]["vercel"]["secrets"]}
    files = [
        cfg.api.token_file,
        cfg.drains.verify_code_file,
        *(
            d.secret_file
            for d in (cfg.drains.logs, cfg.drains.traces, cfg.drains.speed_insights)
            if d
        ),
    ]
    assert {str(f) for f in files if f} == provided
    # The demo feed signs with the same drain secrets the exporter checks.
    feed = set(DOC["services"]["vercel-api"]["secrets"]) - {
        "vercel_webhook_secret",
        "vercel_deploy_hook_url",
    }
    assert feed <= set(DOC["services"]["vercel"]["secrets"])
    # ... and its deployment webhooks with the recorder's secret.
    assert "vercel_webhook_secret" in DOC["services"]["recorder"]["secrets"]
    # It serves the deploy hook the operator API calls (the same secret file).
    assert "vercel_deploy_hook_url" in DOC["services"]["api"]["secrets"]
    assert cfg.api.base_url == "http://vercel-api:9783"
    assert cfg.api.state_file is not None
    assert any(str(cfg.api.state_file.parent) in v for v in DOC["services"]["vercel"]["volumes"])


def test_grafana_provisions_every_dashboard_and_the_datasources_they_ask_for() -> None:
    import json

    svc = DOC["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in svc["volumes"] if v.startswith("."))
    assert mounts["../dashboards/generated"] == "/var/lib/grafana/dashboards/wsinfra"
    provider = yaml.safe_load(
        (COMPOSE / "grafana" / "provisioning" / "dashboards" / "wsinfra.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == mounts["../dashboards/generated"]
    sources = yaml.safe_load(
        (COMPOSE / "grafana" / "provisioning" / "datasources" / "wsinfra.yaml").read_text()
    )["datasources"]
    types = {d["type"] for d in sources}
    asked = set()
    for path in (ROOT / "dashboards" / "generated").glob("*.json"):
        doc = json.loads(path.read_text())
        asked |= {v["query"] for v in doc["templating"]["list"] if v["type"] == "datasource"}
    assert asked <= types, asked - types
    assert "alertmanager" in types
    # Secrets by file only; the file it names is mounted.
    pg = next(d for d in sources if d["type"] == "grafana-postgresql-datasource")
    assert pg["secureJsonData"]["password"] == "$__file{/run/secrets/postgres_password}"
    assert "postgres_password" in svc["secrets"]
    home = svc["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "dashboards" / "generated" / Path(home).name).is_file()


def test_compose_supabase_config_is_valid_and_its_database_preloads_pg_stat_statements() -> None:
    from exporters.supabase.config import SupabaseConfig

    cfg = load_config(COMPOSE / "supabase" / "supabase.yaml", SupabaseConfig)
    (db,) = cfg.databases
    assert str(db.password_file) == "/run/secrets/postgres_password"
    assert "postgres_password" in DOC["services"]["supabase"]["secrets"]
    assert "host=postgres" in db.conninfo
    assert "shared_preload_libraries=pg_stat_statements" in DOC["services"]["postgres"]["command"]
    assert not db.disabled_collectors
    assert cfg.management is not None
    assert str(cfg.management.token_file) == "/run/secrets/supabase_access_token"
    assert "supabase_access_token" in DOC["services"]["supabase"]["secrets"]
    assert "supabase_access_token" in DOC["services"]["supabase-api"]["secrets"]
    assert cfg.project_metrics is not None
    keys = {s["target"] for s in DOC["services"]["supabase"]["secrets"] if isinstance(s, dict)}
    assert {f"{cfg.project_metrics.keys_dir}/{ref}" for ref in cfg.project_metrics.projects} <= keys


def test_compose_billing_config_is_valid_and_its_secrets_are_provided() -> None:
    from exporters.billing.config import BillingConfig

    cfg = load_config(COMPOSE / "billing" / "billing.yaml", BillingConfig)
    provided = {f"/run/secrets/{s}" for s in DOC["services"]["billing"]["secrets"]}
    files = [
        cfg.vercel.token_file if cfg.vercel else None,
        cfg.openai.token_file if cfg.openai else None,
    ]
    assert cfg.cost_tracking is not None
    files.append(cfg.cost_tracking.password_file)
    assert {str(f) for f in files if f} == provided
    # The demo APIs check the same tokens the exporter sends.
    assert set(DOC["services"]["billing-api"]["secrets"]) <= set(
        DOC["services"]["billing"]["secrets"]
    )
    # The invoices the demo writes are the folder the exporter reads.
    [folder] = cfg.folders
    assert any(
        v.startswith("billing-invoices:" + str(folder.path))
        for v in DOC["services"]["billing"]["volumes"]
    )
    assert any(
        v.startswith("billing-invoices:" + str(folder.path))
        for v in DOC["services"]["billing-api"]["volumes"]
    )
    assert cfg.cost_tracking.conninfo.startswith("host=postgres ")


def test_compose_backups_config_is_valid_and_writes_where_its_volume_is() -> None:
    from backups.config import BackupsConfig

    cfg = load_config(COMPOSE / "backups" / "backups.yaml", BackupsConfig)
    svc = DOC["services"]["backups"]
    provided = {f"/run/secrets/{s}" for s in svc["secrets"]}
    conns = [cfg.record, *(t.source for t in cfg.targets), *cfg.restore_targets]
    assert {str(c.password_file) for c in conns} == provided
    assert all(c.conninfo.startswith("host=postgres ") for c in conns)
    assert cfg.demo
    assert [t.drill.scratch for t in cfg.targets] == ["private"]
    # Dumps go to a named volume; the private drill cluster to /tmp, writable on a read-only
    # root filesystem only as a tmpfs.
    assert f"backups:{cfg.location}" in svc["volumes"]
    assert "backups" in DOC["volumes"]
    assert svc["read_only"]
    assert "/tmp" in svc["tmpfs"]
    # backup_status and restore_drills are the recorder's migrations.
    assert "recorder" in svc["depends_on"]
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    assert "postgresql-15" in dockerfile
    assert str(cfg.location) in dockerfile


# --- The local stack's table (compose/services.py) drives the runner, isolated_env, the
# Prometheus configs and compose.


def test_every_port_of_the_table_has_its_own_env_var_and_isolated_env_honours_it(
    tmp_path: Path,
) -> None:
    every = services.every_port()
    assert all(PORT_ENV.fullmatch(p.env) for p in every), [p.env for p in every]
    assert len({p.env for p in every}) == len(every), "two ports share an env var"
    env, ports = isolated_env(tmp_path)
    assert set(ports) == {p.key for p in every}
    assert len(set(ports.values())) == len(ports), "isolated_env handed out a port twice"
    stack = Stack(services.SERVICES, env)
    for p in every:
        assert env[p.env] == str(ports[p.key])
        assert stack.port(p.key) == ports[p.key], f"{p.env} is not honoured"
    assert stack.demo, "isolated_env runs the DEMO"
    for s in stack.services:
        assert f":{ports[s.port.key]}/" in stack.shown(s)
        assert stack.ready_url(s).startswith(
            f"http://127.0.0.1:{ports[s.ready_port or s.port.key]}/"
        )


def test_the_services_of_one_mode_never_share_a_default_port(tmp_path: Path) -> None:
    for stack in (_stack(tmp_path / "demo"), _stack(tmp_path / "real", real=True)):
        defaults = [p.default for s in stack.services for p in s.ports]
        assert len(set(defaults)) == len(defaults), defaults


def test_every_scraped_service_compose_runs_is_a_job_in_compose_prometheus_config() -> None:
    doc = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    jobs = {sc["job_name"]: sc for sc in doc["scrape_configs"]}
    expected: set[str] = set()
    for s in services.SERVICES:
        if s.port.container is None:
            continue
        host = "localhost" if s.name == services.PROMETHEUS else s.name
        address = f"{host}:{s.port.container}"
        for scrape in s.scrapes:
            expected.add(scrape.job)
            job = jobs[scrape.job]
            if scrape.sd_path:
                assert {"url": f"http://{address}{scrape.sd_path}", "refresh_interval": "1m"} in (
                    job["http_sd_configs"]
                )
            else:
                labels = {"region": s.region} if s.region else None
                assert any(
                    sc["targets"] == [address] and sc.get("labels") == labels
                    for sc in job["static_configs"]
                ), (s.name, job)
            assert job.get("scrape_interval") == scrape.interval
    assert set(jobs) == expected, "a job without a row, or a row without its job"
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]


def test_compose_yaml_runs_every_service_of_the_table_on_its_ports() -> None:
    for s in services.SERVICES:
        if s.port.container is None:
            assert s.name not in DOC["services"], f"{s.name}: in compose, but no container port"
            continue
        svc = DOC["services"][s.name]
        for p in s.ports:
            if p.container is not None:
                assert f"127.0.0.1:{p.default}:{p.container}" in svc["ports"], (s.name, p)
        ready_port = next(p for p in s.ports if p.key == (s.ready_port or s.port.key))
        assert f"localhost:{ready_port.container}{s.ready}" in " ".join(svc["healthcheck"]["test"])
        if "demo" in svc.get("profiles", []):
            assert s.demo_only, f"{s.name}: compose runs it in the demo profile only"


def test_the_local_stack_runs_and_scrapes_what_its_mode_enables(tmp_path: Path) -> None:
    def jobs(stack: Stack) -> list[str]:
        found = targets(
            stack.services,
            lambda s: stack.listen(s.port.key),
            lambda sc: sc.enabled_when(stack),
        )
        return list(dict.fromkeys(t.scrape.job for t in found))

    demo = _stack(tmp_path / "demo")
    assert [s.name for s in demo.services] == [
        "platform", "sink", "supabase-api", "vercel-api", "billing-api", "uptime-us-east",
        "uptime-eu-west", "vercel", "recorder", "api", "backups", "supabase", "billing",
        "alertmanager", "prometheus",
    ]  # fmt: skip
    assert jobs(demo) == [
        "uptime", "vercel", "recorder", "api", "backups", "supabase", "supabase-projects",
        "billing", "alertmanager", "prometheus",
    ]  # fmt: skip
    real = _stack(tmp_path / "real", real=True)
    assert [s.name for s in real.services] == [
        "uptime", "recorder", "supabase", "alertmanager", "prometheus",
    ]  # fmt: skip
    assert jobs(real) == ["uptime", "recorder", "supabase", "alertmanager", "prometheus"]
    # Vercel, the API, the backup worker and billing join when their config exists; Supabase's
    # projects with project_metrics.
    for name in ("vercel.yaml", "billing.yaml", "api.yaml", "backups.yaml"):
        (tmp_path / "real" / "config" / name).write_text("{}\n")
    (tmp_path / "real" / "config" / "supabase.yaml").write_text("project_metrics: {}\n")
    real = _stack(tmp_path / "real", real=True)
    assert [s.name for s in real.services] == [
        "uptime", "vercel", "recorder", "api", "backups", "supabase", "billing", "alertmanager",
        "prometheus",
    ]  # fmt: skip
    assert "supabase-projects" in jobs(real)


def test_a_new_row_is_started_shown_by_status_scraped_and_stopped(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    promtool: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One row more in the table: `up` starts it with its writer's arguments and waits for its
    ready path, `status` shows its address and label, Prometheus scrapes it, `down` stops it."""
    fake = Service(
        name="fake-exporter",
        program=Python("fake_exporter"),
        port=Port("WSINFRA_FAKE_EXPORTER_PORT", 19799),
        config=lambda stack, s: ["--listen", stack.listen(s.port.key)],
        ready="/-/ready",
        label="a fake exporter",
        shown_path="/metrics",
        scrapes=(Scrape("fake", interval="7s"),),
    )

    def stub(stack: Stack, s: Service) -> list[str]:
        return []

    # Every other row without its side effects (database, binaries), except Prometheus's
    # config writer: the config it writes is the one under test.
    table = [
        replace(
            s,
            program=Python(f"stub.{s.name}"),
            config=s.config if s.name == services.PROMETHEUS else stub,
        )
        for s in services.SERVICES
    ]
    table.insert(-2, fake)  # before Alertmanager and Prometheus
    monkeypatch.setattr(services, "SERVICES", tuple(table))
    monkeypatch.setenv("WSINFRA_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("WSINFRA_CONFIG_DIR", str(tmp_path / "no-config"))
    monkeypatch.setenv("WSINFRA_FAKE_EXPORTER_PORT", "29799")
    started: dict[str, list[str]] = {}
    children: list[subprocess.Popen[bytes]] = []
    ready: list[str] = []

    def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        started[log.stem] = argv
        children.append(processes.spawn(["sleep", "60"], log))  # something alive to stop
        return children[-1]

    monkeypatch.setattr(stack_cli, "spawn", spawn)
    monkeypatch.setattr(stack_cli, "wait_ready", lambda url, **kw: ready.append(url))

    assert "FAKE_EXPORTER" in isolated_env(tmp_path / "iso")[1]
    try:
        assert stack_cli.main(["up"]) == 0
        line = "[up  ] fake-exporter   http://127.0.0.1:29799/metrics  (a fake exporter)"
        assert line in capsys.readouterr().out
        assert stack_cli.main(["status"]) == 0
        assert line in capsys.readouterr().out
    finally:
        assert stack_cli.main(["down"]) == 0
        for child in children:
            child.wait(5)
    assert "stopped fake-exporter" in capsys.readouterr().out
    assert stack_cli.main(["status"]) == 3
    assert started["fake-exporter"] == [
        sys.executable, "-m", "fake_exporter", "--listen", "127.0.0.1:29799",
    ]  # fmt: skip
    assert "http://127.0.0.1:29799/-/ready" in ready
    prom = yaml.safe_load((tmp_path / "run" / "config" / "prometheus.yml").read_text())
    job = next(sc for sc in prom["scrape_configs"] if sc["job_name"] == "fake")
    assert job == {
        "job_name": "fake",
        "scrape_interval": "7s",
        "static_configs": [{"targets": ["127.0.0.1:29799"]}],
    }


def _stack(base: Path, *, real: bool = False) -> Stack:
    """A stack under `base` on the default ports: the DEMO, or real mode (config/uptime.yaml)."""
    config = base / "config"
    config.mkdir(parents=True, exist_ok=True)
    if real:
        (config / "uptime.yaml").write_text("targets: []\n")
    return Stack(
        services.SERVICES, {"WSINFRA_RUN_DIR": str(base / "run"), "WSINFRA_CONFIG_DIR": str(config)}
    )
