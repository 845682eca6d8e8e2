"""docker-compose.yml's structure (no docker engine runs here): the one-machine default, the `scale` profile
(PostgreSQL, SeaweedFS, a second engine and a standby bot) and the optional local Bot API server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _gpus(service: dict) -> list[dict]:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return [d for d in devices if "gpu" in d.get("capabilities", [])]


def _env(service: dict) -> dict:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.partition("=")[::2] for item in env)


def test_without_a_profile_only_the_bot_and_the_engine_run_as_before(compose: dict) -> None:
    default = {name for name, s in compose["services"].items() if not s.get("profiles")}
    assert default == {"bot", "engine"}
    bot, engine = compose["services"]["bot"], compose["services"]["engine"]
    assert "kabina-data:/data" in bot["volumes"] and "kabina-data:/data" in engine["volumes"]
    assert bot["env_file"] == ".env" and bot["restart"] == "unless-stopped"
    assert _gpus(engine) and not _gpus(bot)


def test_the_scale_profile_has_postgres_seaweedfs_and_replicas_of_both(compose: dict) -> None:
    services = compose["services"]
    scale = {name for name, s in services.items() if "scale" in s.get("profiles", [])}
    assert {"postgres", "seaweedfs", "bot-2", "engine-2"} <= scale
    assert services["postgres"]["image"].startswith("postgres:15.")
    assert services["seaweedfs"]["image"].startswith("chrislusf/seaweedfs")
    command = " ".join(services["seaweedfs"]["command"])
    assert "-s3" in command and "-s3.port=8333" in command and "-s3.config=/run/secrets/seaweedfs-s3" in command
    assert "seaweedfs-s3" in services["seaweedfs"]["secrets"] and "seaweedfs-s3" in compose["secrets"]
    for name in ("bot-2", "engine-2"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_engine_has_one_gpu_and_its_own_cache_and_no_bot_has_a_gpu(compose: dict) -> None:
    services = compose["services"]
    engines = [s for s in services.values() if s.get("command") == ["python", "-m", "engine"]]
    bots = [s for s in services.values() if s.get("command") == ["python", "-m", "bot"]]
    assert len(engines) >= 2 and len(bots) >= 2
    for engine in engines:
        (gpu,) = _gpus(engine)
        assert gpu.get("count") == 1 or len(gpu.get("device_ids", [])) == 1
    assert all(not _gpus(bot) for bot in bots)
    # no two engines share a cache: each replica's cache lives in a volume of its own
    replica = services["engine-2"]
    cache = _env(replica)["ENGINE_CACHE_DIR"]
    mounts = [v for v in replica["volumes"] if v.split(":")[1] == cache]
    assert len(mounts) == 1 and mounts[0].split(":")[0] in compose["volumes"]
    elsewhere = {v.split(":")[0] for name, s in services.items() if name != "engine-2" for v in s.get("volumes", [])}
    assert mounts[0].split(":")[0] not in elsewhere and "kabina-data:/data" not in replica["volumes"]


def test_every_named_volume_is_declared(compose: dict) -> None:
    used = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])
            if not v.startswith((".", "/", "$"))}
    assert used <= set(compose["volumes"])


def test_the_local_bot_api_server_is_optional_and_shares_its_files_with_the_bots(compose: dict) -> None:
    services = compose["services"]
    server = services["telegram-bot-api"]
    assert server["image"].startswith("aiogram/telegram-bot-api") and server["profiles"] == ["local-api"]
    assert "telegram-bot-api-data:/var/lib/telegram-bot-api" in server["volumes"]
    for name in ("bot", "bot-2"):
        assert "telegram-bot-api-data:/var/lib/telegram-bot-api:ro" in services[name]["volumes"]


def test_no_secret_is_written_into_the_compose_file(compose: dict) -> None:
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|KEY|HASH|API_ID)", re.IGNORECASE)
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if secretish.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:-)?\}", str(value)), f"{name}: {key} holds a literal"
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"postgres(ql)?://[^:\s]+:[^@$\s]+@", text), "a password in a URL"
    assert not re.search(r"\b\d{6,}:[A-Za-z0-9_-]{30,}", text), "a bot token"


def test_the_s3_credentials_example_is_a_template_and_the_real_file_is_ignored() -> None:
    example = json.loads((ROOT / "deploy" / "seaweedfs-s3.example.json").read_text())
    (identity,) = example["identities"]
    (keys,) = identity["credentials"]
    assert keys["accessKey"].startswith("CHANGE-ME") and keys["secretKey"].startswith("CHANGE-ME")
    assert {"Read", "Write", "List"} <= set(identity["actions"])
    assert "/seaweedfs-s3.json" in (ROOT / ".gitignore").read_text().splitlines()


def test_env_example_names_the_scale_out_variables() -> None:
    env = (ROOT / ".env.example").read_text()
    for name in ("DATABASE_URL", "BLOB_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "POSTGRES_PASSWORD",
                 "ENGINE_CACHE_DIR", "TELEGRAM_API_URL", "TELEGRAM_API_LOCAL", "TELEGRAM_API_FILES",
                 "TELEGRAM_API_ID", "TELEGRAM_API_HASH"):
        assert re.search(rf"^#? ?{name}=", env, flags=re.MULTILINE), name
    assert "postgresql://kabina:" in env and "@postgres:5432/kabina" in env
    assert "s3://kabina?endpoint=http://seaweedfs:8333" in env


def test_the_readme_says_how_to_run_on_several_machines() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running on several machines", 1)[1].split("\n## ", 1)[0]
    for needed in ("DATABASE_URL=postgresql://", "BLOB_URL=s3://", "AWS_ACCESS_KEY_ID", "ENGINE_CACHE_DIR",
                   "PostgreSQL 15", "CPU only", "one NVIDIA GPU", "docker compose --profile scale up -d",
                   "python -m storage migrate --to DATABASE_URL --blobs BLOB_URL", "TELEGRAM_API_LOCAL=true",
                   "TELEGRAM_API_FILES=", "deploy/seaweedfs-s3.example.json"):
        assert needed in section, needed


def test_every_image_is_pinned_and_every_log_rotates(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not pinned"
        options = service["logging"]["options"]
        assert service["logging"]["driver"] == "json-file" and options["max-size"] and int(options["max-file"]) > 1


def test_bots_run_the_slim_image_and_engines_the_cuda_one(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        if service.get("command") == ["python", "-m", "bot"]:
            assert service["build"]["target"] == "bot" and service["image"].startswith("kabina-bot:"), name
        if service.get("command") == ["python", "-m", "engine"]:
            assert service["build"]["target"] == "engine", name


def test_an_engine_cache_path_survives_a_recreate_and_the_base_model_is_the_operators_choice(compose: dict) -> None:
    engine = compose["services"]["engine"]
    env = _env(engine)
    # a fixed path on a named volume: the default DATA_DIR/cache/<hostname> changes with every container
    assert env["ENGINE_CACHE_DIR"] == "/cache" and "engine-cache:/cache" in engine["volumes"]
    # BASE_MODEL from .env or the shell (a folder or a single .safetensors file under /models), /models/base if unset
    assert env["BASE_MODEL"] == "${BASE_MODEL:-/models/base}"
    assert env["DEVICE"] == "${DEVICE:-cuda}"


def test_every_bot_and_engine_serves_metrics_and_liveness_on_the_compose_network(compose: dict) -> None:
    for name, service in compose["services"].items():
        env = _env(service)
        port = {("python", "-m", "bot"): "METRICS_PORT", ("python", "-m", "engine"): "ENGINE_METRICS_PORT"}.get(
            tuple(service.get("command", ())))
        if port is None:
            continue
        assert env["METRICS_HOST"] == "0.0.0.0" and int(env[port]) > 0, name
        # the container's health is the process's own liveness answer, on that port
        assert f"127.0.0.1:{env[port]}/healthz" in " ".join(service["healthcheck"]["test"]), name
