#!/usr/bin/env python3
"""Keeps deploy/kubernetes/ true to the agent it deploys.

    python3 kubernetes_manifest_test.py FERRY_CLI SOURCE_DIR

Parses every YAML document of deploy/kubernetes/*.yaml: each needs apiVersion, kind and metadata.name.
Each container that runs `ferry agent` may pass only options that the real CLI's `ferry agent --help`
lists (each with its value, the required ones present); every $(VAR) of its command line must be defined
in its env; the credential must come from a Secret mounted read-only (mode 0400) at --token-file, never
from the command line, and no Secret in the files may carry data. The DaemonSet `ferry-agent` names its
agent after its node. docs/cluster.md must tell how to create that Secret. When kubectl reaches a
cluster, `kubectl apply --dry-run=client` must accept each file; without one that part is skipped.
Exits 1 after reporting every problem.
"""
import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:
    print("FAIL PyYAML is missing: install Debian's python3-yaml (scripts/setup.sh does)", file=sys.stderr)
    sys.exit(1)

WORKLOADS = {"DaemonSet", "Deployment", "StatefulSet", "ReplicaSet", "Job", "Pod"}
VAR = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")  # $(VAR), not the escaped $$(VAR)
# The type CLI11 prints after an option that takes a value (`--server TEXT REQUIRED`, `--cpus UINT`).
HELP_LINE = re.compile(r"^\s+(?:(-\w),)?(--[a-z][a-z0-9-]*)(\s+(?:TEXT|UINT|INT|FLOAT|NUMBER|BOOLEAN|ENUM)\b)?"
                       r"(?:=\S*)?(\s+REQUIRED\b)?")

problems = []


def agent_options(cli):
    """The options `ferry agent --help` lists: name -> (takes a value, required)."""
    text = subprocess.run([cli, "agent", "--help"], capture_output=True, text=True, timeout=60,
                          check=True).stdout
    options = {}
    in_options = False
    for line in text.splitlines():
        if line.strip() == "Options:":
            in_options = True
        elif in_options and not line.strip():
            break
        elif in_options and (m := HELP_LINE.match(line)):
            entry = (bool(m.group(3)), bool(m.group(4)))
            options[m.group(2)] = entry
            if m.group(1):
                options[m.group(1)] = entry
    if "--server" not in options or "--token-file" not in options:
        sys.exit(f"FAIL could not read the options of `{cli} agent --help` (is the pattern stale?):\n{text}")
    return options


def pod_spec(doc):
    if doc["kind"] == "Pod":
        return doc.get("spec") or {}
    if doc["kind"] == "Job":
        return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    return (((doc.get("spec") or {}).get("template")) or {}).get("spec") or {}


def dockerfile(source_dir):
    """The image's ENTRYPOINT and the uid it creates, from deploy/kubernetes/Dockerfile."""
    path = os.path.join(source_dir, "deploy/kubernetes/Dockerfile")
    if not os.path.exists(path):
        problems.append("deploy/kubernetes/Dockerfile is missing")
        return [], None, ""
    text = open(path, encoding="utf-8").read()
    entry = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    uid = re.search(r"useradd\b.*--uid\s+(\d+)", text)
    binary = re.search(r"^ARG\s+FERRY_BINARY=(\S+)", text, re.M)
    return (json.loads(entry.group(1)) if entry else [], int(uid.group(1)) if uid else None,
            binary.group(1) if binary else "")


def mount_of(container, volumes, path):
    """The volume mount under which `path` lies (the deepest one), and its volume."""
    best = None
    for mount in container.get("volumeMounts") or []:
        root = mount["mountPath"].rstrip("/")
        if (path == root or path.startswith(root + "/")) and (best is None or len(root) > len(best[0]["mountPath"])):
            best = (mount, volumes.get(mount["name"]))
    return best or (None, None)


