"""A synthetic GPU node for machines without a GPU: enrolls with the hub like an agent
(labels node_type="gpu") and pushes dcgm-exporter text through the hub's real /push endpoint.

The values are modelled on a two-GPU H100 80GB HBM3 server under an inference load, in the
families, HELP texts and labels the agent's GPU collector printed on a real H100
(agent/tests/fixtures/gpu/h100_80gb_hbm3_once.prom); counters (energy, PCIe replays) advance
between pushes, and the gauges wander slightly so graphs are not flat.
"""

import math
import time

import requests

DRIVER = "550.54.15"
MODEL = "NVIDIA H100 80GB HBM3"
GPUS = [
    {"gpu": "0", "UUID": "GPU-5f0a6c1e-9f1b-4b7e-8c3e-2d1f0a9b7c61", "pci_bus_id": "00000000:18:00.0"},
    {"gpu": "1", "UUID": "GPU-b2d47e90-13c5-4e2a-a6f8-7c9d3e5a1f04", "pci_bus_id": "00000000:2A:00.0"},
]

# family -> (type, help, per-GPU recorded value). FB_* in MiB, power in W, clocks in MHz.
RECORDED = {
    "DCGM_FI_DEV_SM_CLOCK": ("gauge", "SM clock frequency (in MHz).", [1980, 1980]),
    "DCGM_FI_DEV_MEM_CLOCK": ("gauge", "Memory clock frequency (in MHz).", [2619, 2619]),
    "DCGM_FI_DEV_MEMORY_TEMP": ("gauge", "Memory temperature (in C).", [58, 61]),
    "DCGM_FI_DEV_GPU_TEMP": ("gauge", "GPU temperature (in C).", [51, 55]),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W).", [412.734, 389.112]),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": ("counter", "Total number of PCIe retries.", [0, 2]),
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %).", [87, 79]),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("gauge", "Memory utilization (in %).", [43, 38]),
    "DCGM_FI_DEV_ENC_UTIL": ("gauge", "Encoder utilization (in %).", [0, 0]),
    "DCGM_FI_DEV_DEC_UTIL": ("gauge", "Decoder utilization (in %).", [0, 0]),
    "DCGM_FI_DEV_XID_ERRORS": ("gauge", "Value of the last XID error encountered.", [0, 0]),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Framebuffer memory free (in MiB).", [19247, 23871]),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB).", [61760, 57136]),
    "DCGM_FI_DEV_FB_RESERVED": ("gauge", "Framebuffer memory reserved (in MiB).", [552, 552]),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": (
        "counter", "Number of remapped rows for uncorrectable errors", [0, 0]),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": (
        "counter", "Number of remapped rows for correctable errors", [0, 0]),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": ("gauge", "Whether remapping of rows has failed", [0, 0]),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": (
        "gauge", "Ratio of time the graphics engine is active.", [0.823411, 0.761902]),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": (
        "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.", [0.412087, 0.377215]),
    "DCGM_FI_PROF_DRAM_ACTIVE": (
        "gauge", "Ratio of cycles the device memory interface is active sending or receiving "
        "data.", [0.368834, 0.341290]),
    "DCGM_FI_PROF_PCIE_TX_BYTES": (
        "gauge", "The rate of data transmitted over the PCIe bus - including both protocol "
        "headers and data payloads - in bytes per second.", [1.182e9, 1.047e9]),
    "DCGM_FI_PROF_PCIE_RX_BYTES": (
        "gauge", "The rate of data received over the PCIe bus - including both protocol headers "
        "and data payloads - in bytes per second.", [2.913e9, 2.650e9]),
}
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
ENERGY_START_MJ = [8_421_377_214, 7_998_105_660]
WANDER = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP",
          "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PCIE_TX_BYTES",
          "DCGM_FI_PROF_PCIE_RX_BYTES"}


def labels(i, hostname):
    g = GPUS[i]
    pairs = [("gpu", g["gpu"]), ("UUID", g["UUID"]), ("pci_bus_id", g["pci_bus_id"]),
             ("device", f"nvidia{g['gpu']}"), ("modelName", MODEL), ("Hostname", hostname),
             ("DCGM_FI_DRIVER_VERSION", DRIVER)]
    return ",".join(f'{k}="{v}"' for k, v in pairs)


def exposition(t, energy, hostname, overrides=None):
    """dcgm-exporter text for time t (seconds since start) with energy counters in mJ.
    overrides: {(family, GPU index): value} replacing recorded values (an XID, say)."""
    overrides = overrides or {}
    lines = []
    for family, (kind, help_text, values) in RECORDED.items():
        lines.append(f"# HELP {family} {help_text}")
        lines.append(f"# TYPE {family} {kind}")
        for i, v in enumerate(values):
            if (family, i) in overrides:
                v = overrides[(family, i)]
            elif family in WANDER:
                v = v * (1 + 0.03 * math.sin(t / 20 + i))
                if family in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP"):
                    v = round(v)
            lines.append(f"{family}{{{labels(i, hostname)}}} {v}")
    lines.append(f"# HELP {ENERGY} Total energy consumption since boot (in mJ).")
    lines.append(f"# TYPE {ENERGY} counter")
    for i, e in enumerate(energy):
        lines.append(f"{ENERGY}{{{labels(i, hostname)}}} {int(e)}")
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
            power = RECORDED["DCGM_FI_DEV_POWER_USAGE"][2]
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
