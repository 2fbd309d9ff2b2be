#!/usr/bin/env python3
"""Asserts the properties deploy/kubernetes must have to survive node
termination (the incident): replicas or spread, anti-affinity, no spot
capacity, PodDisruptionBudgets, preStop plus a grace period longer than the
drain, probes on the admin endpoints, requests and limits, a volume for the
disk tier, non-root; and that the ConfigMaps ship config/edge.toml and
config/shield.toml unchanged. Exits non-zero with every failure listed."""
import pathlib
import re
import sys

import yaml

root = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(root / "deploy" / "kubernetes"))
from budgets import GIB, LOGS, MIB, budgets, quantity  # noqa: E402
kube = root / "deploy" / "kubernetes"
docs = []
for path in sorted(p for p in kube.rglob("*.yaml") if p.name != "kustomization.yaml"):
    docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def duration_s(text):
    match = re.fullmatch(r"(\d+)s", text.strip('"'))
    return int(match.group(1)) if match else None


workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
check(any(w["metadata"]["name"] == "holdfast-edge" and w["kind"] == "Deployment" for w in workloads), "edge Deployment")
check(any(w["metadata"]["name"] == "holdfast-shield" and w["kind"] == "StatefulSet" for w in workloads), "shield StatefulSet")
configs = {c["metadata"]["name"]: c["data"]["holdfast.toml"] for c in by_kind.get("ConfigMap", [])}
for role in ("edge", "shield"):
    check(configs.get(f"holdfast-{role}") == (root / "config" / f"{role}.toml").read_text(),
          f"ConfigMap holdfast-{role} must equal config/{role}.toml (run deploy/kubernetes/generate.py)")

def computed(role):
    memory, disk = budgets((root / "config" / f"{role}.toml").read_text())
    return quantity(memory, 128 * MIB), disk


for w in workloads:
    # Resources follow from the config (deploy/kubernetes/budgets.py).
    role = w["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component")
    memory, disk = computed(role)
    container = next(c for c in w["spec"]["template"]["spec"]["containers"] if c["name"] == "holdfast")
    resources = container.get("resources", {})
    for side in ("requests", "limits"):
        check(resources.get(side, {}).get("memory") == memory,
              f"holdfast-{role}: {side}.memory must be {memory} (computed; run deploy/kubernetes/generate.py)")
    if role == "edge":
        cache = next(v for v in w["spec"]["template"]["spec"]["volumes"] if v["name"] == "cache")
        check(cache["emptyDir"].get("sizeLimit") == quantity(disk, GIB), "holdfast-edge: cache sizeLimit is computed")
        for side in ("requests", "limits"):
            check(resources.get(side, {}).get("ephemeral-storage") == quantity(disk + LOGS, GIB),
                  f"holdfast-edge: {side}.ephemeral-storage covers the emptyDir and the logs")
    else:
        claim = w["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        check(claim == quantity(disk, GIB), "holdfast-shield: the volume claim is computed")

for w in workloads:
    name = w["metadata"]["name"]
    spec = w["spec"]
    pod = spec["template"]["spec"]
    labels = spec["selector"]["matchLabels"]
    role = labels.get("app.kubernetes.io/component")
    if name == "holdfast-edge":
        check(spec.get("replicas", 1) >= 3, f"{name}: at least 3 replicas")
    else:
        check(spec.get("replicas", 1) >= 2, f"{name}: at least 2 replicas")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
    check(any(t["topologyKey"] == "kubernetes.io/hostname" and t["labelSelector"]["matchLabels"] == labels for t in anti),
          f"{name}: required pod anti-affinity across nodes")
    spread = pod.get("topologySpreadConstraints", [])
    check(any(s["topologyKey"] == "topology.kubernetes.io/zone" for s in spread), f"{name}: spread across zones")
    terms = pod.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", [])
    keys = {e["key"] for t in terms for e in t.get("matchExpressions", [])}
    check({"eks.amazonaws.com/capacityType", "cloud.google.com/gke-spot", "cloud.google.com/gke-preemptible"} <= keys,
          f"{name}: node affinity away from spot and preemptible nodes")
    security = pod.get("securityContext", {})
    check(security.get("runAsNonRoot") is True and security.get("runAsUser", 0) != 0, f"{name}: non-root")
    for c in pod["containers"]:
        check(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False, f"{name}: no privilege escalation")
        check(c["readinessProbe"]["httpGet"]["path"] == "/ready", f"{name}: readiness probe on /ready")
        check(c["livenessProbe"]["httpGet"]["path"] == "/live", f"{name}: liveness probe on /live")
        check("preStop" in c.get("lifecycle", {}), f"{name}: preStop hook")
        check("requests" in c.get("resources", {}) and "limits" in c["resources"], f"{name}: requests and limits")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        check("/var/cache/holdfast" in mounts, f"{name}: a volume for the disk tier")
        prestop = c["lifecycle"]["preStop"]["exec"]["command"]
        prestop_s = int(prestop[-1]) if prestop[-1].isdigit() else 0
    # The grace period covers preStop + shutdown_delay + drain_timeout.
    config = configs.get(f"holdfast-{role}", "")
    delay = re.search(r'shutdown_delay\s*=\s*"([^"]+)"', config)
    drain = re.search(r'drain_timeout\s*=\s*"([^"]+)"', config)
    needed = prestop_s + (duration_s(delay.group(1)) if delay else 1) + (duration_s(drain.group(1)) if drain else 25)
    check(pod.get("terminationGracePeriodSeconds", 30) >= needed,
          f"{name}: terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds')} < preStop+delay+drain {needed}")
    if w["kind"] == "StatefulSet":
        check(any(t["metadata"]["name"] == "cache" for t in spec.get("volumeClaimTemplates", [])),
              f"{name}: PersistentVolumeClaim for the disk tier")
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", []) if p["spec"]["selector"]["matchLabels"] == labels]
    check(len(pdbs) == 1, f"{name}: a PodDisruptionBudget")

check(by_kind.get("ServiceMonitor"), "a ServiceMonitor")
rules = by_kind.get("PrometheusRule", [])
check(rules and rules[0]["spec"] == yaml.safe_load((root / "deploy" / "prometheus" / "holdfast-alerts.yaml").read_text()),
      "the PrometheusRule must carry deploy/prometheus/holdfast-alerts.yaml (run deploy/kubernetes/generate.py)")

if failures:
    print("deploy manifests: %d problem(s)" % len(failures))
    for f in failures:
        print(" -", f)
    sys.exit(1)
print("deploy manifests: %d objects, all properties hold" % len(docs))