def check_agent(where, doc, container, spec, options, entrypoint, uid, config_maps, secrets):
    tokens = list(container.get("command") or entrypoint) + [str(a) for a in container.get("args") or []]
    at = next(i for i, t in enumerate(tokens) if os.path.basename(t) == "ferry")
    where = f"{where} container {container.get('name')}"
    rest = tokens[at + 2:]
    env = {e["name"]: e for e in container.get("env") or []}

    # Only the options `ferry agent --help` lists, each with its value.
    values = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        name, eq, value = token.partition("=")
        if not token.startswith("-"):
            problems.append(f"{where}: `{token}` is not an option's value (`ferry agent` takes no arguments)")
        elif name not in options:
            listed = ", ".join(sorted(o for o in options if o.startswith("--")))
            problems.append(f"{where}: {name} is not an option of `ferry agent` (its --help lists {listed})")
        elif options[name][0]:
            if not eq:
                if i + 1 >= len(rest) or rest[i + 1].startswith("-"):
                    problems.append(f"{where}: {name} has no value")
                else:
                    i += 1
                    value = rest[i]
            values[name] = value
        elif eq:
            problems.append(f"{where}: {name} takes no value")
        i += 1
    for name, (_, required) in options.items():
        if required and name not in values:
            problems.append(f"{where}: the required option {name} is missing")

    # Every $(VAR) is defined in env (Kubernetes leaves an undefined one as it is), none from a Secret.
    for token in tokens:
        for var in VAR.findall(token):
            if var not in env:
                problems.append(f"{where}: $({var}) in the command line is not defined in env")
            elif "secretKeyRef" in (env[var].get("valueFrom") or {}):
                problems.append(f"{where}: $({var}) puts a Secret on the command line")
    for e in env.values():
        source = e.get("valueFrom") or {}
        if e["name"] == "FERRY_AGENT_TOKEN":
            problems.append(f"{where}: FERRY_AGENT_TOKEN in env: the credential must come from --token-file")
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            if not ref.get("optional") and ref.get("key") not in config_maps.get(ref.get("name"), {}):
                problems.append(f"{where}: env {e['name']} reads key {ref.get('key')} of ConfigMap "
                                f"{ref.get('name')}, which the files do not define")
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            if ref.get("containerName", container.get("name")) != container.get("name"):
                problems.append(f"{where}: env {e['name']} reads the resources of another container")
            kind_, _, resource = ref.get("resource", "").partition(".")
            if resource not in ((container.get("resources") or {}).get(kind_) or {}):
                problems.append(f"{where}: env {e['name']} reads {ref.get('resource')}, which is not set")
    for token in tokens:
        for secret in secrets.values():
            if any(str(v) and str(v) in token for v in secret.values()):
                problems.append(f"{where}: a Secret's value is on the command line")

    # The credential: a file of a Secret, mounted read-only with mode 0400.
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            problems.append(f"{where}: mounts volume {mount['name']}, which the pod does not define")
    token_file = values.get("--token-file")
    if not token_file:
        problems.append(f"{where}: no --token-file: the agent must read its credential from a mounted Secret")
    else:
        mount, volume = mount_of(container, volumes, token_file)
        secret = (volume or {}).get("secret")
        if not secret:
            problems.append(f"{where}: --token-file {token_file} is not in a volume of a Secret")
        else:
            if not mount.get("readOnly"):
                problems.append(f"{where}: the Secret's volume {mount['name']} is not mounted readOnly")
            file = os.path.relpath(token_file, mount["mountPath"])
            items = secret.get("items")
            item = next((it for it in items or [] if it.get("path") == file), None)
            if items is not None and item is None:
                problems.append(f"{where}: no item of Secret {secret.get('secretName')} is at {token_file}")
            mode = (item or {}).get("mode", secret.get("defaultMode"))
            if mode != 0o400:
                shown = f"0{mode:o}" if isinstance(mode, int) else "the default (0644)"
                problems.append(f"{where}: the token's file has mode {shown}, not 0400")

    # Locked down: not root, nothing written outside its volumes (the cache among them), bounded, and time to
    # stop its containers.
    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        problems.append(f"{where}: runAsNonRoot is not set")
    run_as = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if uid is not None and run_as is not None and run_as != uid:
        problems.append(f"{where}: runAsUser {run_as} is not the Dockerfile's user ({uid})")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    cache = values.get("--cache-dir")
    if not cache:
        problems.append(f"{where}: no --cache-dir: the root filesystem is read-only, so it must be on a volume")
    else:
        mount, volume = mount_of(container, volumes, cache)
        if not volume or "emptyDir" not in volume or mount.get("readOnly"):
            problems.append(f"{where}: --cache-dir {cache} is not on a writable emptyDir volume")
    resources = container.get("resources") or {}
    if not resources.get("requests") or not resources.get("limits"):
        problems.append(f"{where}: resources need requests and limits")
    if spec.get("terminationGracePeriodSeconds") is None:
        problems.append(f"{where}: terminationGracePeriodSeconds is not set")

    # One agent on each node, named after it.
    if doc["kind"] == "DaemonSet":
        name = values.get("--name", "")
        m = VAR.fullmatch(name)
        ref = ((env.get(m.group(1)) or {}).get("valueFrom") or {}).get("fieldRef") if m else None
        if not ref or ref.get("fieldPath") != "spec.nodeName":
            problems.append(f"{where}: --name is not $(VAR) with VAR from the downward API's spec.nodeName")
    return tokens


def run_kubectl(files):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("skip kubectl apply --dry-run=client: no kubectl on PATH")
        return
    # kubectl maps kinds through the API server's discovery, even for a client-side dry run.
    probe = subprocess.run([kubectl, "api-versions", "--request-timeout=5s"], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no reason given"])[-1]
        print(f"skip kubectl apply --dry-run=client: kubectl reaches no cluster ({reason})")
        return
    for path in files:
        run = subprocess.run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f", path],
                             capture_output=True, text=True, timeout=120)
        if run.returncode != 0 and re.search(r"\(Forbidden\)|Unauthorized|must be logged in", run.stderr):
            print(f"skip kubectl apply --dry-run=client -f {os.path.basename(path)}: the cluster refuses this user "
                  f"({run.stderr.strip().splitlines()[-1]})")
        elif run.returncode != 0:
            problems.append(f"{path}: kubectl apply --dry-run=client failed:\n{run.stdout}{run.stderr}")
        else:
            print(f"ok   kubectl apply --dry-run=client -f {os.path.basename(path)}")


