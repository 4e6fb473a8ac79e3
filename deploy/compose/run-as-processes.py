#!/usr/bin/env python3
"""Runs the services of deploy/docker-compose.yml as plain processes on loopback.

For machines without a container engine (CI): the quick start is tested with the same
entrypoints, configuration files and environment as in Compose. What an engine would
provide, this does instead, and nothing else:

- images: `postgres:*` is PostgreSQL from the machine, initialised the way the image's
  entrypoint does (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, then the scripts
  mounted in /docker-entrypoint-initdb.d); `node:*` and `python:*` run the service's
  `command` with the machine's node and a given Python venv first on PATH; a service
  built from the Dockerfile runs the given airlock binary with the image's entrypoint,
  command and AIRLOCK_CONFIG;
- the network: every service's container ports get free ports on 127.0.0.1, and
  `service:port` (and a TOML table's `host = "service"` with its `port`), bare service
  names, `0.0.0.0:port` listeners and a service's own port values in configuration and
  environment are translated to them; LISTEN=127.0.0.1 is added so that nothing binds
  beyond loopback;
- volumes: bind mounts are the files themselves (configuration files are translated
  copies), named volumes are folders under the work directory;
- depends_on: `service_healthy` runs the service's own healthcheck (with PGHOST/PGPORT
  pointing at the emulated server), `service_started` waits for its ports.

Writes WORKDIR/state.json (each service's ports, the airlock configuration's path, logs)
once everything is up, then waits; SIGTERM or SIGINT stops everything.

    run-as-processes.py --compose deploy/docker-compose.yml --airlock target/release/airlock \
        --python-venv /path/to/venv --workdir /tmp/quickstart
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ruamel.yaml import YAML

IMAGE_PORTS = {"postgres": [5432]}
AIRLOCK_IMAGE_ENV = {"AIRLOCK_CONFIG": "/etc/airlock/airlock.toml"}  # the Dockerfile's ENV
AIRLOCK_IMAGE_CMD = ["serve"]  # the Dockerfile's CMD, after ENTRYPOINT airlock


def interpolate(value, env):
    """Compose's ${VAR}, ${VAR:-default} and $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        name, default = m.group(1), m.group(3)
        got = env.get(name)
        return got if got not in (None, "") or default is None else default

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}", sub, value).replace("$$", "$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def image_name(svc):
    return str(svc.get("image", "")).split("/")[-1].split(":")[0]


