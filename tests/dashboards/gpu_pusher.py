"""A GPU node with modelled values, for machines without a GPU: enrolls with the hub like an agent
(labels node_type="gpu") and pushes dcgm-exporter text through the hub's real /push endpoint.

What is real and what is modelled:
- the families, their types and HELP texts are the agent's own list
  (agent/src/collectors/gpu/families.txt), every one of them;
- the model name and the driver version are those of the H100 the agent's raw NVML readings were
  recorded on (agent/tests/fixtures/gpu/h100_80gb_hbm3_load.json);
- the values are MODELLED: a two-GPU H100 80GB HBM3 server under an inference load, invented to
  look plausible, not measured. Counters (energy) advance between pushes and some gauges wander
  slightly so graphs are not flat. The GPU UUIDs, bus ids and hostname are invented too.
"""

import json
import math
import pathlib
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
FAMILIES_TXT = ROOT / "agent" / "src" / "collectors" / "gpu" / "families.txt"
RECORDED_H100 = ROOT / "agent" / "tests" / "fixtures" / "gpu" / "h100_80gb_hbm3_load.json"


def load_families(path=FAMILIES_TXT):
    """[(name, type, help)] of the agent's DCGM families, in the agent's order."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, help_text = line.split(" ", 2)
        out.append((name, kind, help_text.strip()))
    return out


FAMILIES = load_families()
_recorded = json.loads(RECORDED_H100.read_text())
DRIVER = _recorded["host"]["driver_version"]
MODEL = _recorded["gpus"][0]["name"]
GPUS = [
    {"gpu": "0", "UUID": "GPU-5f0a6c1e-9f1b-4b7e-8c3e-2d1f0a9b7c61", "pci_bus_id": "00000000:18:00.0"},
    {"gpu": "1", "UUID": "GPU-b2d47e90-13c5-4e2a-a6f8-7c9d3e5a1f04", "pci_bus_id": "00000000:2A:00.0"},
]

# family -> modelled value per GPU, in dcgm-exporter's units (FB_* MiB, power W, clocks MHz,
# PROF_* ratios 0-1, PCIe B/s). Energy is modelled separately, as a counter.
MODELLED = {
    "DCGM_FI_DEV_SM_CLOCK": [1980, 1980],
    "DCGM_FI_DEV_MEM_CLOCK": [2619, 2619],
    "DCGM_FI_DEV_MEMORY_TEMP": [58, 61],
    "DCGM_FI_DEV_GPU_TEMP": [51, 55],
    "DCGM_FI_DEV_POWER_USAGE": [412.734, 389.112],
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": [0, 2],
    "DCGM_FI_DEV_GPU_UTIL": [87, 79],
    "DCGM_FI_DEV_MEM_COPY_UTIL": [43, 38],
    "DCGM_FI_DEV_ENC_UTIL": [0, 0],
    "DCGM_FI_DEV_DEC_UTIL": [0, 0],
    "DCGM_FI_DEV_XID_ERRORS": [0, 0],
    "DCGM_FI_DEV_FB_FREE": [19247, 23871],
    "DCGM_FI_DEV_FB_USED": [61760, 57136],
    "DCGM_FI_DEV_FB_RESERVED": [552, 552],
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": [0, 0],
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": [0, 0],
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": [0, 0],
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": [0, 0],
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": [0, 3],
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": [0, 0],
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": [0.823411, 0.761902],
    "DCGM_FI_PROF_SM_ACTIVE": [0.702318, 0.655120],
    "DCGM_FI_PROF_SM_OCCUPANCY": [0.241577, 0.219804],
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": [0.412087, 0.377215],
    "DCGM_FI_PROF_DRAM_ACTIVE": [0.368834, 0.341290],
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": [0.0, 0.0],
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": [0.051263, 0.047718],
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": [0.0, 0.0],
    "DCGM_FI_PROF_PCIE_TX_BYTES": [1.182e9, 1.047e9],
    "DCGM_FI_PROF_PCIE_RX_BYTES": [2.913e9, 2.650e9],
}
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
ENERGY_START_MJ = [8_421_377_214, 7_998_105_660]
WANDER = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP",
          "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_PCIE_TX_BYTES",
          "DCGM_FI_PROF_PCIE_RX_BYTES"}

_unmodelled = {name for name, _, _ in FAMILIES} - set(MODELLED) - {ENERGY}
_unlisted = set(MODELLED) - {name for name, _, _ in FAMILIES}
if _unmodelled or _unlisted:
    raise SystemExit(f"gpu_pusher: families without a modelled value {sorted(_unmodelled)}, "
                     f"modelled but not in {FAMILIES_TXT.name}: {sorted(_unlisted)}")


def labels(i, hostname):
    g = GPUS[i]
    pairs = [("gpu", g["gpu"]), ("UUID", g["UUID"]), ("pci_bus_id", g["pci_bus_id"]),
             ("device", f"nvidia{g['gpu']}"), ("modelName", MODEL), ("Hostname", hostname),
             ("DCGM_FI_DRIVER_VERSION", DRIVER)]
    return ",".join(f'{k}="{v}"' for k, v in pairs)


def exposition(t, energy, hostname, overrides=None):
    """dcgm-exporter text at time t (seconds since start), energy counters in mJ, every family
    of the agent's list in its order. overrides: {(family, GPU index): value} replacing modelled
    values (an XID, say)."""
    overrides = overrides or {}
    lines = []
    for family, kind, help_text in FAMILIES:
        lines.append(f"# HELP {family} {help_text}")
        lines.append(f"# TYPE {family} {kind}")
        for i in range(len(GPUS)):
            if (family, i) in overrides:
                v = overrides[(family, i)]
            elif family == ENERGY:
                v = int(energy[i])
            else:
                v = MODELLED[family][i]
                if family in WANDER:
                    v = v * (1 + 0.03 * math.sin(t / 20 + i))
                    if family in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP"):
                        v = round(v)
            lines.append(f"{family}{{{labels(i, hostname)}}} {v}")
    return "\n".join(lines) + "\n"


class GpuNode:
    def __init__(self, hub, enroll_token, node, hostname="gpu-host-01.internal"):
        self.hub, self.enroll_token, self.node, self.hostname = hub, enroll_token, node, hostname
        self.token = None

    def enroll(self):
        r = requests.post(f"{self.hub}/add_node",
                          headers={"Authorization": f"Bearer {self.enroll_token}"},
                          json={"node": self.node, "labels": {"node_type": "gpu"}}, timeout=10)
        r.raise_for_status()
        self.token = r.json()["token"]

    def push(self, text):
        r = requests.post(f"{self.hub}/push", data=text.encode(),
                          headers={"Authorization": f"Bearer {self.token}",
                                   "Content-Type": "text/plain; version=0.0.4"}, timeout=10)
        r.raise_for_status()

    def push_rejected(self):
        # A family under the hub's own reserved prefix: refused as a whole, counted by reason.
        bad = "# TYPE fleetgate_node_up gauge\nfleetgate_node_up 1\n"
        r = requests.post(f"{self.hub}/push", data=bad.encode(),
                          headers={"Authorization": f"Bearer {self.token}",
                                   "Content-Type": "text/plain; version=0.0.4"}, timeout=10)
        if r.status_code < 400:
            raise RuntimeError(f"hub accepted a push of a reserved family: {r.status_code}")

    def run(self, stop, interval, overrides=None):
        start = last = time.monotonic()
        energy = list(ENERGY_START_MJ)
        failures = 0
        while True:
            now = time.monotonic()
            power = MODELLED["DCGM_FI_DEV_POWER_USAGE"]
            energy = [e + p * (now - last) * 1000 for e, p in zip(energy, power)]
            last = now
            try:
                self.push(exposition(now - start, energy, self.hostname, overrides))
                failures = 0
            except requests.RequestException as e:
                failures += 1
                print(f"[gpu-pusher] push failed ({failures}): {e}", flush=True)
            if stop.wait(interval):
                return