def main():
    if len(sys.argv) != 3:
        print("usage: python3 kubernetes_manifest_test.py FERRY_CLI SOURCE_DIR", file=sys.stderr)
        return 2
    cli, source_dir = sys.argv[1:]
    options = agent_options(cli)
    entrypoint, uid, binary = dockerfile(source_dir)
    files = sorted(glob.glob(os.path.join(source_dir, "deploy/kubernetes/*.yaml")))
    if not files:
        problems.append("no deploy/kubernetes/*.yaml")

    docs = []
    for path in files:
        try:
            loaded = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
        except yaml.YAMLError as e:
            problems.append(f"{path}: not YAML: {e}")
            continue
        for n, doc in enumerate(loaded, 1):
            where = f"{os.path.basename(path)} document {n}"
            if not isinstance(doc, dict):
                problems.append(f"{where}: not a mapping")
                continue
            name = (doc.get("metadata") or {}).get("name")
            for field, value in (("apiVersion", doc.get("apiVersion")), ("kind", doc.get("kind")),
                                 ("metadata.name", name)):
                if not isinstance(value, str) or not value:
                    problems.append(f"{where}: no {field} (a string)")
            if isinstance(doc.get("kind"), str) and isinstance(name, str):
                docs.append((f"{os.path.basename(path)} {doc['kind']} {name}", doc))

    namespaces = {doc["metadata"]["name"] for _, doc in docs if doc["kind"] == "Namespace"}
    config_maps = {doc["metadata"]["name"]: doc.get("data") or {} for _, doc in docs if doc["kind"] == "ConfigMap"}
    secrets = {}
    for where, doc in docs:
        if doc["kind"] == "Secret":
            secrets[doc["metadata"]["name"]] = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
            if secrets[doc["metadata"]["name"]]:
                problems.append(f"{where}: carries data: a credential does not belong in the repository "
                                f"(docs/cluster.md says how to create it)")
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") not in namespaces:
            problems.append(f"{where}: its namespace is not one the files declare ({', '.join(namespaces)})")

    agents = []
    secret_refs = set()
    for where, doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        if doc["kind"] != "Pod":
            selector = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            labels = (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                problems.append(f"{where}: its selector does not match its pod template's labels")
        spec = pod_spec(doc)
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                secret_refs.add((volume["secret"].get("secretName"),
                                 tuple(it.get("key") for it in volume["secret"].get("items") or [])))
        for container in spec.get("containers") or []:
            command = list(container.get("command") or entrypoint) + [str(a) for a in container.get("args") or []]
            at = next((i for i, t in enumerate(command) if os.path.basename(t) == "ferry"), None)
            if at is not None and command[at + 1:at + 2] == ["agent"]:
                agents.append((where, check_agent(where, doc, container, spec, options, entrypoint, uid,
                                                  config_maps, secrets)))
    if not any(where.endswith("DaemonSet ferry-agent") for where, _ in agents):
        problems.append("no DaemonSet ferry-agent whose container runs `ferry agent`")

    # docs/cluster.md tells how to create the Secret the pods mount, by the same name and key.
    doc_path = os.path.join(source_dir, "docs/cluster.md")
    created = [(m.group(1), set(re.findall(r"--from-file=([\w.-]+)=", m.group(2))))
               for m in re.finditer(r"create secret generic (\S+)((?: --from-file=[\w.-]+=\S+)+)",
                                    open(doc_path, encoding="utf-8").read())]
    for name, keys in secret_refs:
        if name not in secrets and not any(n == name and set(keys) <= made for n, made in created):
            files = " ".join(f"--from-file={key}=..." for key in (keys or ["KEY"]))
            problems.append(f"docs/cluster.md has no `kubectl create secret generic {name} {files}` "
                            "for the Secret the agents mount")

    # The Dockerfile's build context lets its binary through.
    ignore = os.path.join(source_dir, "deploy/kubernetes/Dockerfile.dockerignore")
    if binary and os.path.exists(ignore):
        admitted = [line[1:] for line in open(ignore, encoding="utf-8").read().splitlines() if line.startswith("!")]
        if not any(fnmatch.fnmatch(binary, pattern) for pattern in admitted):
            problems.append(f"Dockerfile.dockerignore keeps the Dockerfile's {binary} out of the build context")

    run_kubectl(files)

    if problems:
        for p in problems:
            print("FAIL " + p, file=sys.stderr)
        return 1
    for where, command in agents:
        print(f"ok   {where}: {' '.join(command)}")
    print(f"ok: {len(docs)} documents in {len(files)} files; {len(agents)} agent(s) use only options "
          f"`ferry agent --help` lists ({', '.join(o for o in options if o.startswith('--'))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