def environment(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


class Network:
    """Container ports to loopback ports, and the translation of text that names them."""

    def __init__(self, services):
        self.names = list(services)
        self.ports = {}
        for name, svc in services.items():
            ports = list(IMAGE_PORTS.get(image_name(svc), []))
            for p in svc.get("ports") or []:
                container = int(str(p).split(":")[-1].split("/")[0])
                if container not in ports:
                    ports.append(container)
            self.ports[name] = {p: free_port() for p in ports}

    def translate(self, text, own):
        for name in sorted(self.names, key=len, reverse=True):
            for container, host in self.ports[name].items():
                text = re.sub(rf"(?<![\w.-]){re.escape(name)}:{container}(?!\d)", f"127.0.0.1:{host}", text)
        for container, host in self.ports.get(own, {}).items():
            text = text.replace(f"0.0.0.0:{container}", f"127.0.0.1:{host}")
        return text

    def translate_env(self, value, own):
        if value in self.names:
            return "127.0.0.1"
        if value.isdigit() and int(value) in self.ports.get(own, {}):
            return str(self.ports[own][int(value)])
        return self.translate(value, own)

    def translate_toml(self, text, own):
        """Also a table's `host = "service"` with its `port = N`."""
        blocks = re.split(r"(?m)^(?=\[)", text)
        out = []
        for block in blocks:
            m = re.search(r'(?m)^(\s*host\s*=\s*")([^"]+)(")', block)
            if m and m.group(2) in self.names:
                name = m.group(2)
                block = block[: m.start(2)] + "127.0.0.1" + block[m.end(2):]
                block = re.sub(
                    r"(?m)^(\s*port\s*=\s*)(\d+)",
                    lambda p: p.group(1) + str(self.ports[name].get(int(p.group(2)), p.group(2))),
                    block,
                )
            out.append(block)
        return self.translate("".join(out), own)


class Runner:
    def __init__(self, args, compose_path):
        self.args = args
        self.compose_dir = compose_path.parent.resolve()
        yaml = YAML(typ="safe")
        doc = interpolate(yaml.load(compose_path.read_text()), os.environ)
        self.services = doc.get("services") or {}
        self.net = Network(self.services)
        self.work = Path(args.workdir).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o755)
        self.procs = {}
        self.clusters = []
        self.state = {"services": {}, "logs": str(self.work / "logs")}
        (self.work / "logs").mkdir(exist_ok=True)

    # -- volumes -------------------------------------------------------------------
    def mounts(self, name, svc):
        """(container path, host path) pairs, longest container path first."""
        pairs = []
        for v in svc.get("volumes") or []:
            parts = str(v).split(":")
            source, target = parts[0], parts[1]
            if source.startswith((".", "/")):
                host = (self.compose_dir / source).resolve()
            else:
                host = self.work / "volumes" / source
                host.mkdir(parents=True, exist_ok=True)
            pairs.append((target, host))
        return sorted(pairs, key=lambda p: len(p[0]), reverse=True)

    def host_path(self, path, mounts):
        for target, host in mounts:
            if path == target or path.startswith(target + "/"):
                return str(host) + path[len(target):]
        return path

    def with_paths(self, text, mounts):
        for target, host in mounts:
            text = re.sub(rf"(?<![\w/]){re.escape(target)}(?=[/\"'\s]|$)", str(host), text)
        return text

    # -- processes -----------------------------------------------------------------
    def spawn(self, name, argv, env, cwd):
        log = open(self.work / "logs" / f"{name}.log", "wb")
        full = dict(os.environ)
        full.update(env)
        self.procs[name] = subprocess.Popen(argv, env=full, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def as_postgres(self, argv):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def run_postgres(self, name, svc):
        env = environment(svc)
        user = env.get("POSTGRES_USER", "postgres")
        db = env.get("POSTGRES_DB", user)
        password = env.get("POSTGRES_PASSWORD", "")
        bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))[-1]
        home = self.work / name
        sock = home / "sock"
        sock.mkdir(parents=True, exist_ok=True)
        (home / "pw").write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(home, "postgres")
            shutil.chown(sock, "postgres")
            shutil.chown(home / "pw", "postgres")
        data = home / "data"
        port = self.net.ports[name][5432]
        subprocess.run(self.as_postgres([f"{bindir}/initdb", "-D", str(data), "-U", user, f"--pwfile={home / 'pw'}",
                                         "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{sock}'\n")
        subprocess.run(self.as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-l", str(home / "pg.log"), "-w", "start"]),
                       check=True, stdout=subprocess.DEVNULL)
        self.clusters.append((bindir, data))
        psql = [f"{bindir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(sock), "-p", str(port), "-U", user]
        if db != "postgres":
            subprocess.run(self.as_postgres(psql + ["-d", "postgres", "-c", f'create database "{db}"']), check=True)
        for target, host in self.mounts(name, svc):
            if target.startswith("/docker-entrypoint-initdb.d"):
                files = sorted(host.glob("*.sql")) if host.is_dir() else [host]
                for f in files:
                    subprocess.run(self.as_postgres(psql + ["-d", db, "-f", str(f)]), check=True,
                                   stdout=subprocess.DEVNULL)
        return {"PGHOST": str(sock), "PGPORT": str(port)}

    def run_command(self, name, svc, argv, extra_env):
        mounts = self.mounts(name, svc)
        env = {k: self.with_paths(self.net.translate_env(v, name), mounts) for k, v in environment(svc).items()}
        env.update(extra_env)
        env["LISTEN"] = "127.0.0.1"
        cwd = self.work / name
        cwd.mkdir(parents=True, exist_ok=True)
        workdir = svc.get("working_dir")
        if workdir:
            # The service's working directory with its mounted files in it (copied:
            # the command may install into it).
            for target, host in mounts:
                if target.startswith(workdir + "/") and host.is_file():
                    shutil.copy(host, cwd / target[len(workdir) + 1:])
        self.spawn(name, argv, env, cwd)

    def run_airlock(self, name, svc):
        mounts = self.mounts(name, svc)
        config_target = AIRLOCK_IMAGE_ENV["AIRLOCK_CONFIG"]
        etc = self.work / name / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        translated = []
        for target, host in mounts:
            if host.is_file() and host.suffix == ".toml":
                text = self.net.translate_toml(host.read_text(), name)
                copy = etc / host.name
                copy.write_text(self.with_paths(text, mounts))
                translated.append((target, copy))
            else:
                translated.append((target, host))
        env = dict(AIRLOCK_IMAGE_ENV)
        env.update(environment(svc))
        env = {k: self.host_path(self.with_paths(self.net.translate_env(v, name), translated), translated)
               for k, v in env.items()}
        command = svc.get("command") or AIRLOCK_IMAGE_CMD
        if isinstance(command, str):
            command = command.split()
        self.spawn(name, [self.args.airlock] + list(command), env, self.work / name)
        self.state["airlock_config"] = env["AIRLOCK_CONFIG"]
        self.state["airlock_env"] = {k: v for k, v in env.items() if k != "AIRLOCK_CONFIG"}

    def start(self, name):
        svc = self.services[name]
        image = image_name(svc)
        health_env = {}
        if image == "postgres":
            health_env = self.run_postgres(name, svc)
        elif "build" in svc:
            self.run_airlock(name, svc)
        elif image in ("node", "python"):
            command = svc.get("command")
            argv = command if isinstance(command, list) else ["sh", "-c", command]
            path = os.environ.get("PATH", "")
            if image == "python":
                path = f"{Path(self.args.python_venv).resolve() / 'bin'}:{path}"
            self.run_command(name, svc, argv, {"PATH": path})
        else:
            sys.exit(f"service {name}: no stand-in for image {svc.get('image')!r}")
        self.state["services"][name] = {"ports": {str(c): h for c, h in self.net.ports[name].items()}}
        return health_env

    def wait_healthy(self, name, health_env):
        check = (self.services[name].get("healthcheck") or {}).get("test")
        if not check:
            return
        argv = ["sh", "-c", check[1]] if check[0] == "CMD-SHELL" else check[1:]
        env = dict(os.environ)
        env.update(health_env)
        for _ in range(120):
            if subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                return
            time.sleep(0.5)
        sys.exit(f"service {name} never became healthy")

    def order(self):
        done, order = set(), []

        def visit(n):
            if n in done:
                return
            deps = self.services[n].get("depends_on") or {}
            for d in deps if isinstance(deps, list) else deps.keys():
                visit(d)
            done.add(n)
            order.append(n)

        for n in self.services:
            visit(n)
        return order

    def run(self):
        health = {}
        for name in self.order():
            deps = self.services[name].get("depends_on") or {}
            if isinstance(deps, list):
                deps = {d: {"condition": "service_started"} for d in deps}
            for dep, how in deps.items():
                if (how or {}).get("condition") == "service_healthy":
                    self.wait_healthy(dep, health.get(dep, {}))
                else:
                    for port in self.net.ports[dep].values():
                        if not wait_port(port):
                            sys.exit(f"service {dep} does not listen on {port} (see {self.work}/logs/{dep}.log)")
            health[name] = self.start(name)
        self.state["pids"] = {n: p.pid for n, p in self.procs.items()}
        (self.work / "state.json").write_text(json.dumps(self.state, indent=2))
        print(f"up: {', '.join(self.order())}; state in {self.work / 'state.json'}", flush=True)

    def stop(self):
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for bindir, data in self.clusters:
            subprocess.run(self.as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compose", required=True)
    ap.add_argument("--airlock", required=True, help="the airlock binary (built as the Dockerfile builds it)")
    ap.add_argument("--python-venv", required=True, help="a venv whose python and pip stand in for python images")
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    runner = Runner(args, Path(args.compose))

    def stop(*_):
        runner.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        runner.run()
    except BaseException:
        runner.stop()
        raise
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
